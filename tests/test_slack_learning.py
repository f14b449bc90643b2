"""What the Slack adapter learns from Slack's answers: learned budgets (AIMD, shared through the store, pinned
rates), the restricted history tier, and a workspace that refuses native streaming — against the fake Slack over
real sockets with the real slack_sdk client, and the real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buckets import InMemoryBudget, StreamBudgets
from adapters.slack.facts import WorkspaceFacts
from adapters.slack.learned import (
    CEILING_TTL_S,
    DECREASE,
    PROBE_EVIDENCE,
    PROBE_RAISE,
    PROBE_REFUSED_TTL_S,
    PROBE_SHARE,
    PROBE_TRIAL_S,
    LearnedBudget,
    MemoryBudgets,
)
from adapters.slack.pacing import SHARE_HORIZON_S, SHARE_LEFT_MIN, SHARE_USE, WorkspaceEditPacer
from adapters.slack.paths import MOVE_BEFORE_S
from adapters.slack.platform import SlackPlatform
from bot.live_reply import DEFAULT_PLACEHOLDER, LiveReply
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, MessageRef
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_rates import Rate
from tests.fakes.slack_records import Fault

TEAM = "T0FAKE"
SCOPE = "slack:T0FAKE"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore(str(tmp_path / "s.db")).open()
    yield opened
    await opened.close()


def budget(store: SqliteStore, *, start: float = 60.0) -> LearnedBudget:
    return LearnedBudget(store.budgets, name="chat.update", start_per_minute=start, burst=6, kv=store.kv)


async def test_learned_rate_rises_while_accepted_falls_on_429_and_is_shared(store: SqliteStore) -> None:
    one = budget(store)
    await one.take(SCOPE)
    for _ in range(60):  # a minute's worth of calls at 60/min, all accepted ...
        await one.accepted(SCOPE)
    probed = one.per_minute(SCOPE)
    assert probed == pytest.approx(60.0 * (1 + PROBE_SHARE), rel=0.02)  # ... add a fifth of the start (additive)
    await one.pause(SCOPE, 0.01)  # Slack said 429
    assert one.per_minute(SCOPE) == pytest.approx(probed * DECREASE)
    for _ in range(1000):
        await one.accepted(SCOPE)
    assert one.per_minute(SCOPE) < probed  # the refused rate is a ceiling for a while

    # Another replica on the same store adopts what the first learned: a 429's cut is written at once (the small
    # increases since then are written at most every WRITE_EVERY_S).
    other = budget(store)
    await other.take(SCOPE)
    assert other.per_minute(SCOPE) == pytest.approx(probed * DECREASE)
    raw = await store.kv.get(f"slack:learned:{SCOPE}:chat.update")
    assert raw is not None and json.loads(raw)["ceiling"] == pytest.approx(probed)


async def test_a_pinned_rate_is_not_probed_and_paces_the_next_call() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pinned = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="conversations.replies", start_per_minute=50,
                           burst=50, clock=lambda: now[0], sleep=sleep)  # fmt: skip
    await pinned.take(SCOPE)
    await pinned.pin(SCOPE, per_minute=1.0, for_s=3600)
    await pinned.accepted(SCOPE)
    assert pinned.pinned(SCOPE) and pinned.per_minute(SCOPE) == 1.0
    await pinned.take(SCOPE)
    assert sum(slept) == pytest.approx(60.0)  # one call a minute from the call that revealed the tier


async def test_facts_expire_so_they_are_rechecked(store: SqliteStore) -> None:
    facts = WorkspaceFacts(store.kv)
    await facts.put("slack:T1:native_streaming", "refused", ttl_s=0.05)
    assert await WorkspaceFacts(store.kv).get("slack:T1:native_streaming") == "refused"  # another replica
    import asyncio

    await asyncio.sleep(0.1)
    assert await WorkspaceFacts(store.kv).get("slack:T1:native_streaming") is None


async def test_restricted_tier_is_learned_from_a_capped_page_and_remembered(store: SqliteStore) -> None:
    async with FakeSlack(time_scale=0.001, fractional_retry_after=True, restricted_history=True) as slack:
        parent = slack.seed_thread("C1", replies=29)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        history = LearnedBudget(store.budgets, name="conversations.replies", start_per_minute=50_000, burst=50,
                                kv=store.kv)  # fmt: skip
        platform = SlackPlatform(client, team_id=TEAM, history_budget=history, restricted_per_minute=500)
        said: list[str] = []
        ref = MessageRef(ChannelRef("slack", TEAM, "C1"), parent.ts, parent.ts)
        fetched = await platform.fetch_thread(ref, progress=said.append)

        assert [m.text for m in fetched] == [f"message {i}" for i in range(30)]
        pages = slack.calls_to("conversations.replies")
        assert [c.params["limit"] for c in pages] == ["200", "15"]  # asked for 200, got 15: the restricted tier
        assert slack.count_429() == 0
        assert "15 messages a minute" in said[0] and "of 30 messages" in said[0]  # why, and for how long
        raw = await store.kv.get("slack:learned:T0FAKE:conversations.replies")
        assert raw is not None and json.loads(raw)["per_minute"] == 500  # pinned, for every replica
        again = LearnedBudget(store.budgets, name="conversations.replies", start_per_minute=50_000, burst=50,
                              kv=store.kv)  # fmt: skip
        await again.take(TEAM)
        assert again.pinned(TEAM)


async def test_a_mentions_thread_is_read_up_to_the_mention_so_the_restricted_tier_pays_no_page_for_our_reply(
    store: SqliteStore,
) -> None:
    # 30 messages with the mention; then the bot's "writing…" reply and a late remark. Read to the end, that was a
    # third page — a minute more on the restricted tier — for messages the summary does not need.
    async with FakeSlack(time_scale=0.001, fractional_retry_after=True, restricted_history=True) as slack:
        parent = slack.seed_thread("C1", replies=28)
        mention = slack.seed_message("C1", "<@UBOT> summarize", thread_ts=parent.ts)
        slack.seed_message("C1", "Writing…", thread_ts=parent.ts, bot_id="BBOT")
        slack.seed_message("C1", "anyone?", thread_ts=parent.ts)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        history = LearnedBudget(store.budgets, name="conversations.replies", start_per_minute=50_000, burst=50,
                                kv=store.kv)  # fmt: skip
        platform = SlackPlatform(client, team_id=TEAM, history_budget=history, restricted_per_minute=500)
        ref = MessageRef(ChannelRef("slack", TEAM, "C1"), mention.ts, parent.ts)
        fetched = await platform.fetch_thread(ref)

        assert [m.text for m in fetched[:-1]] == [f"message {i}" for i in range(29)]
        assert fetched[-1].ref.message_id == mention.ts
        assert len(slack.calls_to("conversations.replies")) == 2


async def test_a_workspace_that_refuses_streams_gets_chat_update_and_is_remembered(store: SqliteStore) -> None:
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        parent = slack.seed_message("C1", "help?")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        slack.inject("chat.startStream", Fault.api_error("not_allowed"))
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True, facts=WorkspaceFacts(store.kv))
        channel = ChannelRef("slack", TEAM, "C1")
        for _ in range(2):
            async with LiveReply(platform, channel, thread_id=parent.ts) as reply:
                reply.append("the answer")
            assert reply.stats.completed
        assert len(slack.calls_to("chat.startStream")) == 1  # the second reply did not ask again
        replies = [m for m in slack.bot_messages("C1") if m.thread_ts == parent.ts]
        assert [m.text for m in replies] == ["the answer", "the answer"]
        assert all(v.kind in ("post", "update") for m in replies for v in m.versions)  # chat.postMessage/update
        assert await store.kv.get("slack:fact:slack:T0FAKE:native_streaming") == "refused"


async def test_probes_past_an_empty_bucket_find_more_room_and_one_refusal_settles_it() -> None:
    now, wall = [0.0], [1_000.0]
    buckets = MemoryBudgets(clock=lambda: now[0])
    wide = LearnedBudget(buckets, name="chat.update", start_per_minute=60, burst=2, clock=lambda: now[0],
                         wall=lambda: wall[0])  # fmt: skip
    assert [await wide.take(SCOPE, probe=True) for _ in range(3)] == [False, False, True]  # the burst, then a probe
    assert not wide.may_probe(SCOPE)  # one probe at a time
    for _ in range(PROBE_EVIDENCE - 1):  # a few accepted probes: a burst larger than ours may explain them
        await wide.accepted(SCOPE, probe=True)
        assert wide.per_minute(SCOPE) == 60 and wide.may_probe(SCOPE)
        assert await wide.take(SCOPE, probe=True)  # the bucket owes the accepted probe: still empty, probe again
    await wide.accepted(SCOPE, probe=True)  # one more: more than a larger burst explains
    assert wide.per_minute(SCOPE) == pytest.approx(60 * PROBE_RAISE)  # more than any burst: slow start
    wall[0] += PROBE_TRIAL_S  # the raised rate stood its trial (a refusal within it: test below)
    assert await wide.take(SCOPE, probe=True)
    await wide.pause(SCOPE, 1.0, probe=True)  # refused: the room ends here
    assert wide.per_minute(SCOPE) == pytest.approx(60 * PROBE_RAISE)  # no cut: the budget's own calls were fine
    assert not wide.may_probe(SCOPE)  # and no more probes for a while


def at(channel: str, ts: str) -> MessageRef:
    """A message of workspace T1, as LiveReply hands it to the pacer."""
    return MessageRef(ChannelRef("slack", "T1", channel), ts)


async def test_a_progress_edit_probes_past_the_workspace_budget_within_its_channels() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    buckets = MemoryBudgets(clock=lambda: now[0])

    def learned(burst: int) -> LearnedBudget:
        return LearnedBudget(buckets, name="chat.update", start_per_minute=60, burst=burst, clock=lambda: now[0],
                             sleep=sleep)  # fmt: skip

    wide, narrow = learned(1), learned(4)
    pacer = WorkspaceEditPacer(wide, channel_budget=narrow, clock=lambda: now[0], sleep=sleep)
    await pacer.wait_turn(at("C1", "1.1"), final=False)  # the workspace's only token
    await pacer.wait_turn(at("C2", "2.1"), final=False)  # none left: goes as a probe, within C2's budget
    assert now[0] == 0.0 and not wide.may_probe("slack:T1")
    await pacer.penalize(at("C2", "2.1"), 2.0)  # Slack refused the probe: a workspace limit after all
    assert wide.per_minute("slack:T1") == narrow.per_minute("slack:T1:C2") == 60  # nothing cut
    await pacer.wait_turn(at("C1", "1.2"), final=False)  # no more probes: it waits for the workspace budget (the Retry-After)
    assert now[0] >= 2.0
    await pacer.wait_turn(at("C1", "1.3"), final=True)
    await pacer.penalize(at("C1", "1.3"), 1.0)  # a 429 within the budget: both scopes learn it
    assert wide.per_minute("slack:T1") < 60 and narrow.per_minute("slack:T1:C1") < 60


async def test_a_caller_waiting_to_probe_goes_when_the_probe_out_is_answered_not_a_token_later() -> None:
    # Under load the room must be found in the first seconds of the replies: a caller that may probe does not
    # sleep until the empty bucket refills (10 s here) while another probe is out and about to be answered.
    wide = LearnedBudget(MemoryBudgets(), name="chat.update", start_per_minute=6, burst=1)
    assert await wide.take(SCOPE, probe=True) is False  # the burst
    assert await wide.take(SCOPE, probe=True) is True  # a probe is out
    waiting = asyncio.ensure_future(wide.take(SCOPE, probe=True))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # one probe at a time
    await wide.accepted(SCOPE, probe=True)
    assert await asyncio.wait_for(waiting, timeout=5.0) is True  # the next probe, not a token 10 s later


async def test_replicas_probe_one_at_a_time_and_the_second_reads_the_first_ones_refusal(store: SqliteStore) -> None:
    # Two replicas on one store: each probing on its own paid a refused probe of its own, and the two probes out at
    # once took Slack's calls from the replicas' budgeted ones (test_replicas: 3 429s where one answer was enough).
    one, two = (LearnedBudget(store.budgets, name="chat.update", start_per_minute=6, burst=1, kv=store.kv,
                              locks=store.locks) for _ in range(2))  # fmt: skip
    assert await one.take(SCOPE, probe=True) is False  # the shared burst
    assert await one.take(SCOPE, probe=True) is True  # one's probe is out
    waiting = asyncio.ensure_future(two.take(SCOPE, probe=True))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # two may probe as far as it knows, but one's probe holds the workspace's turn
    await one.pause(SCOPE, 0.01, probe=True)  # refused: the limit is the workspace's
    await asyncio.sleep(0.2)
    assert not waiting.done()  # two read the refusal instead of paying a 429 of its own
    assert not two.may_probe(SCOPE)
    waiting.cancel()


async def test_a_call_refused_just_after_an_accepted_probe_is_that_probes_refusal() -> None:
    # Where the limit is the workspace's, a probe can be accepted on a call Slack had beyond our bucket (a larger
    # burst) and the next call within the budget be refused: the room past the budget is not there. That settles
    # it for hours like a refused probe, with no cut (the budget's rate was right). Later, a 429 is a 429.
    now, wall = [0.0], [1_000.0]
    wide = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="chat.update", start_per_minute=60, burst=1,
                         clock=lambda: now[0], wall=lambda: wall[0])  # fmt: skip
    assert await wide.take(SCOPE, probe=True) is False
    assert await wide.take(SCOPE, probe=True) is True
    await wide.accepted(SCOPE, probe=True)
    await wide.pause(SCOPE, 0.01)
    assert wide.per_minute(SCOPE) == 60
    wall[0] += 2 * CEILING_TTL_S
    assert not wide.may_probe(SCOPE)
    now[0] += 60.0
    await wide.pause(SCOPE, 0.01)
    assert wide.per_minute(SCOPE) == pytest.approx(60 * DECREASE)


async def test_replies_starting_together_send_some_to_chat_update_to_find_its_room() -> None:
    """Native streaming on: a lone reply streams; when replies start together, the first in each channel takes
    chat.update (as many as a workspace-wide budget would still serve) so its progress edits probe whether the
    limit is per channel while the streams can still move there; once a probe was refused, the budgets choose."""
    async with FakeSlack(fractional_retry_after=True) as slack:
        channels = ("C1", "C2", "C3", "C4", "C5")
        for c in channels:
            slack.add_channel(c)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True)

        async def path(channel: str) -> str:
            root = slack.seed_message(channel, "help?").ts
            ref = await platform.post(ChannelRef("slack", TEAM, channel), "first words", thread_id=root)
            return "stream" if slack.versions(channel, ref.message_id)[0].kind == "stream_start" else "chat.update"

        assert await path("C1") == "stream"  # alone: the stream's own budget is all its
        assert await path("C1") == "chat.update"  # another reply runs: C1's first on chat.update probes
        assert await path("C1") == "stream"  # C1 has its prober
        assert [await path(c) for c in ("C2", "C3", "C4")] == ["chat.update", "chat.update", "stream"]
        await platform.pacer.budget.pause(SCOPE, 0.01, probe=True)  # a probe refused: the limit is the workspace's
        assert await path("C5") == "stream"


async def test_a_stream_moves_to_chat_update_with_more_room_there_only_while_young() -> None:
    """A move pays a chat.stopStream and puts the reply's final in chat.update's budget: worth it early in a reply;
    near its end the stream's own stop is the quicker final (a stream moving at 7.9 s showed its final 1.9 s late)."""
    now = [0.0]
    async with FakeSlack() as slack:
        slack.add_channel("C1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        wide, narrow = (InMemoryBudget(per_minute=50, burst=4, clock=lambda: now[0]) for _ in range(2))
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True, edit_budget=wide,
                                 channel_edit_budget=narrow, clock=lambda: now[0])  # fmt: skip
        channel = ChannelRef("slack", TEAM, "C1")

        async def reply() -> MessageRef:
            return await platform.post(channel, "first words", thread_id=slack.seed_message("C1", "help?").ts)

        old = await reply()
        now[0] += MOVE_BEFORE_S + 1.0
        young = await reply()
        wide.rate_per_minute = narrow.rate_per_minute = 1200  # chat.update turns out to have far more room
        for ref in (old, young):
            assert platform._paths.leaves_stream(ref) is (ref is young)
            await platform.edit(ref, "first words and more", final=False)
            await platform.edit(ref, "first words and more text", final=False)
        kinds = {ref.message_id: [v.kind for v in slack.versions("C1", ref.message_id)] for ref in (old, young)}
        assert kinds[old.message_id] == ["stream_start", "stream_append", "stream_append"]
        assert kinds[young.message_id] == ["stream_start", "stream_stop", "update"]


