"""The orphan janitor's errors: visible (with tracebacks), and never retried for ever (bot/orphans.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.orphans import INTERRUPTED_LINE, MAX_FINALISE_ATTEMPTS, LiveState, OrphanJanitor
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, MessageRef, MessageTooLong, PlatformLimits, PlatformRateLimited
from tests.fakes.chat import FakeChatPlatform

CHANNEL = ChannelRef("fake", "W1", "C1")
LIMITS = PlatformLimits(max_message_chars=200, min_edit_interval_s=0.0)


class NoPermission(Exception):
    """What an adapter raises for an error bot/ has no type for (Slack's missing_scope, a revoked token)."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore(str(tmp_path / "bot.db")).open()
    yield s
    await s.close()


async def interrupted_reply(store: SqliteStore, chat: FakeChatPlatform) -> MessageRef:
    """A reply whose replica died after showing some text: registered, silent, its message still there."""
    ref = await chat.post(CHANNEL, "Half a sum ▍", thread_id="t1")
    state = LiveState("fake", "W1", "C1", "t1", (ref.message_id,), "Half a sum")
    await store.live.heartbeat("r1", state.to_json())
    return ref


def janitor_for(store: SqliteStore, chat: FakeChatPlatform) -> OrphanJanitor:
    janitor = OrphanJanitor(store=store, after_s=0.0)
    janitor.serve("fake", lambda workspace: chat)
    return janitor


def edit_attempts(chat: FakeChatPlatform) -> int:
    return sum(1 for c in chat.calls if c.kind == "edit")


async def test_a_failure_that_keeps_coming_is_logged_with_its_traceback_then_given_up(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    chat = FakeChatPlatform(limits=LIMITS)
    ref = await interrupted_reply(store, chat)
    chat.fail_next("edit", NoPermission("missing_scope"), times=100)
    janitor = janitor_for(store, chat)
    with caplog.at_level(logging.INFO, logger="bot.orphans"):
        for _ in range(MAX_FINALISE_ATTEMPTS + 3):
            assert await janitor.sweep() == 0

    assert edit_attempts(chat) == MAX_FINALISE_ATTEMPTS  # then no more calls: the reply was given up
    assert await store.live.stale(older_than_s=0) == []  # and dropped from the registry
    records = [r for r in caplog.records if r.name == "bot.orphans"]
    assert len(records) == MAX_FINALISE_ATTEMPTS
    assert all(r.exc_info and r.exc_info[0] is NoPermission for r in records)  # every failure shows its traceback
    assert [r.levelno for r in records] == [logging.WARNING] * (MAX_FINALISE_ATTEMPTS - 1) + [logging.ERROR]
    assert "giving up" in records[-1].getMessage()
    assert chat.text(ref) == "Half a sum ▍"  # left as it was


async def test_attempts_add_up_across_replicas_sharing_a_store(store: SqliteStore, tmp_path: Path) -> None:
    other = await SqliteStore(str(tmp_path / "bot.db")).open()
    try:
        chat = FakeChatPlatform(limits=LIMITS)
        await interrupted_reply(store, chat)
        chat.fail_next("edit", NoPermission("token_revoked"), times=100)
        janitors = [janitor_for(store, chat), janitor_for(other, chat)]
        for i in range(MAX_FINALISE_ATTEMPTS + 2):
            await janitors[i % 2].sweep()
        assert edit_attempts(chat) == MAX_FINALISE_ATTEMPTS
    finally:
        await other.close()


async def test_a_transient_failure_is_retried_and_the_reply_finalised(store: SqliteStore) -> None:
    chat = FakeChatPlatform(limits=LIMITS)
    ref = await interrupted_reply(store, chat)
    chat.fail_next("edit", RuntimeError("discord: not connected yet"), times=MAX_FINALISE_ATTEMPTS - 1)
    janitor = janitor_for(store, chat)
    results = [await janitor.sweep() for _ in range(MAX_FINALISE_ATTEMPTS)]
    assert results == [0] * (MAX_FINALISE_ATTEMPTS - 1) + [1]
    assert chat.text(ref) == "Half a sum\n\n" + INTERRUPTED_LINE


async def test_rate_limits_do_not_count_as_failed_attempts(store: SqliteStore) -> None:
    chat = FakeChatPlatform(limits=LIMITS)
    ref = await interrupted_reply(store, chat)
    chat.fail_next("edit", PlatformRateLimited(0.0), times=MAX_FINALISE_ATTEMPTS + 2)
    janitor = janitor_for(store, chat)
    results = [await janitor.sweep() for _ in range(MAX_FINALISE_ATTEMPTS + 3)]
    assert results[-1] == 1 and sum(results) == 1
    assert chat.text(ref).endswith(INTERRUPTED_LINE)


async def test_a_text_refused_as_too_long_is_not_retried(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    chat = FakeChatPlatform(limits=LIMITS)
    await interrupted_reply(store, chat)
    chat.fail_next("edit", MessageTooLong("msg_too_long"), times=100)
    janitor = janitor_for(store, chat)
    with caplog.at_level(logging.INFO, logger="bot.orphans"):
        assert [await janitor.sweep() for _ in range(3)] == [0, 0, 0]
    assert edit_attempts(chat) == 1
    assert await store.live.stale(older_than_s=0) == []
    [record] = [r for r in caplog.records if r.name == "bot.orphans"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_a_deleted_message_needs_nothing_and_leaves_the_registry(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    chat = FakeChatPlatform(limits=LIMITS)
    ref = await interrupted_reply(store, chat)
    chat.delete(ref)
    janitor = janitor_for(store, chat)
    with caplog.at_level(logging.INFO, logger="bot.orphans"):
        assert await janitor.sweep() == 1
        assert await janitor.sweep() == 0
    assert edit_attempts(chat) == 1
    assert await store.live.stale(older_than_s=0) == []
    assert any("gone" in r.getMessage() for r in caplog.records if r.name == "bot.orphans")


async def test_the_janitors_edit_is_final_so_discord_lets_it_pass_progress_edits_held_in_the_channel(
    store: SqliteStore,
) -> None:
    from adapters.discord.pacing import ChannelEditPacer

    gate = asyncio.Event()  # no time passes for the pacer until the test says so

    async def sleep(seconds: float) -> None:
        await gate.wait()

    # Two replies stream in Discord channel 7 and the bucket has 2 edits left: both are kept for their finals, so a
    # progress edit is held (inside the channel's lane) until the window's last second.
    pacer = ChannelEditPacer(budget=lambda channel_id: (2, 5.0), clock=lambda: 0.0, sleep=sleep)
    pacer.note_post(7, 101)
    pacer.note_post(7, 102)
    channel = ChannelRef("discord", "1", "7")
    held = asyncio.create_task(pacer.wait_turn(MessageRef(channel, "101"), final=False))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not held.done()

    chat = FakeChatPlatform(limits=LIMITS)
    chat.pacer = pacer
    orphan = await chat.post(channel, "Half a sum ▍", thread_id="t1")
    state = LiveState("discord", "1", "7", "t1", (orphan.message_id,), "Half a sum")
    await store.live.heartbeat("r1", state.to_json())
    janitor = OrphanJanitor(store=store, after_s=0.0)
    janitor.serve("discord", lambda workspace: chat)
    try:
        async with asyncio.timeout(5):  # a progress edit would queue behind the held one: it never got through
            assert await janitor.sweep() == 1
        assert not held.done()  # the janitor went ahead; the progress edit still waits
        [edit] = chat.edits(orphan)
        assert edit.final and edit.text == "Half a sum\n\n" + INTERRUPTED_LINE
    finally:
        held.cancel()
        gate.set()
        await asyncio.gather(held, return_exceptions=True)
