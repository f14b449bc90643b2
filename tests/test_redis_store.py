"""What only the Redis store promises: spend survives a Redis outage, and claims never pretend to succeed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.stores.redis import RedisStore
from llm.types import LedgerRecord, Outcome, Usage
from tests.redis_server import RedisServer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(i: int) -> LedgerRecord:
    return LedgerRecord(
        at=T0 + timedelta(seconds=i),
        provider="anthropic",
        model="claude-haiku-4-5",
        task="summarize",
        platform="discord",
        workspace="G1",
        channel="C1",
        user="U1",
        feature="summary",
        usage=Usage(input=10 * i, output=i),
        cost_usd=Decimal("0.000001") * i,
        latency_s=0.5,
        ttft_s=0.1,
        outcome=Outcome.OK,
        id=f"rec-{i}",
    )


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, so stopping it disturbs no other test."""
    server = RedisServer().start()
    yield server
    server.close()


async def test_ledger_buffers_while_redis_is_down_and_flushes_when_it_returns(
    own_server: RedisServer,
) -> None:
    store = await RedisStore(own_server.url).open()
    try:
        await store.ping()
        own_server.stop()

        for i in range(1, 4):
            await store.ledger.add(record(i))  # must not raise: the record is kept in memory
        assert store.pending_ledger_records == 3
        with pytest.raises(RedisConnectionError):
            await store.ledger.records(since=T0)
        assert store.pending_ledger_records == 3

        own_server.start()  # same port, empty data: only what the store kept can come back
        await store.ledger.add(record(4))
        assert store.pending_ledger_records == 0
        stored = await store.ledger.records(since=T0)
        assert stored == [record(i) for i in range(1, 5)]
        [row] = await store.ledger.daily(since=T0.date())
        assert row.calls == 4 and row.input == 100 and row.cost_usd == Decimal("0.000010")
    finally:
        await store.close()


async def test_reads_flush_the_buffer_too(own_server: RedisServer) -> None:
    store = await RedisStore(own_server.url).open()
    try:
        own_server.stop()
        await store.ledger.add(record(1))
        own_server.start()
        [row] = await store.ledger.daily(since=T0.date())
        assert row.calls == 1 and store.pending_ledger_records == 0
    finally:
        await store.close()


async def test_buffer_is_bounded_and_counts_what_it_dropped(own_server: RedisServer) -> None:
    store = await RedisStore(own_server.url, ledger_buffer_max=2).open()
    try:
        own_server.stop()
        for i in range(1, 4):
            await store.ledger.add(record(i))
        assert store.pending_ledger_records == 2 and store.dropped_ledger_records == 1
        own_server.start()
        assert [r.id for r in await store.ledger.records(since=T0)] == ["rec-2", "rec-3"]
    finally:
        await store.close()


async def test_claims_on_a_dead_redis_raise(own_server: RedisServer) -> None:
    store = await RedisStore(own_server.url).open()
    try:
        own_server.stop()
        with pytest.raises(RedisConnectionError):
            await store.claims.claim("evt", ttl_s=60)
    finally:
        await store.close()