async def test_a_reply_alone_on_chat_update_in_its_channel_shares_it_with_a_stream_that_may_move_in() -> None:
    """Once chat.update's room is proven per channel, young streams move to it: a reply editing alone in their
    channel at the platform floor spent the channel's budget just before one moved in (its final then came late)."""

    class Proven(InMemoryBudget):
        proven = False

        def room_proven(self, scope: str) -> bool:
            return self.proven

        def may_probe(self, scope: str) -> bool:
            return not self.proven

    now = [0.0]
    async with FakeSlack() as slack:
        slack.add_channel("C1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        wide, narrow = Proven(per_minute=50, burst=4, clock=lambda: now[0]), InMemoryBudget(per_minute=50, burst=4)
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True, edit_budget=wide,
                                 channel_edit_budget=narrow, clock=lambda: now[0])  # fmt: skip
        channel = ChannelRef("slack", TEAM, "C1")

        async def reply() -> MessageRef:
            return await platform.post(channel, "words", thread_id=slack.seed_message("C1", "help?").ts)

        stream, edited = await reply(), await reply()  # alone: a stream; then C1's first reply on chat.update
        paths = platform._paths
        assert slack.versions("C1", edited.message_id)[0].kind == "post"
        assert paths.sharing(edited, True) == 1  # the room is not known: it probes alone, at the floor
        wide.proven = True
        assert paths.sharing(edited, True) == 2 and paths.sharing(stream, True) == 1
        now[0] += MOVE_BEFORE_S + 1.0
        assert paths.sharing(edited, True) == 1  # the stream is too old to move
        assert paths.sharing(edited, False) == 1  # the workspace's share counts only the replies there


