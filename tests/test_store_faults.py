"""Store faults: Redis killed and restarted under load, through the console adapter, the real OpenAI SDK against
the fake provider, and a redis-server of the test's own (stopped and started again on the same port).

What must hold: every mention gets a reply; every model call has its ledger record once Redis is back (none lost);
event claims stay correct across the restart; writes made during the outage reach Redis afterwards.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis as redis_sync

from adapters.console import Console, ConsolePlatform
from bot.app import App, build_app
from bot.live_reply import FAILURE_PREFIX, WRITING_MARKER
from bot.settings import load_settings
from bot.stores import ResilientStore, StoreUnavailable, open_store
from bot.stores.redis import UNREACHABLE, RedisStore
from bot.stores.resilient.outage import PROBE_AFTER_S, RedisOutage
from bot.types import ChannelRef, ChatMessage, MessageRef
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder
from tests.redis_server import RedisServer, free_port
from tests.transcripts import irc_messages

CHANNEL = ChannelRef("console", "local", "support")
CLAIM_TTL_S = 3600.0
WAIT_S = 20.0  # bound on waiting for the replies to reach the model; not an assertion about speed


class Clock:
    """The store's clock: advanced by hand, so when the store probes Redis again does not depend on timing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


def keep_data_across_restarts(server: RedisServer) -> None:
    """A save point makes redis-server write its data on SIGTERM and load it on start, like a Redis with
    persistence; without it a restart comes back empty."""
    client = redis_sync.Redis(port=server.port)
    client.config_set("save", "3600 1")
    client.close()


async def make_app(tmp_path: Path, redis: RedisServer, llm: FakeLLMServer, clock: Clock) -> App:
    settings = load_settings(
        db=str(tmp_path / "unused.db"),
        redis_url=redis.url,
        openai_api_key="sk-test",
        openai_base_url=llm.openai_base_url,
        routes={"summarize": ["openai:gpt-4.1-mini"]},
        monthly_budget_usd=Decimal("50"),  # budgets read the ledger on every mention, outage or not
    )
    store = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE, clock=clock)
    return await build_app(settings, store=store)


@dataclass
class Bot:
    """The console adapter plus the claim-then-handle step every real adapter performs for each delivery."""

    app: App
    console: Console
    refused: list[str] = field(default_factory=list)

    @property
    def store(self) -> ResilientStore:
        assert isinstance(self.app.store, ResilientStore)
        return self.app.store

    async def deliver(self, event_id: str, *, user: str, text: str, thread: str | None, ts: str) -> None:
        if not await self.store.claims.claim(f"console:{event_id}", ttl_s=CLAIM_TTL_S):
            self.refused.append(event_id)
            return
        await self.console.handle(channel=CHANNEL.channel, user=user, text=text, thread=thread, ts=ts)

    async def thread(self, n: int, *, size: int = 4) -> str:
        """Thread n: its messages, delivered one by one; returns the root id."""
        root = f"{2000 + n}.000000"
        irc = irc_messages()
        for i in range(size):
            user, text = irc[(n * size + i) % len(irc)]
            ts = root if i == 0 else f"{2000 + n}.{i:06d}"
            await self.deliver(f"msg-{n}-{i}", user=user, text=f"{text} (t{n})", thread=None if i == 0 else root,
                               ts=ts)  # fmt: skip
        return root

    async def mention(self, n: int, root: str) -> None:
        await self.deliver(f"mention-{n}", user="asker", text="@bot summarize", thread=root, ts=f"{2000 + n}.900000")


def new_bot(app: App) -> Bot:
    out = io.StringIO()
    return Bot(app, Console(app, ConsolePlatform(out=out), out=out))


async def ledger_ids(app: App) -> list[str]:
    return [r.id for r in await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))]


def assert_replies_final(bot: Bot) -> tuple[int, int]:
    """Every posted message shows final text; returns (summaries, clear errors) among the printed replies."""
    stuck = [p.versions[-1][1] for p in bot.console.platform.posted.values() if WRITING_MARKER in p.versions[-1][1]]
    assert stuck == []
    summaries = sum(r.startswith("Summary:") and FAILURE_PREFIX not in r for r in bot.console.replies)
    errors = sum(FAILURE_PREFIX in r for r in bot.console.replies)
    assert summaries + errors == len(bot.console.replies)
    return summaries, errors


