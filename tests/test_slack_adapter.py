"""The Slack adapter end to end: the real slack-bolt AsyncApp over real HTTP with signed requests, the real
AsyncWebClient against the fake Slack, and the real OpenAI SDK against the fake model server.

The fake Slack runs with time_scale=0.001 (a "minute" lasts 60 ms) and the adapter's budgets are scaled the same
way, so the restricted history tier (1 call per minute, 15 per page) is exercised without waiting minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buckets import InMemoryBudget, StoreBudget, StreamBudgets, workspace_of
from adapters.slack.events import read_message
from adapters.slack.intake import SlackAdapter
from adapters.slack.pacing import (
    FIRST_SHARE_MAX,
    FIRST_SHARE_MIN,
    SHARE_HORIZON_S,
    SHARE_USE,
    WorkspaceEditPacer,
)
from adapters.slack.people import readable
from adapters.slack.platform import SlackPlatform
from adapters.slack.render import spend_blocks, text_blocks, to_mrkdwn
from bot.app import App, build_app
from bot.live_reply import DEFAULT_PLACEHOLDER
from bot.safety import has_mass_mention
from bot.settings import Settings
from bot.stores import ResilientStore, Store
from bot.stores.redis import UNREACHABLE, RedisStore
from bot.types import ChannelRef, MessageGone, MessageRef, MessageTooLong, PlatformRateLimited
from tests.fakes import slack_payloads as payloads
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_records import Fault
from tests.fakes.slack_signing import SlackDelivery
from tests.redis_server import RedisServer

SECRET = "test-signing-secret"
TIME_SCALE = 0.001  # the fake's minute is 60 ms ...
PER_MINUTE = 1 / TIME_SCALE  # ... so "N per minute" for our budgets becomes N * 1000
TEAM = "T0FAKE"

MODEL_TEXT = (
    "## Summary\n"
    "The team chased a **login bug** in the *mobile* app; see [the runbook](https://example.com/run?a=1&b=2).\n\n"
    "- Ada found the cause: a stale token & a race.\n"
    "- Grace will ship the fix, then notify <!channel> and @here.\n\n"
    "Still open: whether `x < y` holds for <!subteam^S123|@oncall>. "
    + " ".join(f"word{i}" for i in range(90))
    + "."
)


def responder(request: ReceivedRequest) -> FakeReply:
    if request.structured:
        return default_responder(request)
    return FakeReply(MODEL_TEXT)


@dataclass
class Harness:
    slack: FakeSlack
    llm: FakeLLMServer
    app: App
    adapter: SlackAdapter
    delivery: SlackDelivery

    async def event(self, event: dict[str, Any], **kwargs: Any) -> Any:
        return await self.delivery.send_event(payloads.event_callback(event), **kwargs)

    def bot_replies(self, channel: str = "C1") -> list[Any]:
        return self.slack.bot_messages(channel)


async def _harness(tmp_path: Path, *, streaming: bool = False, store: Store | None = None) -> AsyncIterator[Harness]:
    async with (
        FakeSlack(time_scale=TIME_SCALE, fractional_retry_after=True, restricted_history=True) as slack,
        FakeLLMServer(responder=responder, tokens_per_s=60) as llm,  # ~2 s of streaming: several paced edits
    ):
        slack.add_channel("C1", name="support")
        slack.add_user("U1", name="ada", display_name="Ada L.")
        slack.add_user("U2", name="grace", display_name="Grace H.")
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=llm.openai_base_url,
            slack_bot_token=SecretStr(slack.bot_token),
            slack_signing_secret=SecretStr(SECRET),
            slack_api_url=slack.api_url,
            slack_native_streaming=streaming,
            db=str(tmp_path / "bot.db"),
            admins=["UADMIN"],
        )
        app = await build_app(settings, store=store)
        adapter = SlackAdapter(
            app,
            history_per_minute=50 * PER_MINUTE,  # Tier 3, scaled, until the restricted tier shows ...
            restricted_history_per_minute=0.5 * PER_MINUTE,  # ... then under its 1 per "minute", with room for jitter
            edits_per_minute=45 * PER_MINUTE / 100,  # slower than the fake allows: edits stay visible
            stream_calls_per_minute=45 * PER_MINUTE / 100,
        )
        runner = await adapter.serve_http(host="127.0.0.1", port=0)
        port = runner.addresses[0][1]
        try:
            async with SlackDelivery(f"http://127.0.0.1:{port}/slack/events", SECRET) as delivery:
                yield Harness(slack, llm, app, adapter, delivery)
        finally:
            await adapter.close()
            await runner.cleanup()
            await app.close()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(tmp_path):
        yield harness


@pytest.fixture
async def hs(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(tmp_path, streaming=True):
        yield harness


def thread_text(i: int) -> str:
    return f"line {i:03d} about the widget rollout"


async def deliver_thread(h: Harness, *, replies: int) -> str:
    """A thread the bot sees as it happens: one `message` event per message. Returns the root ts."""
    root = payloads.new_ts()
    await h.event(payloads.message(channel="C1", user="U1", text=thread_text(0), ts=root))
    for i in range(1, replies + 1):
        user = "U1" if i % 2 else "U2"
        await h.event(payloads.message(channel="C1", user=user, text=thread_text(i), thread_ts=root))
    await h.adapter.idle()
    return root


def summary_request(h: Harness) -> ReceivedRequest:
    found = [r for r in h.llm.received if not r.structured]
    assert len(found) == 1, f"expected one summary call, got {len(found)}"
    return found[0]


def assert_transcript_complete(request: ReceivedRequest, count: int) -> None:
    prompt = "\n".join(str(m.get("content")) for m in request.messages)
    missing = [i for i in range(count) if thread_text(i) not in prompt]
    assert not missing, f"messages missing from the model's prompt: {missing[:10]}"


# ---- mentions --------------------------------------------------------------------------------------------------


async def test_mention_in_a_seen_200_message_thread_is_streamed_and_final(h: Harness) -> None:
    root = await deliver_thread(h, replies=199)
    assert len(await h.app.store.messages.thread(ChannelRef("slack", TEAM, "C1"), root)) == 200

    result = await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> summarize", thread_ts=root))
    assert result.status == 200
    await h.adapter.idle()

    assert_transcript_complete(summary_request(h), 200)
    assert h.slack.calls_to("conversations.replies") == []  # the log had everything
    (reply,) = h.bot_replies()
    assert reply.thread_ts == root
    updates = [v for v in reply.versions if v.kind == "update"]
    assert len(updates) >= 3, [v.text[:40] for v in reply.versions]
    assert reply.text == to_mrkdwn(MODEL_TEXT)
    assert "▍" not in reply.text


async def test_mention_in_an_unseen_thread_pages_the_history_it_lacks(h: Harness) -> None:
    parent = h.slack.seed_thread("C1", replies=199, user="U2", text="line {i:03d} about the widget rollout")
    await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> summary?", thread_ts=parent.ts))
    await h.adapter.idle()

    pages = h.slack.calls_to("conversations.replies")
    assert len(pages) == 14  # 200 messages, 15 per page on the restricted tier
    assert h.slack.count_429("conversations.replies") == 0  # paced, not retried
    assert_transcript_complete(summary_request(h), 200)
    (reply,) = h.bot_replies()
    assert reply.text == to_mrkdwn(MODEL_TEXT)
    # While the pages came in, the person waiting saw why (the core passed its status line to fetch_thread) ...
    reading = [v.text for v in reply.versions if v.kind == "update" and "Reading the thread" in v.text]
    assert reading and "messages so far" in reading[0]
    # ... and the line went away once the reading was over.
    assert not any("Reading the thread" in v.text for v in reply.versions if "word0" in v.text)


async def test_fetch_thread_pages_only_what_the_log_lacks_and_reports_progress(h: Harness) -> None:
    parent = h.slack.seed_thread("C1", replies=59, user="U2", text="line {i:03d} about the widget rollout")
    channel = ChannelRef("slack", TEAM, "C1")
    platform = h.adapter.platform(TEAM)
    thread = h.slack.thread("C1", parent.ts)
    for m in thread[30:]:  # the bot joined half-way: it saw the last 30 messages
        event = payloads.message(channel="C1", user="U2", text=m.text, ts=m.ts, thread_ts=parent.ts)
        seen = read_message(event)
        assert seen is not None
        await h.app.assistant.record(await platform.to_chat_message(channel, seen))

    said: list[str] = []
    fetched = await platform.fetch_thread(MessageRef(channel, thread[-1].ts, parent.ts), progress=said.append)

    assert [m.text for m in fetched] == [m.text for m in thread[:30]]
    assert {m.author_name for m in fetched} == {"Grace H."}  # users.info display name
    calls = h.slack.calls_to("conversations.replies")
    assert len(calls) == 2 and all(c.params.get("latest") == thread[30].ts for c in calls)
    assert said and "Reading the thread" in said[0]
    assert said[-1] == ""  # the status line is cleared once the reading is over


async def test_mention_during_a_redis_outage_reads_the_thread_from_slack(tmp_path: Path) -> None:
    redis = RedisServer().start()
    try:
        store = ResilientStore(await RedisStore(redis.url).open(), unreachable=UNREACHABLE)
        async for h in _harness(tmp_path, store=store):
            parent = h.slack.seed_thread("C1", replies=28, user="U2", text="line {i:03d} about the widget rollout")
            redis.stop()  # the message log (and everything else in Redis) is unreachable from here on
            await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=parent.ts))
            await h.adapter.idle()

            assert len(h.slack.calls_to("conversations.replies")) == 2  # the whole thread, 15 per page
            assert_transcript_complete(summary_request(h), 29)
            (reply,) = h.bot_replies()
            assert reply.text == to_mrkdwn(MODEL_TEXT)
    finally:
        redis.close()


async def test_malformed_events_are_ignored_or_refused_never_crash(h: Harness) -> None:
    root = await deliver_thread(h, replies=2)
    channel = ChannelRef("slack", TEAM, "C1")
    before = await h.app.store.messages.thread(channel, root)
    # Bolt itself cannot read these (it looks for ids in the body first); they are signed, so they are still
    # acknowledged (Slack disables an app whose deliveries keep failing) and nothing else happens.
    unreadable: list[dict[str, object]] = [
        {"type": "app_mention", "user": False},
        {"type": "app_mention", "channel": 1.5},
        {"type": "message", "channel": True, "user": "U1", "text": "hi", "ts": payloads.new_ts()},
    ]
    for event in unreadable:
        assert (await h.event(event)).status == 200
    # Bolt reads these; the adapter finds them malformed and ignores them (200: Slack must not retry them).
    malformed: list[dict[str, object]] = [
        {"type": "app_mention"},
        {"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> sum"},  # no ts
        {"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> sum", "ts": "9" * 40},
        {"type": "message", "channel": "C1", "user": ["U1"], "text": "hi", "ts": payloads.new_ts()},
        {"type": "message", "channel": "C1", "bot_id": {"id": "B1"}, "text": "hi", "ts": payloads.new_ts()},
        {"type": "message", "channel": "C1", "user": "U1", "subtype": {"x": 1}, "text": "hi", "ts": payloads.new_ts()},
        {"type": "message", "channel": "C1", "user": "U1", "text": 7, "ts": payloads.new_ts(), "thread_ts": root},
        {"type": "message", "channel": "C1", "subtype": "message_changed", "message": "gone"},
        {"type": "message", "channel": "C1", "subtype": "message_deleted", "deleted_ts": None},
    ]
    for event in malformed:
        assert (await h.event(event)).status == 200
    await h.adapter.idle()
    assert h.bot_replies() == [] and h.llm.received == []
    assert await h.app.store.messages.thread(channel, root) == before


async def test_retried_delivery_gives_exactly_one_reply(h: Harness) -> None:
    root = await deliver_thread(h, replies=3)
    body = payloads.event_callback(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    first, again = await asyncio.gather(h.delivery.send_event(body), h.delivery.send_event(body, retry_num=1))
    assert first.status == again.status == 200
    await h.delivery.send_event(body, retry_num=2)
    await h.adapter.idle()
    assert len(h.bot_replies()) == 1
    assert len([r for r in h.llm.received if not r.structured]) == 1


async def test_forged_and_stale_signatures_are_refused(h: Harness) -> None:
    body = payloads.event_callback(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> hi"))
    assert (await h.delivery.send_event(body, forged=True)).status == 401
    assert (await h.delivery.send_event(body, stale=True)).status == 401
    form = payloads.slash_command_form(
        command="/llmcost", text="", channel_id="C1", user_id="U1", response_url=h.slack.new_response_url(
            channel="C1", user="U1")
    )
    assert (await h.delivery.send_slash_command(form, forged=True)).status == 401
    await h.adapter.idle()
    assert h.bot_replies() == [] and h.llm.received == []


async def test_model_crowd_pings_never_reach_slack(h: Harness) -> None:
    root = await deliver_thread(h, replies=2)
    await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    await h.adapter.idle()
    (reply,) = h.bot_replies()
    for version in reply.versions:
        assert not has_mass_mention(version.text), version.text
        assert "<!" not in version.text
    assert "&lt;\u200b!channel&gt;" in reply.text and "@\u200bhere" in reply.text
    assert "<https://example.com/run?a=1&amp;b=2|the runbook>" in reply.text


# ---- native streaming ------------------------------------------------------------------------------------------


async def test_native_streaming_streams_and_stops(hs: Harness) -> None:
    root = await deliver_thread(hs, replies=5)
    await hs.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    await hs.adapter.idle()
    (reply,) = hs.bot_replies()
    kinds = [v.kind for v in reply.versions]
    assert kinds[0] == "stream_start" and kinds[-1] == "stream_stop"
    assert kinds.count("stream_append") >= 2 and "update" not in kinds
    start = hs.slack.calls_to("chat.startStream")[0].params
    assert start["recipient_user_id"] == "U1" and start["thread_ts"] == root
    assert reply.text == MODEL_TEXT.replace("<!", "<\u200b!").replace("@here", "@\u200bhere")
    assert not has_mass_mention(reply.text)


async def test_expired_stream_falls_back_to_chat_update(hs: Harness) -> None:
    root = await deliver_thread(hs, replies=5)
    hs.slack.stream_idle_timeout = 0.0  # Slack ends the stream before the first append: message_not_in_streaming_state
    await hs.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    await hs.adapter.idle()
    (reply,) = hs.bot_replies()
    kinds = [v.kind for v in reply.versions]
    assert kinds[0] == "stream_start" and kinds[-1] == "update"
    assert reply.text == to_mrkdwn(MODEL_TEXT)


async def test_a_reply_the_person_stops_is_left_as_it_is_and_its_model_call_cancelled(hs: Harness) -> None:
    root = await deliver_thread(hs, replies=5)
    hs.slack.inject("chat.appendStream", Fault.api_error("stopped_by_user"))  # Slack's stop button was pressed
    await hs.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    await hs.adapter.idle()
    (reply,) = hs.bot_replies()  # no replacement message, no error message
    assert [v.kind for v in reply.versions] == ["stream_start"]  # nothing written to it after the stop
    calls = [c.method for c in hs.slack.calls if c.method.startswith("chat.")]
    assert calls == ["chat.startStream", "chat.appendStream"]
    # The rest of the answer would only have cost: the model call was cancelled, and the ledger says so.
    records = await hs.app.store.ledger.records(since=datetime(2000, 1, 1, tzinfo=UTC))
    [summary] = [r for r in records if r.feature == "summary"]
    assert summary.error == "cancelled"


# ---- message events --------------------------------------------------------------------------------------------


async def test_message_events_edit_delete_and_ignore_bots(h: Harness) -> None:
    channel = ChannelRef("slack", TEAM, "C1")
    ts = payloads.new_ts()
    await h.event(payloads.message(channel="C1", user="U1", text="How do I <https://x.io|reset> it?", ts=ts))
    await h.event(payloads.bot_message(channel="C1", bot_id="BOTHER", text="deploy finished", user="UOTHER"))
    await h.event(payloads.bot_message(channel="C1", bot_id="BBOT", text="my own reply", user="UBOT"))
    await h.adapter.idle()
    recent = await h.app.store.messages.recent(channel, limit=10)
    assert [(m.author_name, m.text) for m in recent] == [("Ada L.", "How do I reset (https://x.io) it?")]

    await h.event(payloads.message_changed(channel="C1", user="U1", ts=ts, old_text="x", new_text="How now?"))
    await h.adapter.idle()
    assert [m.text for m in await h.app.store.messages.recent(channel, limit=10)] == ["How now?"]

    await h.event(payloads.message_deleted(channel="C1", user="U1", deleted_ts=ts, old_text="How now?"))
    await h.adapter.idle()
    assert await h.app.store.messages.recent(channel, limit=10) == []


# ---- slash commands and the shortcut ---------------------------------------------------------------------------


async def test_faq_is_acked_at_once_and_answered_in_channel(h: Harness) -> None:
    for text in ("How do I reset my password?", "How can I reset my password?", "Why is the export failing?"):
        await h.event(payloads.message(channel="C1", user="U1", text=text))
    await h.adapter.idle()
    form = payloads.slash_command_form(
        command="/faq", text="30", channel_id="C1", user_id="U1",
        response_url=h.slack.new_response_url(channel="C1", user="U1"),
    )
    result = await h.delivery.send_slash_command(form)
    assert result.status == 200 and result.ack_seconds < 3.0  # Slack's deadline
    await h.adapter.idle()
    (reply,) = h.bot_replies()
    assert reply.thread_ts is None
    assert reply.text.startswith("*FAQ*") and "▍" not in reply.text


async def test_llmcost_is_ephemeral_unless_shared(h: Harness) -> None:
    root = await deliver_thread(h, replies=2)
    await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum", thread_ts=root))
    await h.adapter.idle()
    for text, expected in (("7d", "ephemeral"), ("7d share", "in_channel")):
        form = payloads.slash_command_form(
            command="/llmcost", text=text, channel_id="C1", user_id="U1",
            response_url=h.slack.new_response_url(channel="C1", user="U1"),
        )
        result = await h.delivery.send_slash_command(form)
        assert result.status == 200 and result.ack_seconds < 3.0
        await h.adapter.idle()
        post = h.slack.response_url_posts[-1]
        assert post.response_type == expected
        blocks = post.payload["blocks"]
        assert blocks[0]["type"] == "header" and "LLM spend" in blocks[0]["text"]["text"]
        assert any(b.get("fields") for b in blocks)
        assert "By model" in str(blocks)
    assert [e.user for e in h.slack.ephemerals] == ["U1"]


async def test_llmcost_all_is_refused_to_non_admins(h: Harness) -> None:
    form = payloads.slash_command_form(
        command="/llmcost", text="all", channel_id="C1", user_id="U1",
        response_url=h.slack.new_response_url(channel="C1", user="U1"),
    )
    await h.delivery.send_slash_command(form)
    await h.adapter.idle()
    post = h.slack.response_url_posts[-1]
    assert post.response_type == "ephemeral" and "Only admins" in post.payload["text"]


async def test_summarize_thread_shortcut_replies_in_that_thread(h: Harness) -> None:
    root = await deliver_thread(h, replies=4)
    shortcut = payloads.message_shortcut(
        callback_id="summarize_thread", channel_id="C1", user_id="U2", message_ts=root, message_text=thread_text(0),
        response_url=h.slack.new_response_url(channel="C1", user="U2"),
    )
    result = await h.delivery.send_interactive(shortcut)
    assert result.status == 200
    await h.adapter.idle()
    (reply,) = h.bot_replies()
    assert reply.thread_ts == root and reply.text == to_mrkdwn(MODEL_TEXT)
    assert_transcript_complete(summary_request(h), 5)


async def test_healthz(h: Harness) -> None:
    url = h.delivery.app_url.replace("/slack/events", "/healthz")
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200 and (await response.json())["ok"] is True


# ---- the platform alone ----------------------------------------------------------------------------------------


@pytest.fixture
async def platform() -> AsyncIterator[tuple[FakeSlack, SlackPlatform]]:
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        yield slack, SlackPlatform(client, team_id=TEAM)


async def test_errors_become_the_cores_exceptions(platform: tuple[FakeSlack, SlackPlatform]) -> None:
    slack, p = platform
    channel = ChannelRef("slack", TEAM, "C1")
    ref = await p.post(channel, "hello")
    slack.inject("chat.update", Fault.rate_limited(retry_after=2.5))
    with pytest.raises(PlatformRateLimited) as limited:
        await p.edit(ref, "x", final=True)
    assert limited.value.retry_after_s == 2.5
    slack.inject("chat.update", Fault.api_error("msg_too_long"))
    with pytest.raises(MessageTooLong):
        await p.edit(ref, "x", final=True)
    for error in ("message_not_found", "channel_not_found", "not_in_channel", "is_archived"):
        slack.inject("chat.postMessage", Fault.api_error(error))
        with pytest.raises(MessageGone):
            await p.post(channel, "x")
    with pytest.raises(MessageTooLong):  # too long after conversion: refused before Slack sees it
        await p.post(channel, "&" * 900)


async def test_a_message_still_streaming_that_this_process_does_not_know_is_stopped_then_edited() -> None:
    # The janitor after a restart finalises a reply whose replica died mid-stream: chat.update on a message Slack still
    # streams is refused (streaming_state_conflict), so the stream is stopped first.
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        root = slack.seed_message("C1", "help?").ts
        channel = ChannelRef("slack", TEAM, "C1")
        dead = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM,
                             native_streaming=True)  # fmt: skip
        ref = await dead.post(channel, "Half a sum", thread_id=root)
        restarted = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM,
                                  native_streaming=True)  # fmt: skip
        await restarted.edit(ref, "Half a sum\n\n⚠️ Interrupted — mention me again.", final=True)
        versions = slack.versions("C1", ref.message_id)
        assert [v.kind for v in versions] == ["stream_start", "stream_stop", "update"]
        assert versions[-1].text == "Half a sum\n\n⚠️ Interrupted — mention me again."
        assert [c.status for c in slack.calls_to("chat.update")] == [200, 200]  # refused once, then edited


async def test_a_stream_shows_the_replys_own_text_never_its_placeholder_or_marker() -> None:
    async with FakeSlack(fractional_retry_after=True) as slack:
        slack.add_channel("C1")
        root = slack.seed_message("C1", "help?").ts
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        p = SlackPlatform(client, team_id=TEAM, native_streaming=True)
        channel = ChannelRef("slack", TEAM, "C1")
        # The placeholder: the platform is told it is no reply text yet (Slack shows its own "is writing" state).
        ref = await p.post(channel, DEFAULT_PLACEHOLDER, thread_id=root, body="")
        await p.edit(ref, "Hello ▍\n\nsorted 9 of 9", final=False, body="Hello")  # marker and status: not streamed
        await p.edit(ref, "Hello world", final=True)
        versions = slack.versions("C1", ref.message_id)
        assert [(v.kind, v.text) for v in versions] == [
            ("stream_start", ""),
            ("stream_append", "Hello"),
            ("stream_stop", "Hello world"),
        ]
        # A placeholder of the reply's own choosing (the FAQ's) says something a stream cannot show: a message.
        faq = await p.post(channel, "Writing an FAQ from the last 30 days of questions…", thread_id=root, body="")
        assert [v.kind for v in slack.versions("C1", faq.message_id)] == ["post"]


def test_limits_leave_room_for_markup() -> None:
    p = SlackPlatform(AsyncWebClient(token="x", base_url="http://127.0.0.1:9/"), team_id=TEAM)
    assert p.limits.markup == "slack_mrkdwn" and p.limits.max_message_chars < 4000
    assert isinstance(p.pacer, WorkspaceEditPacer)


# ---- rendering and pacing units ----------------------------------------------------------------------------


def test_markdown_becomes_mrkdwn() -> None:
    assert to_mrkdwn("**bold** and *also* and _it_ and ~~gone~~") == "*bold* and *also* and _it_ and ~gone~"
    assert to_mrkdwn("# Title\ntext") == "*Title*\ntext"
    assert to_mrkdwn("- a\n* b\n1. c") == "• a\n• b\n1. c"
    assert to_mrkdwn("[docs](https://d.io/x?a=1&b=2)") == "<https://d.io/x?a=1&amp;b=2|docs>"
    assert to_mrkdwn("```py\na < b **x**\n```\nafter **y**") == "```\na &lt; b **x**\n```\nafter *y*"
    assert to_mrkdwn("`<!here>` <@U1> <!everyone>") == "`&lt;\u200b!here&gt;` &lt;@U1&gt; &lt;\u200b!everyone&gt;"
    assert to_mrkdwn("half **bo") == "half **bo"  # a streamed prefix shows as typed until it closes


def test_readable_turns_slack_markup_into_plain_text() -> None:
    text = "<@U1> see <https://x.io|docs> in <#C1|general> &amp; <!here> &lt;3"
    assert readable(text, {"U1": "Ada"}) == "@Ada see docs (https://x.io) in #general & @here <3"


def test_text_blocks_respect_section_limit() -> None:
    blocks = text_blocks("line\n" * 2000)
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks) and len(blocks) >= 4


def test_spend_blocks_layout() -> None:
    from datetime import date
    from decimal import Decimal

    from bot.spend import Line, SpendReport

    report = SpendReport(
        period="7d", since=date(2026, 1, 1), scope="C1", total_usd=Decimal("1.5"), calls=3, cache_hits=1,
        by_model=[Line("gpt-4.1-mini", Decimal("1.5"), 3)], by_feature=[Line("summary", Decimal("1.5"), 3)],
        by_channel=[Line("C1", Decimal("1.5"), 3)],
        tokens={"input": 10, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0, "output": 5},
        prompt_cache_saved_usd=Decimal(0), response_cache_saved_usd=Decimal(0),
        daily=[(date(2026, 1, 1), Decimal("1")), (date(2026, 1, 2), Decimal("0.5"))],
        budget_usd=Decimal(10), month_spent_usd=Decimal("1.5"),
    )
    blocks = spend_blocks(report)
    assert [b["type"] for b in blocks[:3]] == ["header", "section", "section"]
    assert "$8.50 left" in str(blocks[1]) and "█" in str(blocks[2])
    assert "gpt-4.1-mini" in str(blocks) and "By channel" not in str(blocks)  # one channel: no breakdown


def at(team: str, channel: str, ts: str) -> MessageRef:
    """A message's ref, as LiveReply hands it to the pacer."""
    return MessageRef(ChannelRef("slack", team, channel), ts)