async def test_a_streams_share_of_its_budget_is_counted_over_what_is_left_of_its_life() -> None:
    # A streamed reply's final goes by chat.stopStream, so its appends cut its text into one gap more than their
    # number; counted over a whole horizon at every turn, a reply ending sooner kept its last gap short and its
    # middle ones long. As it ages its share is counted over the rest of the horizon (at least SHARE_LEFT_MIN of it).
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    budget = InMemoryBudget(per_minute=60, burst=10, clock=lambda: now[0], sleep=sleep)
    pacer = WorkspaceEditPacer(budget, sharing=lambda ref, per_channel: 4, clock=lambda: now[0], sleep=sleep)
    ref = at("C1", "1.1")

    def expected(left: float) -> float:
        calls = SHARE_USE * left * (10 / SHARE_HORIZON_S + 1.0)  # the burst spread over the horizon, 1 call a second
        return left / (calls / 4 + 1)

    await pacer.wait_turn(ref, final=True)  # never seen before: a final goes at once, and is forgotten
    now[0] = 0.0
    await pacer.wait_turn(ref, final=False)  # its first turn (a part of its share later): its life counts from 0
    assert pacer.share_interval(ref, budget, final_elsewhere=True) == pytest.approx(expected(SHARE_HORIZON_S - now[0]))
    now[0] = 3.0
    assert pacer.share_interval(ref, budget, final_elsewhere=True) == pytest.approx(expected(SHARE_HORIZON_S - 3))
    now[0] += SHARE_HORIZON_S
    shortest = expected(SHARE_LEFT_MIN * SHARE_HORIZON_S)
    assert pacer.share_interval(ref, budget, final_elsewhere=True) == pytest.approx(shortest)
    assert shortest < expected(SHARE_HORIZON_S - 3) < expected(SHARE_HORIZON_S)
    # A chat.update reply's final is paid from the same budget: its share is the same at every age.
    assert pacer.share_interval(ref, budget) == pytest.approx(4 / (SHARE_USE * (10 / SHARE_HORIZON_S + 1.0)))


