"""Where the FAQ lives: a Slack canvas tabbed in the channel, updated in place on refresh, with sources linked in
Slack's permalink shape — or, without the canvas scope, the FAQ as a message that says why. The real
AsyncWebClient against the fake Slack, the real OpenAI SDK against the fake model, through the assistant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.canvas import canvas_markdown, permalink
from adapters.slack.platform import SlackPlatform
from bot.app import App, build_app
from bot.settings import Settings
from bot.types import ChannelRef, ChatMessage, Command, MessageRef
from tests.fakes.discord_pins import pins as discord_pins
from tests.fakes.faq_model import faq_responder
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_canvases import canvases
from tests.test_discord_adapter import World as DiscordWorld
from tests.test_discord_adapter import world as discord_world

TEAM = "T0FAKE"
CHANNEL = ChannelRef("slack", TEAM, "C1")


def topic(text: str) -> str:
    return "Vpn" if "vpn" in text.lower() else "Printers" if "print" in text.lower() else "Other"


@dataclass
class World:
    slack: FakeSlack
    llm: FakeLLMServer
    app: App
    platform: SlackPlatform
    clock: float

    async def say(self, user: str, text: str, *, thread: str | None = None) -> str:
        self.clock += 1
        ts = f"{self.clock:.6f}"
        ref = MessageRef(CHANNEL, ts, thread)
        await self.app.assistant.record(
            ChatMessage(ref, user, user, text, datetime.fromtimestamp(self.clock, UTC))
        )
        return ts

    async def faq(self) -> str:
        outcome = await self.app.assistant.faq(Command("faq", "7", CHANNEL, "UADMIN"), self.platform)
        return outcome.text


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeSlack() as slack, FakeLLMServer(responder=faq_responder(label=topic)) as llm:
        slack.add_channel("C1", name="support")
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=llm.openai_base_url,
            db=str(tmp_path / "bot.db"),
            admins=["UADMIN"],
        )
        app = await build_app(settings)
        platform = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM)
        try:
            yield World(slack, llm, app, platform, datetime.now(UTC).timestamp() - 3600)
        finally:
            await app.close()


async def seed(w: World) -> tuple[str, str]:
    q = await w.say("U1", "How do I connect to the VPN from home?")
    a = await w.say("U2", "Install the client from the portal, then sign in with SSO", thread=q)
    await w.say("U3", "Why does the printer on floor 3 jam?")
    return q, a


async def test_the_faq_is_published_to_a_canvas_and_updated_in_place(world: World) -> None:
    q, a = await seed(world)
    reply = await world.faq()
    state = canvases(world.slack)
    (canvas,) = state.canvases.values()
    assert canvas.channel_id == "C1" and canvas.title == "FAQ"
    assert "**Vpn**" in canvas.markdown and "Install the client from the portal" in canvas.markdown
    link = f"{world.slack.base_url}/archives/C1/p{a.replace('.', '')}?thread_ts={q}&cid=C1"
    assert f"[1]({link})" in canvas.markdown  # the source, in Slack's permalink shape
    assert "**Asked but not answered yet**" in canvas.markdown and "- **Printers**" in canvas.markdown
    assert (
        reply.startswith("**FAQ** — updated in this channel's canvas")
        and "1 answered entry, 1 question not answered yet" in reply
    )
    # Nothing new: nothing rewritten, the reply points at the canvas.
    again = await world.faq()
    assert "no new questions or answers" in again and "canvas" in again
    assert len(canvas.versions) == 1
    # A new answer: the same canvas is edited in place.
    await world.say("U4", "Or use the web VPN at vpn.example when the client fails", thread=q)
    third = await world.faq()
    assert list(state.canvases) == [canvas.id] and len(canvas.versions) == 2
    assert "web VPN" in canvas.markdown and "updated in this channel's canvas" in third
    edits = [c for c in world.slack.calls if c.method == "canvases.edit"]
    assert len(edits) == 1 and edits[0].ok


async def test_without_the_canvas_scope_the_faq_is_a_message_that_says_why(world: World) -> None:
    canvases(world.slack).granted = False
    await seed(world)
    reply = await world.faq()
    assert reply.startswith("**FAQ**") and "Install the client from the portal" in reply
    assert "canvases:write" in reply and "Posted here as a message" in reply
    assert canvases(world.slack).canvases == {}
    # Granted later: the next run (even with nothing new) creates the canvas.
    canvases(world.slack).granted = True
    await world.say("U5", "How do I print double-sided?")
    await world.faq()
    assert len(canvases(world.slack).canvases) == 1


async def test_a_canvas_deleted_by_someone_is_created_again(world: World) -> None:
    q, _ = await seed(world)
    await world.faq()
    canvases(world.slack).canvases.clear()
    await world.say("U4", "Or use the web VPN at vpn.example when the client fails", thread=q)
    reply = await world.faq()
    assert len(canvases(world.slack).canvases) == 1 and "updated in this channel's canvas" in reply


def test_canvas_markdown_and_permalinks() -> None:
    md = canvas_markdown("**FAQ** — _new_\n• **Vpn** — 2 asked\nping <!channel> and @here")
    assert (
        md.startswith("**FAQ** — _new_\n- **Vpn** — 2 asked") and "<!channel>" not in md and "@here" not in md
    )
    ref = MessageRef(CHANNEL, "1700000000.000200", "1700000000.000100")
    assert permalink("https://acme.slack.com/", ref) == (
        "https://acme.slack.com/archives/C1/p1700000000000200?thread_ts=1700000000.000100&cid=C1"
    )
    assert (
        permalink("https://acme.slack.com/", MessageRef(CHANNEL, "1.5"))
        == "https://acme.slack.com/archives/C1/p15"
    )


# ---- Discord: the first FAQ reply is pinned, a refresh edits the pinned messages in place --------------------------


async def discord_faq(w: DiscordWorld) -> str:
    before = len([x for x in w.fake.writes if x.kind == "followup_edit"])
    await w.fake.slash_command(w.channel, user_id=w.alice, name="faq", options={"days": 7})
    await w.wait(lambda: len([x for x in w.fake.writes if x.kind == "followup_edit"]) > before)
    return [x for x in w.fake.writes if x.kind == "followup_edit"][-1].content or ""


async def test_discord_pins_the_first_faq_and_edits_it_in_place_on_refresh(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        w.llm.responder = faq_responder(label=topic)
        question = await w.fake.user_message(
            w.channel, author_id=w.alice, content="How do I connect to the VPN?"
        )
        thread = await w.fake.create_thread(
            w.channel, name="vpn", owner_id=w.alice, starter_message_id=int(question["id"])
        )
        answer = await w.fake.user_message(
            thread, author_id=w.bob, content="Install the client from the portal"
        )
        await w.fake.user_message(w.channel, author_id=w.bob, content="Why does the printer jam?")
        await w.wait(lambda: len(w.fake.messages) >= 3)
        await discord_faq(w)
        pinned = discord_pins(w.fake).pinned.get(w.channel, [])
        (faq_message,) = [c for c in w.bot_creates(w.channel)]
        assert pinned == [faq_message.message_id]  # the reply itself, pinned: no second copy
        text = w.final(faq_message.message_id) or ""
        guild = w.guild
        assert (
            f"https://discord.com/channels/{guild}/{thread}/{answer['id']}" in text
        )  # the source's jump URL
        # A new answer: the pinned message is edited in place; the reply only points at it.
        await w.fake.user_message(thread, author_id=w.bob, content="Or use the web VPN when the client fails")
        await asyncio.sleep(0.3)
        await discord_faq(w)
        creates = w.bot_creates(w.channel)
        assert len(creates) == 2 and discord_pins(w.fake).pinned[w.channel] == [faq_message.message_id]
        assert "web VPN" in (w.final(faq_message.message_id) or "")
        pointer = w.final(creates[1].message_id) or ""
        assert (
            pointer.startswith("**FAQ** — updated in the pinned messages")
            and str(faq_message.message_id) in pointer
        )


async def test_discord_without_the_pin_permission_keeps_the_faq_as_a_message(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        w.llm.responder = faq_responder(label=topic)
        discord_pins(w.fake).allowed = False
        await w.fake.user_message(w.channel, author_id=w.alice, content="How do I connect to the VPN?")
        await w.wait(lambda: len(w.fake.messages) >= 1)
        await discord_faq(w)
        (reply,) = w.bot_creates(w.channel)
        assert (w.final(reply.message_id) or "").startswith("**FAQ**") and not discord_pins(w.fake).pinned
        state = await w.app.assistant.faq_writer.state(w.ref(w.channel))
        assert "messages" not in state.document  # nothing kept: the next run tries again


async def test_a_scheduled_refresh_edits_the_pinned_faq_on_discord(tmp_path: Path) -> None:
    """The refresh finds Discord as the Discord process registers it with the janitor (App.maintain wires the
    schedule to OrphanJanitor.platform), publishes through the Batch API and edits the pinned message in place."""
    async with discord_world(tmp_path, faq_refresh_days=7) as w:
        w.llm.responder = faq_responder(label=topic)
        w.app.llm.batches.poll_s = 0.05
        question = await w.fake.user_message(w.channel, author_id=w.alice, content="How do I connect to the VPN?")
        thread = await w.fake.create_thread(
            w.channel, name="vpn", owner_id=w.alice, starter_message_id=int(question["id"])
        )
        await w.fake.user_message(thread, author_id=w.bob, content="Install the client from the portal")
        await w.wait(lambda: len(w.fake.messages) >= 2)
        await discord_faq(w)
        (faq_message,) = w.bot_creates(w.channel)
        assert discord_pins(w.fake).pinned[w.channel] == [faq_message.message_id]
        janitor = w.app.janitor
        schedule = w.app.faq_schedule(platform_for=lambda c: janitor.platform(c.platform, c.workspace))
        await w.fake.user_message(thread, author_id=w.bob, content="Or use the web VPN when the client fails")
        await asyncio.sleep(0.3)  # the gateway dispatches, then the adapter records it
        await w.adapter.idle()
        schedule.clock = lambda: datetime.now(UTC) + timedelta(days=8)

        assert await schedule.tick() == 1

        assert "web VPN" in (w.final(faq_message.message_id) or "")
        assert w.bot_creates(w.channel) == [faq_message]  # edited in place: nothing new posted
        assert discord_pins(w.fake).pinned[w.channel] == [faq_message.message_id]
        assert w.llm.batches.batches  # written through the Batch API, as scheduled refreshes are
        state = await w.app.assistant.faq_writer.state(w.ref(w.channel))
        assert state.refreshed_at and state.document["messages"] == str(faq_message.message_id)