async def test_mentions_are_answered_while_redis_is_killed_under_load_and_nothing_is_lost(
    tmp_path: Path, redis: RedisServer, llm: FakeLLMServer
) -> None:
    keep_data_across_restarts(redis)
    clock = Clock()
    app = await make_app(tmp_path, redis, llm, clock)
    bot = new_bot(app)
    try:
        # Redis up: three mentions at once, each delivered twice (the retry is refused by the claim).
        roots = [await bot.thread(n) for n in range(3)]
        await asyncio.gather(*(bot.mention(n, r) for n, r in enumerate(roots)), *(bot.mention(n, r) for n, r in
                                                                                    enumerate(roots)))  # fmt: skip
        assert len(bot.console.replies) == 3 and len(bot.refused) == 3

        # Under load: three more replies are streaming when Redis dies.
        llm.tokens_per_s = 120
        streaming = asyncio.Event()

        def responder(request: ReceivedRequest) -> FakeReply:
            if len(llm.received) >= 6:
                streaming.set()
            return default_responder(request)

        llm.responder = responder
        roots += [await bot.thread(n) for n in range(3, 6)]
        in_flight = [asyncio.create_task(bot.mention(n, roots[n])) for n in range(3, 6)]
        await asyncio.wait_for(streaming.wait(), WAIT_S)
        redis.stop()
        await asyncio.gather(*in_flight)

        # Redis down: new threads are recorded (buffered), mentions read the thread from the platform instead,
        # a retried delivery is still refused, and a deleted message's deletion is kept for later.
        llm.tokens_per_s = None
        roots += [await bot.thread(n) for n in range(6, 10)]
        await asyncio.gather(*(bot.mention(n, roots[n]) for n in range(6, 10)))
        await bot.mention(6, roots[6])
        gone = MessageRef(CHANNEL, f"{2000 + 7}.000001", roots[7])
        await app.assistant.deleted(gone)
        assert bot.store.outage.down and bot.store.outage.buffered_writes > 0
        assert bot.store.pending_ledger_records > 0
        assert bot.store.outage.fallbacks["claims"] > 0

        redis.start()  # same port, data loaded from its save on shutdown
        clock.advance(60)  # past the probe interval: the next call tries Redis again

        # Redis back: earlier deliveries are still refused, new work is answered from the log again.
        await bot.mention(0, roots[0])
        await bot.mention(8, roots[8])
        roots += [await bot.thread(10)]
        await bot.mention(10, roots[10])

        summaries, errors = assert_replies_final(bot)
        assert (summaries, errors) == (11, 0)
        assert sorted(bot.refused) == sorted([f"mention-{n}" for n in range(3)] + ["mention-6", "mention-0",
                                                                                  "mention-8"])  # fmt: skip
        ids = await ledger_ids(app)
        assert len(ids) == len(set(ids)) == len(llm.received) == 11
        assert bot.store.pending_ledger_records == 0 and bot.store.dropped_ledger_records == 0
        # The outage's writes were replayed in order: its threads are in the log, the deleted message is not.
        outage_thread = await app.store.messages.thread(CHANNEL, roots[6])
        assert [m.text for m in outage_thread if not m.text.endswith("(t6)")] == ["@bot summarize"]
        assert len(outage_thread) == 5
        assert gone.message_id not in {m.ref.message_id for m in await app.store.messages.thread(CHANNEL, roots[7])}
        assert bot.store.outage.buffered_writes == 0 and bot.store.outage.dropped_writes == 0
        assert bot.store.outage.outages == 1 and not bot.store.outage.down
        # During the outage the summaries came from the platform: the fallback read the same thread.
        outage_requests = llm.received[6:10]
        assert {n for n in range(6, 10) for r in outage_requests if r.user_text.count(f"(t{n})") == 4} == {6, 7, 8, 9}
    finally:
        await app.close()


