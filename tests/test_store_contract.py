"""One storage contract, run against both engines: what bot/ may rely on whichever store it is given."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.stores import open_store
from bot.stores.base import SpendRow, Store
from bot.stores.redis import UNREACHABLE, RedisStore
from bot.stores.resilient import ResilientStore
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord, Outcome, Usage

ENGINES = ["sqlite", "redis", "redis-resilient"]  # the last: Redis as open_store serves it
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GENERAL = ChannelRef("slack", "T1", "C-general")
HELP = ChannelRef("slack", "T1", "C-help")
ODD = ChannelRef("console", "local:x", "a:b/c")  # separators inside ids must not collide


StoreFactory = Callable[[], Any]


@pytest.fixture(params=ENGINES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens stores of one engine that share the same data: one SQLite file, or one Redis with one prefix."""
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path / "store.db")).open()
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    if request.param == "redis":
        return lambda: RedisStore(url, prefix=prefix).open()

    async def resilient() -> ResilientStore:
        return ResilientStore(await RedisStore(url, prefix=prefix).open(), unreachable=UNREACHABLE)

    return resilient


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    opened = await make_store()
    yield opened
    await opened.close()


@pytest.fixture
async def other(make_store: StoreFactory) -> AsyncIterator[Store]:
    """A second store on the same data: another replica, or another process on the same SQLite file."""
    opened = await make_store()
    yield opened
    await opened.close()


def msg(
    message_id: str,
    minutes: float,
    *,
    channel: ChannelRef = GENERAL,
    thread_id: str | None = None,
    author: str = "U1",
    text: str | None = None,
) -> ChatMessage:
    ref = MessageRef(channel, message_id, thread_id)
    return ChatMessage(
        ref, author, f"name-{author}", text or f"text {message_id}", T0 + timedelta(minutes=minutes)
    )


def ids(messages: list[ChatMessage]) -> list[str]:
    return [m.ref.message_id for m in messages]


def record(
    minutes: float,
    *,
    channel: ChannelRef = GENERAL,
    model: str = "gpt-4o-mini",
    cost: str = "0.000123",
    outcome: Outcome = Outcome.OK,
    usage: Usage | None = None,
    id: str = "",
    **extra: Any,
) -> LedgerRecord:
    return LedgerRecord(
        at=T0 + timedelta(minutes=minutes),
        provider="openai",
        model=model,
        task="summarize",
        platform=channel.platform,
        workspace=channel.workspace,
        channel=channel.channel,
        user="U1",
        feature="summary",
        usage=usage or Usage(input=100, output=20, cache_read=1024, cache_write_5m=7, cache_write_1h=3),
        cost_usd=Decimal(cost),
        latency_s=1.25,
        ttft_s=0.4,
        outcome=outcome,
        id=id,
        **extra,
    )


# Event claims


async def test_claim_is_granted_once(store: Store) -> None:
    assert await store.claims.claim("evt-1", ttl_s=60) is True
    assert await store.claims.claim("evt-1", ttl_s=60) is False
    assert await store.claims.claim("evt-2", ttl_s=60) is True


async def test_claim_is_granted_again_after_its_ttl(store: Store) -> None:
    assert await store.claims.claim("evt", ttl_s=0.05)
    await asyncio.sleep(0.2)
    assert await store.claims.claim("evt", ttl_s=60)
    assert not await store.claims.claim("evt", ttl_s=60)


async def test_concurrent_claims_from_two_replicas_have_one_winner(store: Store, other: Store) -> None:
    stores = [store, other] * 25
    results = await asyncio.gather(*(s.claims.claim("evt-race", ttl_s=60) for s in stores))
    assert results.count(True) == 1


# Message log


async def test_thread_returns_root_and_replies_oldest_first(store: Store) -> None:
    for m in [
        msg("r2", 3, thread_id="root"),
        msg("root", 0),
        msg("r1", 1, thread_id="root"),
        msg("other", 2, thread_id="elsewhere"),
        msg("r-help", 2, thread_id="root", channel=HELP),
    ]:
        await store.messages.add(m)
    thread = await store.messages.thread(GENERAL, "root")
    assert ids(thread) == ["root", "r1", "r2"]
    assert thread[0] == msg("root", 0)


