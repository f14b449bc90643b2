"""Many replicas on one Redis: nothing done twice, nothing lost, one Slack budget, no stuck message.

The end-to-end tests run two real bot processes (``python -m bot.cli run --platform slack``, see
tests/replica_process.py) on one Redis, against the fake Slack and the fake model served from this test's event
loop, and deliver signed Slack events to them the way Slack and a load balancer would. The fake Slack runs with
``time_scale=0.02`` (its "minute" lasts 1.2 s) and the replicas' Slack budgets are scaled the same way.

The unit tests below them check the janitor and the shared budget in-process.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.slack.buckets import StoreBudget
from bot.live_reply import LiveReply
from bot.orphans import INTERRUPTED_LINE, LiveState, OrphanJanitor, final_text, registered
from bot.stores.redis import RedisStore
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, MessageRef, PlatformLimits
from llm.types import Usage
from tests.fakes import slack_payloads as payloads
from tests.fakes.chat import FakeChatPlatform
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import SlackDelivery
from tests.replica_process import Replica, isolated_redis_url

SECRET = "replica-signing-secret"
TEAM = "T0FAKE"
TIME_SCALE = 0.02  # the fake Slack's minute lasts 1.2 s ...
# ... and the replicas' "N per minute" budgets are scaled the same way.
BUDGET_TIME_SCALE = 0.05
MARKER = "▍"
_databases = itertools.count(9)  # Redis logical databases of their own (other tests use database 0 with prefixes)


def model_text(words: int) -> str:
    # Plain words: the text Slack shows equals the model's text, so completeness is an exact comparison.
    return "Summary: " + " ".join(f"point{i}" for i in range(words)) + "."


# Threads started an hour ago: recent enough that the replicas' retention purge keeps them.
THREADS_START = int(time.time()) - 3600


def root_ts(k: int) -> str:
    return f"{THREADS_START + k}.000100"


def responder_for(text: str) -> Callable[[ReceivedRequest], FakeReply]:
    def responder(request: ReceivedRequest) -> FakeReply:
        return default_responder(request) if request.structured else FakeReply(text)

    return responder


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    url = isolated_redis_url(redis_url, next(_databases))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def replica_env(
    slack: FakeSlack, llm: FakeLLMServer, redis_url: str, *, time_scale: float = TIME_SCALE, **settings: str
) -> dict[str, str]:
    scaled_minute = 1 / time_scale
    return {
        "REDIS_URL": redis_url,
        "OPENAI_API_KEY": "x",
        "OPENAI_BASE_URL": llm.openai_base_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        # Tier 3 chat.update at the fake's time scale, a little under it as in production (45 of 50 per minute).
        "SUPPORTBOT_SLACK_EDITS_PER_MINUTE": str(45 * scaled_minute),
        "SUPPORTBOT_SLACK_HISTORY_PER_MINUTE": str(scaled_minute),
        "SUPPORTBOT_USER_REQUESTS_PER_HOUR": "100000",
        "SUPPORTBOT_LOG_LEVEL": "WARNING",
        **{f"SUPPORTBOT_{k.upper()}": v for k, v in settings.items()},
    }


@pytest.fixture
async def fakes() -> AsyncIterator[Callable[..., Any]]:
    """Opens the fake Slack and the fake model for a test; both close when it ends."""
    opened: list[Any] = []

    async def open_fakes(
        *, text: str, tokens_per_s: float, channels: int, time_scale: float = TIME_SCALE
    ) -> tuple[FakeSlack, FakeLLMServer]:
        slack = await FakeSlack(time_scale=time_scale, fractional_retry_after=True).start()
        opened.append(slack)
        llm = await FakeLLMServer(responder=responder_for(text), tokens_per_s=tokens_per_s).start()
        opened.append(llm)
        for c in range(channels):
            slack.add_channel(f"C{c}")
        slack.add_user("U1", display_name="Ada")
        return slack, llm

    yield open_fakes
    for fake in reversed(opened):
        await (fake.close() if isinstance(fake, FakeSlack) else fake.stop())


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[..., Awaitable[list[Replica]]]]:
    started: list[Replica] = []

    async def start(env: dict[str, str], n: int = 2) -> list[Replica]:
        new = [Replica(env=env, log_path=tmp_path / f"replica-{i}.log", name=f"r{i}").start() for i in range(n)]
        started.extend(new)
        await asyncio.gather(*(r.ready() for r in new))
        return new

    yield start
    for replica in started:
        replica.kill()


async def record_threads(redis_url: str, threads: list[tuple[str, str]]) -> None:
    """The bot saw these threads as message events (each thread's words are its own: no response-cache hits)."""
    store = await RedisStore(redis_url).open()
    try:
        for k, (channel, root) in enumerate(threads):
            ref = ChannelRef("slack", TEAM, channel)
            for j in range(3):
                ts = f"{root.split('.')[0]}.{100 + j:06d}"
                await store.messages.add(
                    ChatMessage(
                        ref=MessageRef(ref, ts, root),
                        author="U1",
                        author_name="Ada",
                        text=f"thread {k} message {j}: the export to {channel} fails on {k}",
                        sent_at=datetime.fromtimestamp(float(ts), UTC),
                    )
                )
    finally:
        await store.close()


def mention(channel: str, root: str) -> dict[str, Any]:
    return payloads.event_callback(
        payloads.app_mention(channel=channel, user="U1", text="<@UBOT> summarize please", thread_ts=root)
    )


def replies(slack: FakeSlack, channel: str, root: str) -> list[Any]:
    return [m for m in slack.bot_messages(channel) if m.thread_ts == root]


async def eventually(check: Callable[[], bool], *, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f}s: {what}")
        await asyncio.sleep(0.05)


async def all_idle(group: list[Replica]) -> None:
    deadline = time.monotonic() + 30
    while sum([await r.busy() for r in group]):
        assert time.monotonic() < deadline, "replicas still busy after 30 s"
        await asyncio.sleep(0.1)


def usage_total(usages: list[Usage]) -> tuple[int, ...]:
    fields = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    return tuple(sum(getattr(u, f) for u in usages) for f in fields)


# ---- two processes, one Redis ---------------------------------------------------------------------------------------


async def test_two_replicas_given_the_same_events_reply_once_each_and_the_ledger_matches_the_provider(
    fakes: Callable[..., Any], replicas: Callable[..., Awaitable[list[Replica]]], redis_db: str
) -> None:
    text = model_text(30)
    slack, llm = await fakes(text=text, tokens_per_s=300, channels=4)
    threads = [(f"C{k % 4}", root_ts(k)) for k in range(10)]
    await record_threads(redis_db, threads)
    group = await replicas(replica_env(slack, llm, redis_db))
    bodies = [mention(channel, root) for channel, root in threads]
    async with (
        SlackDelivery(group[0].events_url, SECRET) as to_a,
        SlackDelivery(group[1].events_url, SECRET) as to_b,
    ):
        # Every event reaches both replicas at once, then Slack retries it (x-slack-retry-num) on both again.
        first = await asyncio.gather(*(d.send_event(b) for b in bodies for d in (to_a, to_b)))
        again = await asyncio.gather(
            *(d.send_event(b, retry_num=n) for b in bodies for d in (to_a, to_b) for n in (1, 2))
        )
    assert {r.status for r in first + again} == {200}

    def all_final() -> bool:
        return all(
            len(found := replies(slack, c, root)) >= 1 and found[0].text == text for c, root in threads
        )

    await eventually(all_final, within_s=30, what="every mention answered in full")
    await all_idle(group)
    for channel, root in threads:
        found = replies(slack, channel, root)
        assert [m.text for m in found] == [text], f"{channel}/{root}: {len(found)} replies"
    # Replies starting together probe whether chat.update's limit is per channel (adapters/slack/paths.py); where it
    # is the workspace's, as here, one refused probe settles it — once per replica at most (the other may probe
    # before it reads the answer from the store).
    assert slack.count_429() <= len(group) and set(slack.rate_limited) <= {"chat.update"}, slack.rate_limited

    store = await RedisStore(redis_db).open()
    try:
        records = await store.ledger.records(since=datetime(2000, 1, 1, tzinfo=UTC))
        assert await store.live.stale(older_than_s=0) == []  # every finished reply left the registry
    finally:
        await store.close()
    assert len(records) == len(llm.served) == len(threads)
    billed = [s.billed for s in llm.served if s.billed is not None]
    assert usage_total([r.usage for r in records]) == usage_total(billed)
    assert all(r.usage.output > 0 for r in records)
    # SIGTERM is the graceful path: both exit cleanly with nothing in flight.
    assert [await r.terminated() for r in group] == [0, 0]


async def test_sigterm_lets_the_reply_in_flight_finish_before_the_replica_exits(
    fakes: Callable[..., Any], replicas: Callable[..., Awaitable[list[Replica]]], redis_db: str
) -> None:
    text = model_text(40)
    slack, llm = await fakes(text=text, tokens_per_s=20, channels=1)  # ~2.5 s of streaming
    root = root_ts(0)
    await record_threads(redis_db, [("C0", root)])
    [replica] = await replicas(replica_env(slack, llm, redis_db), n=1)
    async with SlackDelivery(replica.events_url, SECRET) as delivery:
        assert (await delivery.send_event(mention("C0", root))).status == 200
    await eventually(
        lambda: any("point1 " in m.text for m in replies(slack, "C0", root)), within_s=20, what="streaming"
    )
    assert await replica.terminated() == 0
    assert [m.text for m in replies(slack, "C0", root)] == [text]  # finished, not cut off


async def test_a_reply_cut_off_by_kill_9_is_finalised_by_the_other_replica(
    fakes: Callable[..., Any], replicas: Callable[..., Awaitable[list[Replica]]], redis_db: str
) -> None:
    text = model_text(80)
    slack, llm = await fakes(text=text, tokens_per_s=8, channels=1)  # ~10 s of streaming: killed mid-way
    root = root_ts(0)
    await record_threads(redis_db, [("C0", root)])
    env = replica_env(
        slack, llm, redis_db, live_heartbeat_s="0.3", orphan_after_s="1.5", orphan_sweep_s="0.3"
    )
    victim, survivor = await replicas(env)
    async with SlackDelivery(victim.events_url, SECRET) as delivery:
        assert (await delivery.send_event(mention("C0", root))).status == 200

    def streaming() -> bool:
        found = replies(slack, "C0", root)
        return bool(found) and "point3 " in found[0].text and MARKER in found[0].text

    await eventually(streaming, within_s=20, what="the reply is visibly half-written")
    victim.kill()
    shown = replies(slack, "C0", root)[0].text.removesuffix(MARKER).rstrip()

    def interrupted() -> bool:
        return INTERRUPTED_LINE in replies(slack, "C0", root)[0].text

    # The promise is 60 s; with these settings it takes about two seconds.
    await eventually(interrupted, within_s=45, what="the stuck reply finalised by the survivor")
    [message] = replies(slack, "C0", root)
    body, _, line = message.text.rpartition("\n\n")
    assert line == INTERRUPTED_LINE
    assert MARKER not in message.text
    assert text.startswith(body) and body.startswith("Summary: point0")
    # What it says is what the reply showed, give or take the last heartbeat (at most 0.3 s of text).
    assert abs(len(body) - len(shown)) < 40
    store = await RedisStore(redis_db).open()
    try:
        assert await store.live.stale(older_than_s=0) == []
    finally:
        await store.close()
    assert await survivor.busy() == 0


async def test_two_replicas_together_stay_within_one_workspace_edit_budget(
    fakes: Callable[..., Any], replicas: Callable[..., Awaitable[list[Replica]]], redis_db: str
) -> None:
    text = model_text(60)
    # 30 replies of ~1.5 s each, each wanting an edit every 0.3 s: far more than Tier 3 allows the workspace (with
    # a budget per replica instead of a shared one, this run meets dozens of 429s). A slower scale than the other
    # tests: the fake counts calls when it handles them, so a pause of this test's event loop bunches them, and a
    # longer "minute" keeps such bunches within Slack's burst.
    slack, llm = await fakes(text=text, tokens_per_s=40, channels=8, time_scale=BUDGET_TIME_SCALE)
    threads = [(f"C{k % 8}", root_ts(k)) for k in range(30)]
    await record_threads(redis_db, threads)
    # chat.update replies (native streams draw from other budgets); the rate each replica learns is shared too.
    group = await replicas(
        replica_env(slack, llm, redis_db, time_scale=BUDGET_TIME_SCALE, slack_native_streaming="false")
    )
    async with (
        SlackDelivery(group[0].events_url, SECRET) as to_a,
        SlackDelivery(group[1].events_url, SECRET) as to_b,
    ):
        # A load balancer: half the mentions to each replica.
        sent = await asyncio.gather(
            *((to_a, to_b)[k % 2].send_event(mention(c, root)) for k, (c, root) in enumerate(threads))
        )
    assert {r.status for r in sent} == {200}

    def all_final() -> bool:
        return all([m.text for m in replies(slack, c, root)] == [text] for c, root in threads)

    await eventually(all_final, within_s=45, what="every reply complete")
    updates = slack.calls_to("chat.update")
    assert len(updates) >= len(threads)  # the budget was spent on edits, and shared ...
    # ... so that together the replicas stay within it, but for the odd 429 that tells the shared budget where
    # the workspace's limit is (the rate rises while Slack accepts).
    assert slack.count_429() <= max(2, len(slack.calls) // 100), slack.rate_limited
    assert {c.team_id for c in updates} == {TEAM}


# ---- in-process: the janitor ----------------------------------------------------------------------------------------

CHANNEL = ChannelRef("fake", "W1", "C1")
LIMITS = PlatformLimits(max_message_chars=200, min_edit_interval_s=0.0)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two processes' views of one SQLite file: the replica that died, and the one that cleans up."""
    a = await SqliteStore(str(tmp_path / "bot.db")).open()
    b = await SqliteStore(str(tmp_path / "bot.db")).open()
    yield a, b
    await a.close()
    await b.close()


async def sweep_until(janitor: OrphanJanitor, *, within_s: float = 5.0) -> int:
    deadline = time.monotonic() + within_s
    while not (done := await janitor.sweep()):
        assert time.monotonic() < deadline, "janitor found nothing to finalise"
        await asyncio.sleep(0.05)
    return done


async def test_a_restarted_replica_finalises_what_it_left_and_only_once(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    dead, restarted = stores
    chat = FakeChatPlatform(limits=LIMITS)
    first = await chat.post(CHANNEL, "…writing", thread_id="t1")
    await chat.edit(first, "Half of <!channel> sum ▍", final=False)
    state = LiveState("fake", "W1", "C1", "t1", (first.message_id,), "Half of <!channel> sum")
    await dead.live.heartbeat("r1", state.to_json())  # ... and then the process died

    janitors = [OrphanJanitor(store=s, after_s=0.2) for s in (restarted, dead)]
    for janitor in janitors:
        janitor.serve("fake", lambda workspace: chat)
    assert await janitors[0].sweep() == 0  # not stale yet: it may still be running
    assert await sweep_until(janitors[0]) == 1
    assert await asyncio.gather(*(j.sweep() for j in janitors)) == [0, 0]
    text = chat.text(first)
    assert text.endswith("\n\n" + INTERRUPTED_LINE)
    assert text.startswith("Half of ") and "<!channel>" not in text  # defanged, as everything the bot posts
    assert len(chat.edits(first)) == 2  # the reply's own edit, then exactly one by a janitor
    assert await restarted.live.stale(older_than_s=0) == []


async def test_a_janitor_leaves_replies_of_platforms_it_cannot_reach(stores: tuple[SqliteStore, SqliteStore]) -> None:
    store, _ = stores
    state = LiveState("discord", "G1", "C1", None, ("m1",), "half")
    await store.live.heartbeat("r1", state.to_json())
    janitor = OrphanJanitor(store=store, after_s=0.0)
    janitor.serve("fake", lambda workspace: FakeChatPlatform(limits=LIMITS))
    assert await janitor.sweep() == 0
    assert [rid for rid, _ in await store.live.stale(older_than_s=0)] == ["r1"]  # left for a Discord replica


async def test_registration_ends_with_the_reply_but_survives_a_cancelled_one(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    store, _ = stores
    chat = FakeChatPlatform(limits=LIMITS)

    async def write(*, hang: bool) -> None:
        reply = LiveReply(chat, CHANNEL, thread_id="t1")
        await reply.start()
        async with registered(store.live, reply, CHANNEL, thread_id="t1", every_s=0.05):
            reply.append("some text")
            if hang:
                await asyncio.sleep(3600)
            await reply.finish()

    await write(hang=False)
    assert await store.live.stale(older_than_s=0) == []
    task = asyncio.create_task(write(hang=True))
    await asyncio.sleep(0.2)
    task.cancel()  # shutdown cut it off: it must stay registered for a janitor
    await asyncio.gather(task, return_exceptions=True)
    [(_, raw)] = await store.live.stale(older_than_s=0)
    state = LiveState.from_json(raw)
    assert (state.platform, state.channel, state.thread_id, state.text) == ("fake", "C1", "t1", "some text")
    assert len(state.messages) == 1


def test_the_interrupted_text_goes_in_the_last_message_and_fits() -> None:
    words = " ".join(f"word{i}" for i in range(80))  # ~550 characters: three messages of at most 200
    state = LiveState("fake", "W1", "C1", None, ("m1", "m2", "m3"), words)
    text = final_text(state, limit=200)
    assert len(text) <= 200 and text.endswith(INTERRUPTED_LINE)
    assert text.startswith("word") and not text.startswith("word0 ")  # the tail, not the beginning
    assert final_text(LiveState("fake", "W1", "C1", None, ("m1",), ""), limit=200) == INTERRUPTED_LINE


# ---- in-process: the shared budget's line ---------------------------------------------------------------------------


async def test_store_budget_serves_its_line_in_order_and_a_caller_who_gives_up_leaves_no_hole(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    a, b = stores
    budgets = [StoreBudget(s.budgets, name="chat.update", per_minute=600, burst=1) for s in (a, b)]
    order: list[str] = []

    async def take(budget: StoreBudget, who: str) -> None:
        await budget.take("slack:T1")
        order.append(who)

    first = asyncio.create_task(take(budgets[0], "a1"))
    await first
    queued = [asyncio.create_task(take(budgets[0], w)) for w in ("a2", "a3", "a4")]
    other = asyncio.create_task(take(budgets[1], "b1"))  # another replica, same bucket
    await asyncio.sleep(0)
    queued[1].cancel()  # a3 gives up while in line
    await asyncio.gather(*queued, other, return_exceptions=True)
    assert [w for w in order if w.startswith("a")] == ["a1", "a2", "a4"]
    assert sorted(order) == ["a1", "a2", "a4", "b1"]
    await budgets[1].pause("slack:T1", 0.2)  # a 429 seen by one replica holds back the other too
    assert await a.budgets.try_take("slack:T1:chat.update", per_minute=600, burst=1) > 0
