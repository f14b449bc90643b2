"""Platform faults through the real Slack adapter (slack-bolt over signed HTTP, slack_sdk against the fake Slack,
the OpenAI SDK against the fake model): every reply ends complete or with a clear note, no visible message keeps
the writing marker, and every model call has its ledger record.

Already covered in tests/test_slack_adapter.py and not repeated: forged/stale signatures, retried deliveries,
the translation of one 429 / msg_too_long / not_in_channel into the core's exceptions, and a native stream that
is refused on its first append (test_expired_stream_falls_back_to_chat_update). Here the stream expires the way
Slack expires it, by idling in the middle of a reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.commands import NOT_IN_CHANNEL
from adapters.slack.render import escape, to_mrkdwn
from bot.live_reply import WRITING_MARKER
from tests.fakes import slack_payloads as payloads
from tests.fakes.llm_server import Fault as LLMFault
from tests.fakes.slack_records import Fault
from tests.test_slack_adapter import MODEL_TEXT, Harness, _harness, deliver_thread

POLL_S = 0.005
POLLS = 4000  # 20 s at most: a bound on waiting for the reply to start, not an assertion about speed


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(tmp_path):
        yield harness


@pytest.fixture
async def hs(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(tmp_path, streaming=True):
        yield harness


async def mention(h: Harness, root: str) -> None:
    result = await h.event(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> summarize", thread_ts=root))
    assert result.status == 200


async def ledger_matches_requests(h: Harness) -> None:
    records = await h.app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    assert len(records) == len(h.llm.received) >= 1


def visible_with_marker(h: Harness) -> list[str]:
    return [m.text for m in h.slack.messages_in("C1") if WRITING_MARKER.strip() in m.text]


async def first_bot_message(h: Harness) -> Any:
    for _ in range(POLLS):
        if h.slack.bot_messages("C1"):
            return h.slack.bot_messages("C1")[0]
        await asyncio.sleep(POLL_S)
    pytest.fail("the reply never started")


def squeezed(text: str) -> str:
    return "".join(text.split())


async def test_a_429_storm_on_chat_update_slows_edits_and_the_final_text_lands(h: Harness) -> None:
    root = await deliver_thread(h, replies=4)
    h.slack.inject("chat.update", Fault.rate_limited(retry_after=0.02), times=12)
    await mention(h, root)
    await h.adapter.idle()
    (reply,) = h.bot_replies()
    assert reply.text == to_mrkdwn(MODEL_TEXT)
    assert h.slack.count_429("chat.update") >= 12
    assert visible_with_marker(h) == []
    await ledger_matches_requests(h)


async def test_msg_too_long_on_an_update_continues_in_parts_with_the_whole_text(h: Harness) -> None:
    root = await deliver_thread(h, replies=4)
    h.slack.max_text_chars = 300  # Slack's own refusal, from the fake, once the reply grows past it
    await mention(h, root)
    await h.adapter.idle()
    parts = h.bot_replies()
    assert len(parts) >= 3 and all(p.thread_ts == root for p in parts)
    assert "msg_too_long" in {c.error for c in h.slack.calls_to("chat.update")}
    assert all(len(p.text) <= 300 for p in parts)
    assert squeezed("".join(p.text for p in parts)) == squeezed(to_mrkdwn(MODEL_TEXT))
    assert visible_with_marker(h) == []
    await ledger_matches_requests(h)


async def test_a_placeholder_deleted_mid_reply_is_replaced_and_the_reply_finishes(h: Harness) -> None:
    root = await deliver_thread(h, replies=4)
    h.slack.inject("chat.update", Fault.delete_target())  # someone deletes the message as the first edit arrives
    await mention(h, root)
    await h.adapter.idle()
    (reply,) = h.bot_replies()
    assert reply.text == to_mrkdwn(MODEL_TEXT) and reply.thread_ts == root
    deleted = [m for m in h.slack.messages_in("C1", include_deleted=True) if m.deleted]
    assert len(deleted) == 1 and deleted[0].bot_id is not None
    assert visible_with_marker(h) == []
    await ledger_matches_requests(h)


async def test_removed_from_the_channel_mid_reply_ends_without_hanging_and_keeps_the_record(h: Harness) -> None:
    root = await deliver_thread(h, replies=4)
    h.llm.tokens_per_s = 40  # a reply long enough to be removed in the middle of
    await mention(h, root)
    placeholder = await first_bot_message(h)
    h.slack.channels["C1"].is_member = False
    await h.adapter.idle()  # returns: the reply gave up instead of retrying forever
    refused = [c for c in h.slack.calls_to("chat.update") + h.slack.calls_to("chat.postMessage")
               if c.error == "not_in_channel"]  # fmt: skip
    assert refused
    # The note to the asker was attempted with a clear text; Slack refuses ephemerals too once the bot is out.
    (note,) = h.slack.calls_to("chat.postEphemeral")
    assert note.params["text"] == escape(NOT_IN_CHANNEL) and note.params["user"] == "U1"
    # The message already posted can no longer be edited by the bot: it keeps what it showed when the bot left.
    assert h.slack.bot_messages("C1") == [placeholder]
    await ledger_matches_requests(h)


@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found"])
async def test_refused_before_the_reply_starts_tells_the_asker_privately(h: Harness, error: str) -> None:
    root = await deliver_thread(h, replies=4)
    h.slack.inject("chat.postMessage", Fault.api_error(error), times=3)
    await mention(h, root)
    await h.adapter.idle()
    assert h.bot_replies() == []
    (note,) = h.slack.ephemerals
    assert note.user == "U1" and "Invite me" in note.text
    assert visible_with_marker(h) == []
    records = await h.app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    assert len(records) == len(h.llm.received)  # whether or not the model was asked, nothing goes unrecorded


async def test_a_native_stream_that_expires_while_idle_falls_back_to_chat_update(hs: Harness) -> None:
    root = await deliver_thread(hs, replies=4)
    # Longer than the edit interval (appends keep the stream alive), shorter than the model's pause.
    hs.slack.stream_idle_timeout = 0.6
    hs.llm.enqueue_fault(LLMFault.stall(1.5, after_pieces=40))
    await mention(hs, root)
    await hs.adapter.idle()
    (reply,) = hs.bot_replies()
    kinds = [v.kind for v in reply.versions]
    assert kinds[0] == "stream_start" and "stream_append" in kinds and kinds[-1] == "update"
    assert "message_not_in_streaming_state" in {c.error for c in hs.slack.calls}
    assert reply.text == to_mrkdwn(MODEL_TEXT)
    assert visible_with_marker(hs) == []
    await ledger_matches_requests(hs)