async def test_thread_since_is_strictly_after(store: Store) -> None:
    for m in [msg("root", 0), msg("r1", 1, thread_id="root"), msg("r2", 2, thread_id="root")]:
        await store.messages.add(m)
    assert ids(await store.messages.thread(GENERAL, "root", since=T0 + timedelta(minutes=1))) == ["r2"]
    assert ids(await store.messages.thread(GENERAL, "root", since=T0 - timedelta(seconds=1))) == [
        "root",
        "r1",
        "r2",
    ]
    assert await store.messages.thread(GENERAL, "root", since=T0 + timedelta(minutes=5)) == []


async def test_root_that_names_its_own_thread_is_found_once(store: Store) -> None:
    # Discord: a thread's id equals its starter message's id.
    await store.messages.add(msg("root", 0, thread_id="root"))
    await store.messages.add(msg("r1", 1, thread_id="root"))
    assert ids(await store.messages.thread(GENERAL, "root")) == ["root", "r1"]


async def test_adding_the_same_message_again_replaces_it(store: Store) -> None:
    await store.messages.add(msg("root", 0))
    await store.messages.add(msg("r1", 1, thread_id="root", text="first"))
    await store.messages.add(msg("r1", 1, thread_id="root", text="second"))
    thread = await store.messages.thread(GENERAL, "root")
    assert [m.text for m in thread] == ["text root", "second"]
    assert await store.messages.count() == 2


async def test_replacement_can_move_a_message_to_another_thread_and_author(store: Store) -> None:
    await store.messages.add(msg("m", 1, thread_id="a", author="U1"))
    await store.messages.add(msg("m", 1, thread_id="b", author="U2"))
    assert await store.messages.thread(GENERAL, "a") == []
    assert ids(await store.messages.thread(GENERAL, "b")) == ["m"]
    assert await store.messages.forget_user("U1") == 0
    assert await store.messages.forget_user("U2") == 1


async def test_recent_returns_the_last_messages_of_the_channel_oldest_first(store: Store) -> None:
    for i in range(10):
        await store.messages.add(msg(f"m{i}", 9 - i, thread_id="t" if i % 2 else None))
    await store.messages.add(msg("help", 100, channel=HELP))
    assert ids(await store.messages.recent(GENERAL, limit=3)) == ["m2", "m1", "m0"]
    assert len(await store.messages.recent(GENERAL, limit=50)) == 10
    assert await store.messages.recent(GENERAL, limit=0) == []


async def test_timestamps_round_trip_as_utc(store: Store) -> None:
    seoul = timezone(timedelta(hours=9))
    sent = datetime(2026, 3, 1, 21, 0, 0, 123456, tzinfo=seoul)
    original = replace(msg("k", 0), sent_at=sent, text='안녕하세요 <!here> \n"quoted"', is_bot=True)
    await store.messages.add(original)
    [stored] = await store.messages.recent(GENERAL, limit=1)
    assert stored == original
    assert stored.sent_at.utcoffset() == timedelta(0)
    assert stored.sent_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def test_edit_changes_the_stored_text_only(store: Store) -> None:
    await store.messages.add(msg("root", 0))
    await store.messages.edit(MessageRef(GENERAL, "root"), "edited")
    await store.messages.edit(MessageRef(GENERAL, "missing"), "ignored")
    [stored] = await store.messages.thread(GENERAL, "root")
    assert stored == replace(msg("root", 0), text="edited")
    assert await store.messages.count() == 1


async def test_delete_removes_the_message_everywhere(store: Store) -> None:
    await store.messages.add(msg("root", 0))
    await store.messages.add(msg("r1", 1, thread_id="root"))
    await store.messages.delete(MessageRef(GENERAL, "r1", "root"))
    await store.messages.delete(MessageRef(GENERAL, "missing"))
    assert ids(await store.messages.thread(GENERAL, "root")) == ["root"]
    assert ids(await store.messages.recent(GENERAL, limit=10)) == ["root"]
    assert await store.messages.count() == 1


