"""The intake every adapter hands its requests to: claims, declines, the catch-all reply, the neutral requests."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app import App, build_app
from bot.intake import SORRY, Claim, Intake
from bot.requestids import current_request
from bot.settings import Settings
from bot.types import ChannelRef, ChatMessage, MessageRef

CHANNEL = ChannelRef("console", "local", "general")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    built = await build_app(Settings(db=str(tmp_path / "intake.db"), admins=["root"]))
    try:
        yield built
    finally:
        await built.close()


def said(text: str) -> ChatMessage:
    return ChatMessage(MessageRef(CHANNEL, "m1"), "u1", "Ann", text, datetime.now(UTC))


async def test_a_claimed_request_runs_once_and_the_duplicate_is_reported(app: App) -> None:
    intake = Intake(app, platform="console")
    ran: list[str] = []
    duplicates: list[str] = []

    async def work(who: str) -> None:
        ran.append(who)

    claims = [Claim("console:e1", 60.0), Claim("console:asked:m1", 60.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a closed, never-started duplicate must not warn
        assert intake.take(work("first"), name="a", claims=claims, duplicate=lambda: duplicates.append("a"))
        await intake.idle()
        # The same message under a new event id (an edited mention): the second key stops it.
        retried = [Claim("console:e2", 60.0), Claim("console:asked:m1", 60.0)]
        assert intake.take(work("second"), name="b", claims=retried, duplicate=lambda: duplicates.append("b"))
        await intake.idle()
    assert ran == ["first"] and duplicates == ["b"]


async def test_after_a_drain_work_is_declined_not_started(app: App) -> None:
    intake = Intake(app, platform="console")
    ran: list[str] = []

    async def record(what: str) -> None:
        ran.append(what)

    assert await intake.drain(grace_s=1.0) == 0
    assert not intake.accepting
    assert not intake.take(record("work"), name="cmd", claims=[Claim("console:i1", 60.0)],
                           declined=lambda: record("declined"))  # fmt: skip
    assert not intake.take(record("event"), name="event")  # nothing to decline with: left alone
    await intake.idle()
    assert ran == ["declined"]
    assert not await app.store.claims.claim("console:i1", ttl_s=60.0)  # the decline was claimed like the work


async def test_a_failure_gets_the_catch_all_reply_and_a_logged_traceback(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    intake = Intake(app, platform="console")
    told: list[str] = []

    async def broken() -> None:
        raise KeyError("author")

    async def tell(text: str) -> None:
        told.append(text)

    async def cannot_tell(text: str) -> None:
        raise ConnectionError("gone")

    with caplog.at_level(logging.ERROR, logger="bot.intake"):
        intake.take(broken(), name="summary-1", reply_error=tell)
        intake.take(broken(), name="faq-1", reply_error=tell, sorry="The command stopped.")
        intake.take(broken(), name="summary-2", reply_error=cannot_tell)  # logged; nothing escapes
        await intake.now(broken(), name="mention", reply_error=tell)
        await intake.idle()
    assert sorted(told) == sorted([SORRY, SORRY, "The command stopped."])  # `now` ran before the tasks
    lines = [r for r in caplog.records if r.name == "bot.intake"]
    failures = [r for r in lines if "could not tell" not in r.getMessage()]
    assert len(failures) == 4 and all(r.exc_info is not None for r in failures)
    told_nobody = [r.getMessage() for r in lines if r not in failures]
    assert told_nobody == ["console: could not tell the user that summary-2 failed"]


async def test_work_taken_inside_a_request_keeps_its_request_id(app: App) -> None:
    intake = Intake(app, platform="console")
    seen: list[str | None] = []

    async def work() -> None:
        ctx = current_request()
        seen.append(ctx.request_id if ctx else None)

    with intake.request("e1"):
        ctx = current_request()
        assert ctx is not None and ctx.fields == {"platform": "console", "event_id": "e1"}
        intake.take(work(), name="inside")
    intake.take(work(), name="alone", event_id="e2")
    await intake.idle()
    assert seen[0] == ctx.request_id and seen[1] not in (None, ctx.request_id)


async def test_commands_and_mentions_are_built_by_one_set_of_rules(app: App) -> None:
    intake = Intake(app, platform="console")
    assert intake.command("llmcost", " 7d share ", CHANNEL, "root").is_admin  # named in settings
    assert intake.command("llmcost", "", CHANNEL, "mod", platform_admin=True).is_admin  # the platform says so
    plain = intake.command("llmcost", " 7d ", CHANNEL, "u1", user_name="Ann")
    assert (plain.is_admin, plain.args, plain.user_name) == (False, "7d", "Ann")
    assert intake.shared("7d SHARE") and intake.shared("public") and not intake.shared("7d")
    assert intake.mention(said("@bot summarize again from scratch")).fresh
    assert not intake.mention(said("@bot summarize")).fresh
    assert not intake.mention(said("@bot fresh summary"), fresh=False).fresh  # the caller knows better