async def test_claims_stay_correct_when_redis_comes_back_empty(redis: RedisServer) -> None:
    clock = Clock()
    mine = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE, clock=clock)
    other = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE, clock=clock)
    try:
        assert await mine.claims.claim("evt-1", ttl_s=CLAIM_TTL_S) is True
        assert await other.claims.claim("evt-1", ttl_s=CLAIM_TTL_S) is False  # another replica: Redis refuses

        redis.stop()  # no save point: it comes back with nothing
        assert await mine.claims.claim("evt-2", ttl_s=CLAIM_TTL_S) is True  # answered locally
        assert await mine.claims.claim("evt-2", ttl_s=CLAIM_TTL_S) is False  # a retry to this replica
        redis.start()
        clock.advance(60)

        # Redis lost evt-1 and never saw evt-2, but this replica remembers both.
        assert await mine.claims.claim("evt-1", ttl_s=CLAIM_TTL_S) is False
        assert await mine.claims.claim("evt-2", ttl_s=CLAIM_TTL_S) is False
        # New claims go through Redis again, shared by both replicas.
        assert await mine.claims.claim("evt-3", ttl_s=CLAIM_TTL_S) is True
        assert await other.claims.claim("evt-3", ttl_s=CLAIM_TTL_S) is False
        assert await other.claims.claim("evt-4", ttl_s=CLAIM_TTL_S) is True
        assert await mine.claims.claim("evt-4", ttl_s=CLAIM_TTL_S) is False
        assert not mine.outage.down and mine.outage.outages == 1
    finally:
        await mine.close()
        await other.close()


async def test_a_restart_that_loses_redis_data_loses_no_record_written_after_the_crash(
    tmp_path: Path, redis: RedisServer, llm: FakeLLMServer
) -> None:
    clock = Clock()
    app = await make_app(tmp_path, redis, llm, clock)
    bot = new_bot(app)
    try:
        root = await bot.thread(0)
        await bot.mention(0, root)
        redis.stop()  # nothing in flight; Redis comes back empty
        roots = [await bot.thread(n) for n in (1, 2)]
        await bot.mention(1, roots[0])
        await bot.mention(2, roots[1])
        redis.start()
        clock.advance(60)
        roots.append(await bot.thread(3))
        await bot.mention(3, roots[2])
        assert assert_replies_final(bot) == (4, 0)
        # The first record went down with Redis's data (persistence is Redis's job); every later one is there.
        assert len(await ledger_ids(app)) == len(llm.received) - 1 == 3
    finally:
        await app.close()


async def test_reads_that_cannot_be_answered_say_so_and_erasing_is_never_pretended(redis: RedisServer) -> None:
    clock = Clock()
    store = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE, clock=clock)
    try:
        message = ChatMessage(MessageRef(CHANNEL, "m1", "m1"), "U1", "ada", "hello", datetime.now(UTC))
        redis.stop()
        await store.messages.add(message)  # buffered, not lost
        with pytest.raises(StoreUnavailable):
            await store.messages.thread(CHANNEL, "m1")
        with pytest.raises(StoreUnavailable):
            await store.messages.forget_user("U1")
        with pytest.raises(StoreUnavailable):
            await store.inquiries.list(CHANNEL, since=datetime(2000, 1, 1, tzinfo=UTC))
        with pytest.raises(StoreUnavailable):
            await store.ledger.records(since=datetime(2000, 1, 1, tzinfo=UTC))
        with pytest.raises(UNREACHABLE):  # readiness must see the outage
            await store.ping()
        redis.start()
        clock.advance(60)
        assert await store.messages.forget_user("U1") == 1  # the buffered add landed first, then was erased
        assert await store.messages.thread(CHANNEL, "m1") == []
    finally:
        await store.close()


async def test_replies_written_or_finished_during_an_outage_are_not_taken_for_orphans(redis: RedisServer) -> None:
    keep_data_across_restarts(redis)
    clock = Clock()
    mine = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE, clock=clock)
    janitor = await RedisStore(redis.url).open()  # another replica's view
    try:
        await mine.live.heartbeat("finished", '{"n": 1}')
        await mine.live.heartbeat("writing", '{"n": 1}')
        redis.stop()
        await mine.live.heartbeat("writing", '{"n": 2}')
        await mine.live.done("finished")
        await mine.live.heartbeat("writing", '{"n": 3}')
        assert mine.outage.buffered_writes == 2  # the latest per reply
        assert await mine.live.stale(older_than_s=0) == []  # nobody finalises anything during the outage
        redis.start()
        clock.advance(60)
        await mine.kv.get("anything")  # the first call that reaches Redis replays the backlog
        await mine.outage.settle()
        assert await janitor.live.stale(older_than_s=5) == []  # "writing" beat again on recovery, "finished" left
        assert await janitor.live.stale(older_than_s=0) == [("writing", '{"n": 3}')]
    finally:
        await mine.close()
        await janitor.close()