async def test_workspace_budget_is_shared_and_pauses_on_429() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    budget = InMemoryBudget(per_minute=60, burst=2, clock=lambda: now[0], sleep=sleep)
    pacer = WorkspaceEditPacer(budget)
    assert workspace_of(at("T1", "C1", "1.2").channel) == workspace_of(at("T1", "C9", "3.4").channel) == "slack:T1"
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)
    await pacer.wait_turn(at("T1", "C9", "3.4"), final=False)  # another channel, same workspace: same bucket
    await pacer.wait_turn(at("T2", "C1", "1.2"), final=False)  # another workspace: its own bucket
    assert slept == []
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)
    assert slept == [1.0]  # 60/min: one token per second
    await pacer.penalize(at("T1", "C1", "1.2"), 5.0)
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)
    assert sum(slept) >= 6.0  # the pause, then a refill from empty


class OneTokenPerSleep:
    """A RateBudgets whose bucket holds one token, refilled by each sleep of a caller (see the test below)."""

    def __init__(self) -> None:
        self.tokens = 0

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        if self.tokens:
            self.tokens -= 1
            return 0.0
        return 1.0

    async def pause(self, scope: str, seconds: float) -> None:
        self.tokens = 0


@pytest.mark.parametrize("kind", ["in_memory", "store"])
async def test_final_edits_go_ahead_of_progress_edits_in_the_workspace_line(kind: str) -> None:
    now = [0.0]
    refill = asyncio.Event()  # the budget is empty until the test lets time pass
    store_bucket = OneTokenPerSleep()

    async def sleep(seconds: float) -> None:
        await refill.wait()
        now[0] += seconds
        store_bucket.tokens = 1

    budget: InMemoryBudget | StoreBudget
    if kind == "in_memory":
        budget = InMemoryBudget(per_minute=60, burst=1, clock=lambda: now[0], sleep=sleep)
        await budget.take("slack:T1")  # spends the only token
    else:
        budget = StoreBudget(store_bucket, name="chat.update", per_minute=60, burst=1, sleep=sleep)
    pacer = WorkspaceEditPacer(budget)
    landed: list[str] = []

    async def edit(ref: MessageRef, *, final: bool) -> None:
        await pacer.wait_turn(ref, final=final)
        landed.append(ref.message_id)

    progress = [asyncio.create_task(edit(at("T1", f"C{i}", f"1.{i}"), final=False)) for i in (1, 2)]
    for _ in range(5):
        await asyncio.sleep(0)  # the first progress edit heads the line, waiting for a token; the second queues
    final = asyncio.create_task(edit(at("T1", "C3", "1.3"), final=True))
    for _ in range(5):
        await asyncio.sleep(0)
    refill.set()
    await asyncio.gather(final, *progress)
    assert landed == ["1.3", "1.1", "1.2"]