async def raised_by_probes() -> tuple[LearnedBudget, list[float], list[float]]:
    """A chat.update budget (60/min, burst 2) whose burst went and then PROBE_EVIDENCE accepted probes; its clocks."""
    now, wall = [0.0], [1_000.0]
    wide = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="chat.update", start_per_minute=60, burst=2,
                         clock=lambda: now[0], wall=lambda: wall[0])  # fmt: skip
    for _ in range(2):
        assert await wide.take(SCOPE, probe=True) is False  # the burst
        await wide.accepted(SCOPE)
    for _ in range(PROBE_EVIDENCE):
        assert await wide.take(SCOPE, probe=True) is True
        await wide.accepted(SCOPE, probe=True)
    return wide, now, wall


async def test_a_rate_raised_by_probes_is_on_trial_until_more_calls_than_a_larger_burst_explains() -> None:
    # Slack's burst is undocumented: a workspace-wide one larger than ours accepts a few probes too. So the raised
    # rate is not trusted for choices that cannot be undone (streams moving to chat.update) until Slack took more
    # calls beyond the documented budget than a burst 2.5 times ours explains, and a 429 before that takes the rate
    # back to where the probes started, for hours (a fake with a workspace-wide burst of 10: 5-6 429s and finals 11 s
    # late without this). Once proven, a 429 is an ordinary one (a channel's own limit, say), cut like any other.
    wide, now, wall = await raised_by_probes()
    raised = wide.per_minute(SCOPE)
    assert raised == 60 * PROBE_RAISE and wide.proven_per_minute(SCOPE) == 60  # on trial: 3 calls beyond the burst
    await wide.pause(SCOPE, 0.01)  # a 429 now: a burst took the probes
    assert wide.per_minute(SCOPE) == wide.proven_per_minute(SCOPE) == 60
    assert not wide.may_probe(SCOPE)
    wall[0] += PROBE_TRIAL_S
    now[0] += 60.0
    await wide.pause(SCOPE, 0.01)  # later, a 429 is an ordinary one
    assert wide.per_minute(SCOPE) == pytest.approx(60 * DECREASE)

    wide, _, _ = await raised_by_probes()
    for _ in range(10):  # more calls accepted beyond the documented 60/min and burst of 2 (the clock stands still)
        if wide.proven_per_minute(SCOPE) != 60:
            break
        assert await wide.take(SCOPE, probe=True) is True
        await wide.accepted(SCOPE, probe=True)
    proven = wide.per_minute(SCOPE)
    assert wide.proven_per_minute(SCOPE) == proven > raised
    await wide.pause(SCOPE, 0.01)  # a 429 within the trial, after the proof: no burst explains those calls
    assert wide.per_minute(SCOPE) == pytest.approx(proven * DECREASE)
    assert not wide.may_probe(SCOPE)  # below the refused rate for a while