async def test_forget_user_removes_only_their_messages(store: Store) -> None:
    await store.messages.add(msg("a", 0, author="U1"))
    await store.messages.add(msg("b", 1, author="U2", thread_id="a"))
    await store.messages.add(msg("c", 2, author="U1", channel=HELP))
    assert await store.messages.forget_user("U1") == 2
    assert await store.messages.forget_user("U1") == 0
    assert ids(await store.messages.recent(GENERAL, limit=10)) == ["b"]
    assert await store.messages.recent(HELP, limit=10) == []
    assert await store.messages.count() == 1


async def test_forget_channel_removes_only_that_channel(store: Store) -> None:
    await store.messages.add(msg("a", 0))
    await store.messages.add(msg("b", 1, thread_id="a"))
    await store.messages.add(msg("c", 2, channel=ODD))
    assert await store.messages.forget_channel(GENERAL) == 2
    assert await store.messages.thread(GENERAL, "a") == []
    assert ids(await store.messages.recent(ODD, limit=10)) == ["c"]
    assert await store.messages.count() == 1


async def test_purge_before_removes_strictly_older_messages(store: Store) -> None:
    for i in range(5):
        await store.messages.add(
            msg(f"m{i}", i, channel=GENERAL if i % 2 else HELP, thread_id="m0" if i else None)
        )
    assert await store.messages.purge_before(T0 + timedelta(minutes=2)) == 2
    assert await store.messages.count() == 3
    assert ids(await store.messages.recent(HELP, limit=10)) == ["m2", "m4"]
    assert await store.messages.purge_before(T0) == 0


async def test_channels_whose_ids_contain_separators_stay_apart(store: Store) -> None:
    a = ChannelRef("console", "local", "x:y")
    b = ChannelRef("console", "local:x", "y")
    await store.messages.add(msg("1", 0, channel=a))
    await store.messages.add(msg("1", 1, channel=b, text="b"))
    assert [m.text for m in await store.messages.recent(a, limit=5)] == ["text 1"]
    assert [m.text for m in await store.messages.recent(b, limit=5)] == ["b"]


# Inquiries


def inquiry(
    message_id: str, minutes: float, *, channel: ChannelRef = GENERAL, author: str = "U1", **kw: Any
) -> Inquiry:
    return Inquiry(
        channel, message_id, author, f"how do I {message_id}?", T0 + timedelta(minutes=minutes), **kw
    )


async def test_inquiries_are_listed_since_oldest_first_and_replaced(store: Store) -> None:
    await store.inquiries.add(inquiry("q2", 2, link="https://x/2"))
    await store.inquiries.add(inquiry("q1", 1, group="g"))
    await store.inquiries.add(inquiry("q0", 0))
    await store.inquiries.add(inquiry("h", 1, channel=HELP))
    await store.inquiries.add(inquiry("q2", 2, link="https://x/2b", group="g"))
    listed = await store.inquiries.list(GENERAL, since=T0 + timedelta(minutes=1))
    assert listed == [inquiry("q1", 1, group="g"), inquiry("q2", 2, link="https://x/2b", group="g")]
    assert await store.inquiries.count() == 4


async def test_inquiries_delete_forget_and_purge(store: Store) -> None:
    await store.inquiries.add(inquiry("a", 0, author="U1"))
    await store.inquiries.add(inquiry("b", 1, author="U2"))
    await store.inquiries.add(inquiry("c", 2, author="U1", channel=HELP))
    await store.inquiries.add(inquiry("d", 3, author="U3", channel=HELP))
    await store.inquiries.add(inquiry("e", 4, author="U3"))
    await store.inquiries.delete(GENERAL, "b")
    await store.inquiries.delete(GENERAL, "missing")
    assert await store.inquiries.count() == 4
    assert await store.inquiries.forget_user("U1") == 2
    assert await store.inquiries.forget_channel(HELP) == 1
    assert [i.message_id for i in await store.inquiries.list(GENERAL, since=T0)] == ["e"]
    assert await store.inquiries.purge_before(T0 + timedelta(minutes=4)) == 0
    assert await store.inquiries.purge_before(T0 + timedelta(minutes=5)) == 1
    assert await store.inquiries.count() == 0


# Ledger


