"""bot/seen.py: the one decision of which messages of a thread the bot has already seen, and its two users (the
summarizer's gap fill from the platform; Slack's paging is covered end to end in tests/test_slack_adapter.py,
test_fetch_thread_pages_only_what_the_log_lacks_and_reports_progress)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from bot.seen import SeenThread, message_id
from bot.stores import open_store
from bot.stores.base import Store
from bot.summarize import ThreadSummarizer
from bot.types import ChannelRef, ChatMessage, Mention, MessageRef
from tests.fakes.chat import FakeChatPlatform

CHANNEL = ChannelRef("slack", "T1", "C1")
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def said(message: str, minute: int, *, thread: str | None = "1.0", text: str = "") -> ChatMessage:
    return ChatMessage(MessageRef(CHANNEL, message, thread), "U1", "Ada", text or f"message {message}",
                       START + timedelta(minutes=minute))  # fmt: skip


def test_what_the_log_holds_is_what_was_seen_and_older_than_its_oldest_reply_was_missed() -> None:
    # Ids that sort differently as text and as time ("10.0" < "9.0" as strings): the order is the time's.
    logged = [said("9.0", 9), said("10.0", 10), said("12.0", 12)]
    seen = SeenThread.of("1.0", logged)
    assert seen.ids == {"9.0", "10.0", "12.0"}
    assert seen.missed_before == "9.0"
    assert not seen.saw_start


def test_the_start_is_not_a_reply() -> None:
    seen = SeenThread.of("1.0", [said("1.0", 1), said("5.0", 5)])
    assert seen.saw_start and seen.missed_before == "5.0"
    alone = SeenThread.of("1.0", [said("1.0", 1)])
    assert alone.saw_start and alone.missed_before is None  # nothing to page before: only the start was seen


def test_an_empty_log_saw_nothing() -> None:
    for seen in (SeenThread.of("1.0", []), SeenThread("1.0")):
        assert not seen.saw_start and seen.missed_before is None
        assert seen.unseen(["a", "b"], str) == ["a", "b"]


def test_unseen_keeps_what_the_log_lacks_once_in_the_order_given() -> None:
    seen = SeenThread.of("1.0", [said("3.0", 3), said("4.0", 4)])
    fetched = [said("1.0", 1), said("2.0", 2), said("3.0", 3), said("2.0", 2, text="a page overlapped")]
    assert [m.ref.message_id for m in seen.unseen(fetched, message_id)] == ["1.0", "2.0"]
    assert seen.unseen(fetched, message_id)[1].text == "message 2.0"  # the first copy of an id wins
    # Any item with an id: a platform filters its raw messages before translating them (no lookups for seen ones).
    assert seen.unseen([{"ts": "4.0"}, {"ts": "5.0"}], lambda raw: raw["ts"]) == [{"ts": "5.0"}]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(redis_url=None, sqlite_path=str(tmp_path / "seen.db"))
    try:
        yield store
    finally:
        await store.close()


def summarizer(store: Store) -> ThreadSummarizer:
    return ThreadSummarizer(llm=cast(Any, None), store=store)  # gather() reads, it never calls a model


async def test_a_thread_whose_start_was_missed_is_filled_from_the_platform_without_duplicates(store: Store) -> None:
    thread = [said("1.0", 1, thread=None), *(said(f"{i}.0", i) for i in range(2, 7))]
    for m in thread[3:]:  # the bot joined late: it recorded the last three replies
        await store.messages.add(m)
    chat = FakeChatPlatform()
    chat.seed(*thread)
    mention = Mention(said("7.0", 7, text="<@bot> summary?"))

    messages, scope = await summarizer(store).gather(mention, chat)

    assert scope == "thread" and [m.ref.message_id for m in messages] == ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0"]
    assert len([c for c in chat.calls if c.kind == "fetch"]) == 1
    stored = await store.messages.thread(CHANNEL, "1.0")
    assert sorted(m.ref.message_id for m in stored) == ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0"]  # each once


async def test_a_thread_the_bot_saw_start_is_read_from_the_log_alone(store: Store) -> None:
    for m in (said("1.0", 1, thread=None), said("2.0", 2)):
        await store.messages.add(m)
    chat = FakeChatPlatform()
    messages, _ = await summarizer(store).gather(Mention(said("3.0", 3)), chat)
    assert [m.ref.message_id for m in messages] == ["1.0", "2.0"]
    assert [c for c in chat.calls if c.kind == "fetch"] == []