async def test_probing_edits_decide_one_at_a_time_and_stop_once_the_room_is_proven() -> None:
    # Replies alone in their channels edit at the platform floor while their edits probe past the workspace budget.
    # An edit that decided to probe while another's probe was out waited for that answer, then went even when the
    # answer had proven the room: a call of its channel's spent for nothing, where a stream was about to move in.
    # It decides again after the answer instead, and once the room is proven it waits for its share.
    now, wall = [0.0], [1_000.0]  # the workspace budget's clocks stand still: no token comes back by itself
    wide = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="chat.update", start_per_minute=60, burst=2,
                         clock=lambda: now[0], wall=lambda: wall[0])  # fmt: skip
    narrow = InMemoryBudget(per_minute=600, burst=10)
    pacer = WorkspaceEditPacer(wide, channel_budget=narrow, sharing=lambda ref, per_channel: 1 if per_channel else 8)
    workspace = "slack:T1"
    refs = [at(f"C{i}", f"{i}.1") for i in range(8)]
    for ref in refs[:2]:  # the documented burst: ordinary calls
        await pacer.wait_turn(ref, final=False)
        await pacer.accepted(ref)
    for ref in refs[2:6]:  # probes, one after another's answer: the last of them proves the room
        await pacer.wait_turn(ref, final=False)
        if ref is not refs[5]:
            await pacer.accepted(ref)
    assert wide.per_minute(workspace) > 60 and not wide.room_proven(workspace)
    deciding = asyncio.ensure_future(pacer.wait_turn(refs[6], final=False))  # while refs[5]'s probe is out
    await asyncio.sleep(0.1)
    assert not deciding.done()
    await pacer.accepted(refs[5])
    assert wide.room_proven(workspace)
    await asyncio.sleep(0.3)
    assert not deciding.done()  # no probe needed any more: its share of the workspace budget is seconds away
    deciding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await deciding