def expected_daily(records: list[LedgerRecord], *, since: date) -> list[SpendRow]:
    cells: dict[tuple[Any, ...], list[LedgerRecord]] = defaultdict(list)
    for r in records:
        if r.at.date() >= since:
            key = (
                r.at.astimezone(UTC).date(),
                r.platform,
                r.workspace,
                r.channel,
                r.provider,
                r.model,
                r.task,
                r.feature,
            )
            cells[key].append(r)
    return [
        SpendRow(
            day=key[0],
            platform=key[1],
            workspace=key[2],
            channel=key[3],
            provider=key[4],
            model=key[5],
            task=key[6],
            feature=key[7],
            calls=len(rs),
            cache_hits=sum(r.cache_hit for r in rs),
            input=sum(r.usage.input for r in rs),
            output=sum(r.usage.output for r in rs),
            cache_read=sum(r.usage.cache_read for r in rs),
            cache_write_5m=sum(r.usage.cache_write_5m for r in rs),
            cache_write_1h=sum(r.usage.cache_write_1h for r in rs),
            cost_usd=sum((r.cost_usd for r in rs), Decimal(0)),
            saved_usd=sum((r.saved_usd for r in rs), Decimal(0)),
            failed=sum(r.outcome in (Outcome.ERROR, Outcome.INTERRUPTED) for r in rs),
            estimated=sum(r.usage.estimated for r in rs),
            estimated_tokens=sum(r.usage.total_input + r.usage.output for r in rs if r.usage.estimated),
            estimated_usd=sum((r.cost_usd for r in rs if r.usage.estimated), Decimal(0)),
            unpriced=sum(r.unpriced for r in rs),
            unpriced_tokens=sum(r.usage.total_input + r.usage.output for r in rs if r.unpriced),
            self_hosted=sum(r.self_hosted for r in rs),
        )
        for key, rs in sorted(cells.items())
    ]


def mixed_records() -> list[LedgerRecord]:
    return [
        record(0, id="a", cost="0.000000123456"),
        record(1, id="b", channel=HELP, model="claude-haiku-4-5", cost="0.0031"),
        record(
            2,
            id="c",
            outcome=Outcome.INTERRUPTED,
            usage=Usage(input=5, output=3, estimated=True),
            error="cut",
        ),
        record(3, id="d", outcome=Outcome.CACHED, cache_hit=True, cost="0", saved_usd=Decimal("0.000456")),
        record(60 * 24, id="e", cost="1.5"),  # the next UTC day
        record(
            60 * 24 + 1, id="f", channel=ODD, outcome=Outcome.ERROR, usage=Usage(), cost="0", error="timeout"
        ),
        replace(record(60 * 48, id="g"), ttft_s=None, truncated=True),  # cut short by the output limit
        # a self-hosted model no price source knows: $0 recorded, marked unpriced
        replace(record(60 * 48 + 1, id="h", model="llama-local", cost="0"), unpriced=True, self_hosted=True),
    ]


async def test_ledger_records_come_back_exactly_oldest_first(store: Store) -> None:
    records = mixed_records()
    for r in reversed(records):
        await store.ledger.add(r)
    stored = await store.ledger.records(since=T0 - timedelta(days=1))
    assert stored == records
    interrupted = stored[2]
    assert (
        interrupted.outcome is Outcome.INTERRUPTED
        and interrupted.usage.estimated
        and interrupted.error == "cut"
    )
    assert stored[3].saved_usd == Decimal("0.000456") and stored[3].cache_hit
    assert stored[0].at.tzinfo is not None and stored[6].ttft_s is None and stored[6].truncated


async def test_ledger_records_filter_by_since_until_and_channel(store: Store) -> None:
    for r in mixed_records():
        await store.ledger.add(r)

    async def got(**kw: Any) -> list[str]:
        return [r.id for r in await store.ledger.records(**kw)]

    assert await got(since=T0 + timedelta(minutes=1)) == ["b", "c", "d", "e", "f", "g", "h"]
    assert await got(since=T0, until=T0 + timedelta(minutes=3)) == ["a", "b", "c"]  # until is exclusive
    assert await got(since=T0, channel=GENERAL) == ["a", "c", "d", "e", "g", "h"]
    assert await got(since=T0, until=T0 + timedelta(days=1), channel=GENERAL) == ["a", "c", "d"]
    assert await got(since=T0, channel=ODD) == ["f"]
    assert await got(since=T0 + timedelta(days=3)) == []