async def test_streamed_replies_draw_from_the_stream_methods_budgets() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def budget() -> InMemoryBudget:
        return InMemoryBudget(per_minute=60, burst=1, clock=lambda: now[0], sleep=sleep)

    streams = StreamBudgets(budget(), budget(), budget())
    pacer = WorkspaceEditPacer(budget(), streams=streams, is_stream=lambda ref: ref.message_id == "s")
    await pacer.wait_turn(at("T1", "C1", "u"), final=False)  # chat.update
    await pacer.wait_turn(at("T1", "C1", "s"), final=False)  # chat.appendStream: its own bucket, no wait behind the update
    await pacer.wait_turn(at("T1", "C2", "s"), final=True)  # chat.stopStream: its own bucket too
    assert slept == []
    await pacer.wait_turn(at("T1", "C3", "s"), final=False)
    assert slept == [1.0]


async def test_progress_edits_of_replies_sharing_a_budget_are_spaced_by_their_share() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = InMemoryBudget(per_minute=60, burst=10, clock=lambda: now[0], sleep=sleep)
    replies = [4]
    pacer = WorkspaceEditPacer(budget, sharing=lambda ref, per_channel: replies[0], clock=lambda: now[0], sleep=sleep)
    # Over the horizon the budget allows its burst of 10 plus 1 a second; each of 4 replies gets a quarter of that.
    share = SHARE_HORIZON_S * 4 / (SHARE_USE * (10 + SHARE_HORIZON_S))
    assert pacer.share_interval(at("T1", "C1", "1.1"), budget) == pytest.approx(share)
    await pacer.wait_turn(at("T1", "C1", "1.1"), final=True)  # a final is never spaced
    assert slept == []
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)  # a first progress edit: part of its share
    assert sum(slept) == pytest.approx(FIRST_SHARE_MIN * share)
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)  # tokens are left, yet the reply waits for its share
    assert sum(slept) == pytest.approx((1 + FIRST_SHARE_MIN) * share)
    # Replies starting together do not all spend the burst at one moment: the next one's first edit comes later.
    slept.clear()
    await pacer.wait_turn(at("T1", "C1", "1.3"), final=False)
    step = (FIRST_SHARE_MAX - FIRST_SHARE_MIN) / 3  # its place among 4 sharing replies: the second
    assert sum(slept) == pytest.approx((FIRST_SHARE_MIN + step) * share)
    slept.clear()
    replies[0] = 1  # a lone reply is paced by the budget alone
    await pacer.wait_turn(at("T1", "C1", "1.2"), final=False)
    assert slept == []