async def test_local_fallbacks_while_nothing_answers() -> None:
    clock = Clock()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = ResilientStore(await RedisStore(dead).open(), unreachable=UNREACHABLE, clock=clock,
                           backlog_max_writes=3)  # fmt: skip
    try:
        assert await store.kv.get("summary:x") is None
        await store.kv.put("summary:x", "v", ttl_s=60)
        assert [await store.kv.incr("rate:u", ttl_s=10) for _ in range(3)] == [1, 2, 3]
        clock.advance(11)
        assert await store.kv.incr("rate:u", ttl_s=10) == 1  # the window ended, as in Redis

        token = await store.locks.acquire("faq:c", ttl_s=30)
        assert token is not None and await store.locks.acquire("faq:c", ttl_s=30) is None
        assert await store.locks.release("faq:c", token) is True
        assert await store.locks.acquire("faq:c", ttl_s=30) is not None

        waits = [await store.budgets.try_take("slack:T1", per_minute=60, burst=2) for _ in range(3)]
        assert waits[:2] == [0.0, 0.0] and 0.9 < waits[2] <= 1.0
        await store.budgets.pause("slack:T1", 5)
        assert await store.budgets.try_take("slack:T1", per_minute=60, burst=2) == 5.0

        await store.live.heartbeat("r1", "{}")
        await store.live.done("r1")
        assert await store.live.stale(older_than_s=0) == []
        assert await store.claims.claim("e", ttl_s=60) is True

        for i in range(5):  # the backlog keeps the newest 3 writes and counts what it dropped
            await store.messages.add(ChatMessage(MessageRef(CHANNEL, f"m{i}"), "U1", "ada", "x", datetime.now(UTC)))
        assert store.outage.buffered_writes == 3 and store.outage.dropped_writes == 3  # live.done was the first
        assert store.outage.outages == 1
    finally:
        await store.close()


async def test_open_store_wraps_redis_only(tmp_path: Path, redis: RedisServer) -> None:
    shared = await open_store(redis_url=redis.url, sqlite_path=str(tmp_path / "a.db"))
    local = await open_store(redis_url=None, sqlite_path=str(tmp_path / "b.db"))
    try:
        assert isinstance(shared, ResilientStore) and isinstance(shared.inner, RedisStore)
        assert not isinstance(local, ResilientStore)  # SQLite's errors are real ones: never swallowed
    finally:
        await shared.close()
        await local.close()


async def test_a_done_buffered_while_its_heartbeat_is_being_replayed_is_not_lost() -> None:
    # The backlog keeps the latest write per reply. While a replay runs the reply's heartbeat, a done() that has to
    # wait (Redis slow again) must queue behind it, not replace it: replacing would pop the done() when the running
    # heartbeat ends, and the finished reply would stay in the registry for a janitor to mark "interrupted".
    clock = Clock()
    outage = RedisOutage(unreachable=(ConnectionError,), clock=clock)
    written: list[str] = []
    heartbeat_running, release_heartbeat = asyncio.Event(), asyncio.Event()
    redis_answers = False

    async def heartbeat() -> None:
        if not redis_answers:
            raise ConnectionError("down")
        heartbeat_running.set()
        await release_heartbeat.wait()
        written.append("heartbeat")

    async def done() -> None:
        written.append("done")

    await outage.write("live.heartbeat", heartbeat, key="r1")  # Redis is down: buffered
    assert outage.down and outage.buffered_writes == 1
    redis_answers = True
    clock.advance(PROBE_AFTER_S)
    replaying = asyncio.create_task(outage.replay())
    await heartbeat_running.wait()
    await outage.write("live.done", done, key="r1")  # the replay holds the backlog: done() waits in it
    release_heartbeat.set()
    assert await replaying is True
    await outage.replay()
    assert written == ["heartbeat", "done"] and outage.buffered_writes == 0