async def test_calls_past_the_documented_budget_go_one_at_a_time_until_a_trial_rate_is_proven() -> None:
    # A workspace-wide Slack burst larger than ours accepts the probes that raise the rate; the raised rate's tokens
    # then let several calls out together and each was refused (slack_load bench, a burst of 10: 2 429s in half the
    # runs). Until the rate is proven, a call the documented budget would not have allowed goes like a probe.
    wide, now, wall = await raised_by_probes()
    assert wide.per_minute(SCOPE) == 60 * PROBE_RAISE and wide.proven_per_minute(SCOPE) == 60
    now[0] += 1.0  # the raised rate's bucket holds 2 tokens again, the documented one 1
    assert await wide.take(SCOPE, probe=True) is False  # within the documented budget: an ordinary call
    await wide.accepted(SCOPE)
    assert await wide.take(SCOPE, probe=True) is True  # past it: out as a probe, with a token of the raised rate
    waiting = asyncio.ensure_future(wide.take(SCOPE, probe=True))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the next waits for that answer, though the raised rate had a token for it too
    await wide.pause(SCOPE, 0.01, probe=True)  # refused: a burst took the probes
    assert wide.per_minute(SCOPE) == 60 and not wide.may_probe(SCOPE)
    now[0] += 2.0
    assert await asyncio.wait_for(waiting, timeout=5.0) is False  # then an ordinary call at the documented rate


async def test_the_evidence_for_a_trial_rate_is_the_current_round_of_probings_not_older_calls() -> None:
    # Calls Slack took beyond the documented budget long before (a rate raised since by additive increase) say
    # nothing about whether this round's probes met a larger burst: counted, they proved a new trial at once.
    now = [0.0]
    wide = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="chat.update", start_per_minute=60, burst=2,
                         clock=lambda: now[0])  # fmt: skip
    assert await wide.take(SCOPE) is False
    for _ in range(20):  # accepted long ago, beyond the documented bucket (the clock stands still)
        await wide.accepted(SCOPE)
    now[0] += 2.0  # the bucket refills; then a round of probes
    assert [await wide.take(SCOPE, probe=True) for _ in range(2)] == [False, False]
    for _ in range(PROBE_EVIDENCE):
        assert await wide.take(SCOPE, probe=True) is True
        await wide.accepted(SCOPE, probe=True)
    assert wide.per_minute(SCOPE) > 60 and wide.proven_per_minute(SCOPE) == 60  # on trial, not proven by the past