async def test_daily_aggregates_equal_the_sum_of_records_exactly(store: Store) -> None:
    for r in mixed_records():
        await store.ledger.add(r)
    stored = await store.ledger.records(since=T0 - timedelta(days=1))
    assert await store.ledger.daily(since=T0.date()) == expected_daily(stored, since=T0.date())
    next_day = T0.date() + timedelta(days=1)
    assert await store.ledger.daily(since=next_day) == expected_daily(stored, since=next_day)
    general = [r for r in stored if r.channel == GENERAL.channel]
    assert await store.ledger.daily(since=T0.date(), channel=GENERAL) == expected_daily(
        general, since=T0.date()
    )
    total = sum((row.cost_usd for row in await store.ledger.daily(since=T0.date())), Decimal(0))
    assert total == Decimal("1.503346123456")


async def test_many_small_costs_sum_exactly(store: Store) -> None:
    records = [record(i / 60, id=f"r{i}", cost="0.000000075") for i in range(100)]
    for r in records:
        await store.ledger.add(r)
    [row] = await store.ledger.daily(since=T0.date())
    assert row.cost_usd == Decimal("0.0000075") and row.calls == 100 and row.input == 10_000


async def test_ledger_assigns_ids_and_counts_a_retried_record_once(store: Store) -> None:
    await store.ledger.add(record(0))
    await store.ledger.add(record(1, id="same"))
    await store.ledger.add(record(1, id="same"))
    stored = await store.ledger.records(since=T0)
    assert len(stored) == 2 and stored[0].id and stored[1].id == "same"
    [row] = await store.ledger.daily(since=T0.date())
    assert row.calls == 2


async def test_costs_finer_than_a_picodollar_are_rounded_identically_in_records_and_aggregates(
    store: Store,
) -> None:
    await store.ledger.add(record(0, id="x", cost="0.0000000000015"))
    [stored] = await store.ledger.records(since=T0)
    [row] = await store.ledger.daily(since=T0.date())
    assert stored.cost_usd == row.cost_usd == Decimal("0.000000000002")


# Key-value


async def test_kv_put_get_overwrite_delete(store: Store) -> None:
    assert await store.kv.get("k") is None
    await store.kv.put("k", '{"summary": "é"}', ttl_s=60)
    assert await store.kv.get("k") == '{"summary": "é"}'
    await store.kv.put("k", "v2", ttl_s=60)
    assert await store.kv.get("k") == "v2"
    await store.kv.delete("k")
    await store.kv.delete("missing")
    assert await store.kv.get("k") is None


async def test_kv_values_expire(store: Store) -> None:
    await store.kv.put("short", "v", ttl_s=0.05)
    await store.kv.put("long", "v", ttl_s=60)
    await asyncio.sleep(0.2)
    assert await store.kv.get("short") is None
    assert await store.kv.get("long") == "v"


# Locks


async def test_lock_is_exclusive_and_released_only_by_its_token(store: Store, other: Store) -> None:
    token = await store.locks.acquire("faq", ttl_s=60)
    assert token
    assert await other.locks.acquire("faq", ttl_s=60) is None
    assert await other.locks.release("faq", "not-the-token") is False
    assert await other.locks.acquire("faq", ttl_s=60) is None
    assert await store.locks.release("faq", token) is True
    assert await store.locks.release("faq", token) is False
    assert await other.locks.acquire("faq", ttl_s=60)


async def test_expired_lock_can_be_taken_and_the_old_token_no_longer_releases(store: Store) -> None:
    old = await store.locks.acquire("job", ttl_s=0.05)
    assert old
    await asyncio.sleep(0.2)
    new = await store.locks.acquire("job", ttl_s=60)
    assert new and new != old
    assert await store.locks.release("job", old) is False
    assert await store.locks.acquire("job", ttl_s=60) is None
    assert await store.locks.release("job", new) is True


async def test_concurrent_lock_acquisition_has_one_winner(store: Store, other: Store) -> None:
    stores = [store, other] * 25
    tokens = await asyncio.gather(*(s.locks.acquire("race", ttl_s=60) for s in stores))
    assert sum(t is not None for t in tokens) == 1