async def test_a_first_progress_edit_takes_its_place_among_the_replies_sharing_now() -> None:
    now = [0.0]
    slept: list[float] = []
    sharing = {"replies": 8, "place": 7}  # the last of 8 streams posted together

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if now[0] >= 1.0:  # a second in, those posted before it moved or finished: it is first
            sharing.update(replies=4, place=0)

    def budget() -> InMemoryBudget:
        return InMemoryBudget(per_minute=60, burst=10, clock=lambda: now[0], sleep=sleep)

    streams = StreamBudgets(budget(), budget(), budget())
    pacer = WorkspaceEditPacer(
        budget(), streams=streams, is_stream=lambda ref: True, sharing=lambda ref, per_channel: sharing["replies"],
        place=lambda ref, per_channel: sharing["place"], clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    ref = at("T1", "C1", "1.4")
    last = pacer.share_interval(ref, streams.append, final_elsewhere=True) * FIRST_SHARE_MAX
    assert last > 2.5  # where its place counted once would keep its first append waiting
    await pacer.wait_turn(ref, final=False)
    assert 1.0 <= sum(slept) < 1.5  # its place asked again a second in: first now, its share is due


# ---- Socket Mode -----------------------------------------------------------------------------------------------


async def test_socket_mode_mention_is_acked_and_answered(tmp_path: Path) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    async with FakeSlack() as slack, FakeLLMServer(responder=responder) as llm:
        slack.add_channel("C1")
        slack.add_user("U1", display_name="Ada L.")
        settings = Settings(
            openai_api_key=SecretStr("x"), openai_base_url=llm.openai_base_url,
            slack_bot_token=SecretStr(slack.bot_token), slack_app_token=SecretStr(slack.app_token),
            slack_api_url=slack.api_url, db=str(tmp_path / "bot.db"),
            slack_native_streaming=False,  # the reply as chat.update renders it (streams are tested above)
        )
        app = await build_app(settings)
        adapter = SlackAdapter(app)
        handler = AsyncSocketModeHandler(adapter.bolt, app_token=slack.app_token)
        await handler.connect_async()
        try:
            await slack.socket.wait_connected()
            root = payloads.new_ts()
            for i in range(3):
                body = payloads.event_callback(payloads.message(channel="C1", user="U1", text=thread_text(i),
                                                                ts=root if i == 0 else None,
                                                                thread_ts=None if i == 0 else root))
                await slack.wait_for_ack(await slack.push_events_api(body))
            mention = payloads.event_callback(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum",
                                                                   thread_ts=root))
            await slack.wait_for_ack(await slack.push_events_api(mention))
            # Socket Mode re-delivers too (retry_attempt): still one reply.
            await slack.wait_for_ack(await slack.push_events_api(mention, retry_attempt=1, retry_reason="timeout"))
            await adapter.idle()
            (reply,) = slack.bot_messages("C1")
            assert reply.thread_ts == root and reply.text == to_mrkdwn(MODEL_TEXT)
        finally:
            await handler.close_async()
            await adapter.close()
            await app.close()