async def test_429s_within_one_retry_after_cut_the_rate_once() -> None:
    # Calls sent together meet their 429s together: one moment of congestion, one cut (three replies starting at once
    # cut chat.startStream's rate to a third).
    now = [0.0]
    budget = LearnedBudget(MemoryBudgets(clock=lambda: now[0]), name="chat.startStream", start_per_minute=100,
                           burst=20, clock=lambda: now[0])  # fmt: skip
    for _ in range(3):
        await budget.pause(SCOPE, 1.0)
    assert budget.per_minute(SCOPE) == pytest.approx(100 * DECREASE)
    now[0] += 1.5
    await budget.pause(SCOPE, 1.0)  # after the Retry-After: another moment, another cut
    assert budget.per_minute(SCOPE) == pytest.approx(100 * DECREASE**2)


async def test_a_reply_does_not_wait_for_chat_start_stream_it_is_posted_as_a_message() -> None:
    # With chat.startStream's budget spent, or its call answered 429, the reply's first words go out at once as a
    # message (edited with chat.update) instead of waiting for a start (a fake whose stream burst was 10: the last
    # of 20 replies starting together showed its first words 14 s after the model's first token).
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        streams = StreamBudgets(*(InMemoryBudget(per_minute=1, burst=b) for b in (2, 20, 20)))
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True, stream_budgets=streams)
        channel = ChannelRef("slack", TEAM, "C1")

        async def first_kind() -> str:
            ref = await platform.post(channel, "first words", thread_id=slack.seed_message("C1", "help?").ts)
            versions = slack.versions("C1", ref.message_id)
            assert versions[0].text.startswith("first words")
            return versions[0].kind

        assert await first_kind() == "stream_start"
        slack.inject("chat.startStream", Fault.rate_limited(retry_after=30.0))
        assert await asyncio.wait_for(first_kind(), timeout=5.0) == "post"  # refused: posted, not retried later
        assert await asyncio.wait_for(first_kind(), timeout=5.0) == "post"  # paused for the Retry-After: no wait


async def test_a_placeholder_with_a_status_line_is_posted_where_it_shows_not_as_an_empty_stream() -> None:
    # The restricted tier's read takes a minute: its status line must be seen, and a stream shows model text only.
    async with FakeSlack() as slack:
        slack.add_channel("C1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        platform = SlackPlatform(client, team_id=TEAM, native_streaming=True)
        channel = ChannelRef("slack", TEAM, "C1")
        status = f"{DEFAULT_PLACEHOLDER}\n\nReading the thread… 15 of 30 messages so far, about 1 min to go"
        for text, kind in ((DEFAULT_PLACEHOLDER, "stream_start"), (status, "post")):
            ref = await platform.post(channel, text, thread_id=slack.seed_message("C1", "help?").ts, body="")
            first = slack.versions("C1", ref.message_id)[0]
            assert first.kind == kind
            assert "Reading the thread" in first.text if kind == "post" else first.text == ""


async def test_a_refused_probe_is_remembered_for_hours_not_minutes() -> None:
    wall = [1_000.0]
    wide = LearnedBudget(MemoryBudgets(), name="chat.update", start_per_minute=60, burst=1, wall=lambda: wall[0])
    assert await wide.take(SCOPE, probe=True) is False
    assert await wide.take(SCOPE, probe=True) is True
    await wide.pause(SCOPE, 0.01, probe=True)  # the limit is the workspace's
    wall[0] += 2 * CEILING_TTL_S  # longer than an ordinary 429's ceiling lasts
    assert not wide.may_probe(SCOPE)  # a busy workspace does not pay that 429 again at every busy moment
    wall[0] += PROBE_REFUSED_TTL_S
    assert wide.may_probe(SCOPE)  # then it is asked again (a plan or limit may have changed)


async def start_together(slack: FakeSlack, platform: SlackPlatform, n: int) -> list[str]:
    """``n`` replies in channel C1 posting their first words at once; the kind of each one's first version."""
    channel = ChannelRef("slack", TEAM, "C1")
    roots = [slack.seed_message("C1", f"help {k}?").ts for k in range(n)]
    refs = await asyncio.gather(*(platform.post(channel, "first words", thread_id=root) for root in roots))
    return [slack.versions("C1", ref.message_id)[0].kind for ref in refs]


@pytest.mark.parametrize(("slack_burst", "streams", "refused"), [(20, 8, 0), (3, 3, 1)])
async def test_stream_starts_past_the_documented_tier_2_go_one_at_a_time_as_probes(
    slack_burst: int, streams: int, refused: int
) -> None:
    """chat.startStream is Tier 2 on its reference page (20/min): the bot starts there, and replies starting
    together past its burst of 3 probe one at a time. Where Slack takes more (a Tier 4 burst), every reply streams;
    where it holds to Tier 2, the one refused probe settles it and the rest are posted as messages at once — not a
    429 for every reply past the burst (the slack_load bench met a 429 storm at the appends' budget)."""
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        slack.set_rate("chat.startStream", Rate(per_minute=20, burst=slack_burst))
        platform = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM,
                                 native_streaming=True)  # fmt: skip
        platform._paths.stream_here = lambda channel: _true()  # type: ignore[method-assign]  # streams only here
        kinds = await asyncio.wait_for(start_together(slack, platform, 8), timeout=5.0)
        assert kinds.count("stream_start") == streams
        assert kinds.count("post") == 8 - streams
        assert slack.count_429("chat.startStream") == refused