# Store


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_open_store_picks_redis_when_a_url_is_given(tmp_path: Path, redis_url: str) -> None:
    sqlite = await open_store(redis_url=None, sqlite_path=str(tmp_path / "a.db"))
    redis = await open_store(redis_url=redis_url, sqlite_path=str(tmp_path / "b.db"))
    try:
        # Redis comes wrapped, so a dead Redis degrades the bot instead of stopping it (bot/stores/resilient/).
        assert isinstance(sqlite, SqliteStore)
        assert isinstance(redis, ResilientStore) and isinstance(redis.inner, RedisStore)
        await redis.ping()
    finally:
        await sqlite.close()
        await redis.close()


async def test_kv_incr_counts_atomically_within_a_window(store: Store, other: Store) -> None:
    counts = await asyncio.gather(*(s.kv.incr("rate:u1", ttl_s=60) for s in [store, other] * 25))
    assert sorted(counts) == list(range(1, 51))  # every increment seen once, by either store
    assert await store.kv.incr("rate:u2", ttl_s=0.05) == 1
    await asyncio.sleep(0.1)
    assert await store.kv.incr("rate:u2", ttl_s=0.05) == 1  # the window expired: a new one starts


async def test_rate_budget_is_shared_and_refills(store: Store, other: Store) -> None:
    # burst 3 at 60/min: three calls pass at once, from either replica; the fourth must wait about a second
    waits = [await s.budgets.try_take("slack:T1", per_minute=60, burst=3) for s in (store, other, store)]
    assert waits == [0.0, 0.0, 0.0]
    wait = await other.budgets.try_take("slack:T1", per_minute=60, burst=3)
    assert 0.5 < wait <= 1.0
    assert await store.budgets.try_take("slack:T2", per_minute=60, burst=3) == 0.0  # scopes are separate
    await asyncio.sleep(wait + 0.05)
    assert await store.budgets.try_take("slack:T1", per_minute=60, burst=3) == 0.0


async def test_rate_budget_pause_holds_every_replica(store: Store, other: Store) -> None:
    assert await store.budgets.try_take("slack:T3", per_minute=600, burst=5) == 0.0
    await other.budgets.pause("slack:T3", 0.3)
    wait = await store.budgets.try_take("slack:T3", per_minute=600, burst=5)
    assert 0.2 < wait <= 0.3
    await asyncio.sleep(wait + 0.15)  # after the pause the bucket restarts empty, then refills (10/s)
    assert await store.budgets.try_take("slack:T3", per_minute=600, burst=5) == 0.0


async def test_live_replies_go_stale_when_their_heartbeat_stops(store: Store, other: Store) -> None:
    await store.live.heartbeat("r1", '{"shown": "half a sum"}')
    await store.live.heartbeat("r2", '{"shown": "other"}')
    assert await other.live.stale(older_than_s=0.1) == []
    await asyncio.sleep(0.2)
    await store.live.heartbeat("r2", '{"shown": "other, longer"}')
    assert await other.live.stale(older_than_s=0.1) == [("r1", '{"shown": "half a sum"}')]
    await other.live.done("r1")
    await store.live.done("missing")
    assert await store.live.stale(older_than_s=0.0) in ([], [("r2", '{"shown": "other, longer"}')])
    await store.live.done("r2")
    assert await store.live.stale(older_than_s=0.0) == []


async def test_a_heartbeat_arriving_after_done_does_not_bring_the_reply_back(store: Store, other: Store) -> None:
    # A late write (a heartbeat cancelled on the wire, one replayed after a Redis outage) must not leave a finished
    # reply in the registry, where a janitor would add "interrupted" to its final text.
    await store.live.heartbeat("r1", '{"shown": "the whole summary"}')
    await store.live.done("r1")
    await other.live.heartbeat("r1", '{"shown": "the whole summary"}')
    assert await store.live.stale(older_than_s=0.0) == []
    await store.live.heartbeat("r2", '{"shown": "another reply"}')  # other replies are recorded as before
    assert await other.live.stale(older_than_s=0.0) == [("r2", '{"shown": "another reply"}')]