# ---- the bench's arithmetic ------------------------------------------------------------------------------------


def test_bench_figures_staleness_and_lost_pieces() -> None:
    from tests.bench.stream_common import ReplyTrace, aggregate, figures

    trace = ReplyTrace(
        event_at=0.0, model_text="aa bb cc", piece_ends=[2, 5, 8], piece_times=[1.0, 1.1, 1.2],
        versions=[(0.1, "…writing"), (1.5, "aa b"), (2.0, "aa bb")], edits=2, final_text="aa bb",
        first_version_at=0.1,
    )
    f = figures(trace)
    assert f.to_placeholder_s == 0.1 and f.to_first_text_s == 1.5 and f.first_text_after_first_token_s == 0.5
    assert [round(s, 3) for s in f.staleness_s] == [0.5, 0.9] and f.never_visible == 1 and not f.final_ok
    summary = aggregate([f], rate_limited=0, cpu_s=0.1, peak_rss_mb=50.0)
    assert summary["staleness_counting_lost_s"]["p95"] == "never" and summary["final_text_wrong_or_lost"] == 1


# ---- direct requests -------------------------------------------------------------------------------------------


def test_direct_requests_are_read_from_slack_wire_text() -> None:
    from adapters.slack.conversation import Ask, read_ask

    reply_link = "<https://acme.slack.com/archives/C0123ABC/p1700000000000100?thread_ts=1699999999.000200&cid=C0123ABC>"
    assert read_ask(f"summarize {reply_link}") == Ask("summarize", "C0123ABC", None, "1699999999.000200", "")
    root_link = "<https://acme.slack.com/archives/C0123ABC/p1700000000000100|that message>"
    assert read_ask(root_link) == Ask("summarize", "C0123ABC", None, "1700000000.000100", "")
    assert read_ask("Summarize this channel") == Ask("summarize")
    assert read_ask("<@UBOT> can you summarize support please?").channel_name == "support"
    assert read_ask("faq <#C1|support> 30") == Ask("faq", "C1", None, None, "30")
    assert read_ask("Build an FAQ") == Ask("faq")
    assert read_ask("What did we spend?") == Ask("cost")
    assert read_ask("cost #support 7d all") == Ask("cost", None, "support", None, "7d all")
    assert read_ask("hello there").kind == "help"