async def _true() -> bool:
    return True


async def test_a_final_with_no_stop_to_spare_goes_with_an_append_and_the_stop_follows() -> None:
    """chat.stopStream is Tier 2 too: where replies end together past its budget, the last words go with an
    append (Tier 4) at once and the stop follows when the budget allows — a final never waits for other stops."""
    async with FakeSlack() as slack:
        slack.add_channel("C1")
        streams = StreamBudgets(*(InMemoryBudget(per_minute=p, burst=b) for p, b in ((60, 20), (60, 20), (60, 1))))
        platform = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM,
                                 native_streaming=True, stream_budgets=streams)  # fmt: skip
        platform._paths.stream_here = lambda channel: _true()  # type: ignore[method-assign]
        channel = ChannelRef("slack", TEAM, "C1")
        refs = [await platform.post(channel, "first words", thread_id=slack.seed_message("C1", "help?").ts)
                for _ in range(2)]  # fmt: skip
        started = asyncio.get_running_loop().time()
        for ref in refs:  # both finals at once: one stop in the budget (a second one a second later)
            await platform.pacer.wait_turn(ref, final=True)
            await platform.edit(ref, "first words and the end", final=True)
        assert asyncio.get_running_loop().time() - started < 0.5  # neither final waited for a stop
        kinds = [[v.kind for v in slack.versions("C1", ref.message_id)] for ref in refs]
        assert kinds[0] == ["stream_start", "stream_stop"]
        assert kinds[1] == ["stream_start", "stream_append"]  # the last words on screen; its stop not yet sent
        assert slack.versions("C1", refs[1].message_id)[-1].text == "first words and the end"
        await asyncio.wait_for(platform.settle(), timeout=5.0)
        assert [v.kind for v in slack.versions("C1", refs[1].message_id)][-1] == "stream_stop"
        assert slack.message("C1", refs[1].message_id).text == "first words and the end"


async def test_a_stream_with_no_stop_to_spare_stays_a_stream_rather_than_wait_to_move() -> None:
    async with FakeSlack() as slack:
        slack.add_channel("C1")
        streams = StreamBudgets(*(InMemoryBudget(per_minute=p, burst=b) for p, b in ((60, 20), (60, 20), (1, 1))))
        wide, narrow = (InMemoryBudget(per_minute=1200, burst=4) for _ in range(2))  # far more room on chat.update
        platform = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM,
                                 native_streaming=True, stream_budgets=streams, edit_budget=wide,
                                 channel_edit_budget=narrow)  # fmt: skip
        platform._paths.stream_here = lambda channel: _true()  # type: ignore[method-assign]
        channel = ChannelRef("slack", TEAM, "C1")
        refs = [await platform.post(channel, "first words", thread_id=slack.seed_message("C1", "help?").ts)
                for _ in range(2)]  # fmt: skip
        for ref in refs:  # both would move; the stop budget has one stop (and the next in a minute)
            assert platform._paths.leaves_stream(ref)
            await asyncio.wait_for(platform.pacer.wait_turn(ref, final=False), timeout=2.0)
            await platform.edit(ref, "first words and more", final=False)
        kinds = [[v.kind for v in slack.versions("C1", ref.message_id)] for ref in refs]
        assert kinds == [["stream_start", "stream_stop"], ["stream_start", "stream_append"]]
        assert platform._streams.is_streaming(refs[1])  # still a stream: it may move at a later turn
