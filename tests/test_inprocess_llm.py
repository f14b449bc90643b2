"""The mention use case of bot/ against an in-process provider (tests/fakes/inprocess_llm.py): no sockets, the
production router, the SQLite store and a recording chat platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import App
from bot.live_reply import FAILURE_PREFIX
from bot.settings import load_settings
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, Mention, MessageRef
from llm.provider import ErrorInfo
from llm.types import LedgerRecord, Outcome
from tests.fakes.chat import FakeChatPlatform
from tests.fakes.inprocess_llm import InProcessProvider, ProviderFailure, inprocess_app

CHANNEL = ChannelRef("fake", "W1", "C1")
ROOT = "100.0"
QUESTION = "Deploy fails with exit code 137 on the worker, any idea?"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore(str(tmp_path / "bot.db")).open()
    yield s
    await s.close()


@pytest.fixture
def provider() -> InProcessProvider:
    return InProcessProvider(default=None)  # every call must be one the test enqueued


@pytest.fixture
def app(tmp_path: Path, store: SqliteStore, provider: InProcessProvider) -> App:
    settings = load_settings(db=str(tmp_path / "bot.db"), redis_url=None, openai_api_key="sk-inprocess")
    return inprocess_app(settings, store, provider)


async def mention(app: App) -> Mention:
    """Ana asks in a thread; Bo mentions the bot in it."""
    now = datetime.now(UTC)
    root = ChatMessage(MessageRef(CHANNEL, ROOT), "U1", "Ana", QUESTION, now - timedelta(minutes=5))
    asked = ChatMessage(MessageRef(CHANNEL, "101.0", ROOT), "U2", "Bo", "@bot summarize", now)
    await app.assistant.record(root)
    await app.assistant.record(asked, mentions_bot=True)
    return Mention(asked)


async def ledger(app: App) -> list[LedgerRecord]:
    return await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


async def test_a_mention_streams_the_model_answer_into_the_thread_and_bills_the_asker(
    app: App, provider: InProcessProvider
) -> None:
    chat = FakeChatPlatform()
    provider.enqueue(["The worker ", "runs out ", "of memory."])
    outcome = await app.assistant.summarize(await mention(app), chat)
    assert outcome.ok
    assert chat.thread_texts(ROOT) == ["The worker runs out of memory."]
    [received] = provider.requests
    assert QUESTION in received.user_text and "Ana" in received.user_text
    [record] = await ledger(app)
    assert (record.outcome, record.feature, record.channel, record.user) == (Outcome.OK, "summary", "C1", "U2")
    assert record.usage.output > 0 and not record.usage.estimated


async def test_a_refused_call_ends_the_reply_with_the_reason_and_is_not_retried(
    app: App, provider: InProcessProvider
) -> None:
    chat = FakeChatPlatform()
    provider.enqueue([ProviderFailure.status(401)])
    outcome = await app.assistant.summarize(await mention(app), chat)
    assert not outcome.ok
    [text] = chat.thread_texts(ROOT)
    assert text.startswith(FAILURE_PREFIX) and "Mention me again" in text
    assert provider.calls == 1 and provider.pending == 0
    [record] = await ledger(app)
    assert record.outcome is Outcome.ERROR and record.usage.total_input == 0  # refused before the model ran


async def test_a_rate_limited_call_is_retried_and_the_answer_lands(app: App, provider: InProcessProvider) -> None:
    chat = FakeChatPlatform()
    provider.enqueue([ProviderFailure.status(429, retry_after_s=0.0)])
    provider.enqueue(["Retried and answered."])
    outcome = await app.assistant.summarize(await mention(app), chat)
    assert outcome.ok and chat.thread_texts(ROOT) == ["Retried and answered."]
    assert provider.calls == 2
    assert sorted(r.outcome for r in await ledger(app)) == sorted([Outcome.ERROR, Outcome.OK])


async def test_a_stream_that_breaks_keeps_what_arrived_and_says_it_stopped(
    app: App, provider: InProcessProvider
) -> None:
    chat = FakeChatPlatform()
    provider.enqueue(["The worker runs ", ProviderFailure(ErrorInfo("stream", True, message="connection reset"))])
    outcome = await app.assistant.summarize(await mention(app), chat)
    assert not outcome.ok
    [text] = chat.thread_texts(ROOT)
    assert text.startswith("The worker runs") and FAILURE_PREFIX in text
    assert provider.calls == 1  # text was already visible: a retry would repeat it
    [record] = await ledger(app)
    assert record.outcome is Outcome.INTERRUPTED and record.usage.estimated  # billed, from what arrived
