"""The Discord adapter end to end: the real discord.py client against the fake Discord (REST + gateway) over real
sockets, the real model router against the fake LLM server, and the SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.discord.doctor import doctor
from adapters.discord.endpoints import point_discord_py
from adapters.discord.pacing import RESERVE_RELEASE_S, UNKNOWN_BUCKET_SPACING_S, ChannelEditPacer
from adapters.discord.render import MESSAGE_CONTENT_NOTICE, scope_header
from adapters.discord.run import DiscordAdapter
from bot.app import App, build_app
from bot.live_reply import WRITING_MARKER
from bot.settings import Settings
from bot.types import ChannelRef, MessageRef
from tests.fakes.discord_api import (
    ROUTE_CREATE_MESSAGE,
    ROUTE_EDIT_MESSAGE,
    FakeDiscord,
    RecordedWrite,
    discord_py_pointed_at,
)
from tests.fakes.discord_payloads import FLAG_EPHEMERAL
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder

GUILD_READY_TIMEOUT = 0.05  # discord.py waits this long after the last GUILD_CREATE before on_ready (default 2 s)
WAIT_S = 20  # bound on every wait; the waits end as soon as their condition holds
# Long enough for several edits at the adapter's pacing (one per second per message), with a crowd ping the
# adapter must defang and a person mention that must not ping either.
MODEL_TEXT = (
    "**Summary**\n"
    + " ".join(f"point{i}" for i in range(60))
    + "\nAsk @everyone or <@12345> for help.\n- Decision: ship the fix."
)
RENDERED_TEXT = MODEL_TEXT.replace("@everyone", "@\u200beveryone")


def responder(request: ReceivedRequest) -> FakeReply:
    if request.structured:  # /faq classification and writing
        return default_responder(request)
    return FakeReply(MODEL_TEXT, ttft_s=0.05, tokens_per_s=30)


@dataclass
class World:
    fake: FakeDiscord
    llm: FakeLLMServer
    app: App
    adapter: DiscordAdapter
    guild: int
    channel: int
    admin_channel: int
    alice: int
    bob: int

    @property
    def bot(self) -> int:
        return self.fake.bot_user_id

    def ref(self, channel: int) -> ChannelRef:
        return ChannelRef("discord", str(self.guild), str(channel))

    def bot_creates(self, channel: int) -> list[RecordedWrite]:
        return [w for w in self.fake.writes_in(channel) if w.kind == "create"]

    def final(self, message_id: int) -> str | None:
        return self.fake.versions(message_id)[-1]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():  # noqa: ASYNC110 - the fakes' records change under us; polling is simplest
                await asyncio.sleep(0.02)


@asynccontextmanager
async def world(tmp_path: Path, *, message_content: bool = True, **overrides: Any) -> AsyncIterator[World]:
    """A Discord process (DiscordAdapter on the real discord.py client) against the fake Discord and model server;
    ``overrides`` are added to the process's Settings."""
    async with FakeDiscord(message_content_enabled=message_content) as fake, FakeLLMServer(responder=responder) as llm:
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        admin_channel = fake.add_text_channel(guild, name="bot-admin")
        alice = fake.add_member(guild, username="alice")
        bob = fake.add_member(guild, username="bob")
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=llm.openai_base_url,
            anthropic_api_key=None,
            db=str(tmp_path / "bot.db"),
            admin_channel=str(admin_channel),
            discord_token=SecretStr(fake.token),
            discord_api_url=fake.api_base,
            discord_gateway_url=str(fake.gateway_url),
            **overrides,
        )
        app = await build_app(settings)
        adapter = DiscordAdapter(app, client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT})
        with discord_py_pointed_at(fake):  # restores discord.py's class attributes afterwards
            point_discord_py(settings)  # the settings path the CLI uses
            task = asyncio.create_task(adapter.run(fake.token))
            try:
                async with asyncio.timeout(WAIT_S):
                    await adapter.ready.wait()
                yield World(fake, llm, app, adapter, guild, channel, admin_channel, alice, bob)
            finally:
                await adapter.close()  # the client closes before the fake stops
                await task
                await app.close()


def assert_no_pings(fake: FakeDiscord) -> None:
    assert fake.writes, "nothing was written"
    for w in fake.writes:
        if w.kind in ("delete", "followup_delete"):
            continue
        mentions = w.allowed_mentions
        assert mentions is not None, f"{w.kind} without allowed_mentions"
        assert mentions.get("parse") == [], mentions
        assert not mentions.get("users") and not mentions.get("roles") and not mentions.get("replied_user"), mentions


async def test_mention_in_a_thread_streams_the_summary_of_the_whole_thread(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        starter = fake.seed_message(w.channel, author_id=w.alice, content="deploys fail since Monday")
        thread = await fake.create_thread(w.channel, name="deploys", owner_id=w.alice,
                                          starter_message_id=int(starter["id"]))
        said = ["the error is ECONNRESET", "only on the eu cluster", "rolling back fixed it", "root cause: the proxy"]
        for i, text in enumerate(said):
            await fake.user_message(thread, author_id=(w.alice, w.bob)[i % 2], content=text)
        await w.wait(lambda: len(fake.gateway.received) > 0)

        async def recorded() -> int:
            return len(await w.app.store.messages.thread(w.ref(w.channel), str(thread)))

        async with asyncio.timeout(WAIT_S):
            while await recorded() < len(said):  # noqa: ASYNC110 - polls the store
                await asyncio.sleep(0.02)

        mention = await fake.user_message(thread, author_id=w.alice, content=f"<@{w.bot}> summarize please")
        await w.wait(lambda: any(
            w.final(c.message_id) == scope_header("thread") + RENDERED_TEXT for c in w.bot_creates(thread)))

        [reply] = w.bot_creates(thread)
        assert str(reply.body["message_reference"]["message_id"]) == mention["id"]
        versions = fake.versions(reply.message_id)
        assert len(versions) >= 3, versions  # the first text, at least one growing edit, the final text
        # The model's first token came within the grace: the first message carries text, no placeholder ...
        first = versions[0] or ""
        assert first.startswith(scope_header("thread") + "**Summ") and first.endswith(WRITING_MARKER), first
        # ... and the typing indicator showed in the thread at once, before it.
        order = [r.route for r in fake.requests if str(thread) in r.path]
        assert "POST /channels/{channel_id}/typing" in order
        assert order.index("POST /channels/{channel_id}/typing") < order.index(ROUTE_CREATE_MESSAGE)
        assert all(WRITING_MARKER in (v or "") for v in versions[1:-1])  # in progress ...
        assert WRITING_MARKER not in (versions[-1] or "")  # ... and the marker gone when done
        # Every message of the thread reached the model, the starter too (fetched over REST: never dispatched).
        [summary_request] = [r for r in w.llm.received if not r.structured]
        for text in ["deploys fail since Monday", *said]:
            assert text in summary_request.user_text
        assert_no_pings(fake)


async def test_a_mention_replying_to_a_reply_summarizes_the_reply_chain(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        await fake.user_message(w.channel, author_id=w.bob, content="unrelated lunch plans")
        first = await fake.user_message(w.channel, author_id=w.alice, content="login is broken on mobile")
        second = await fake.user_message(w.channel, author_id=w.bob, content="which app version?",
                                         reply_to=int(first["id"]))
        mention = await fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> what is this about",
                                          reply_to=int(second["id"]))
        await w.wait(lambda: any(
            w.final(c.message_id) == scope_header("reply chain") + RENDERED_TEXT for c in w.bot_creates(w.channel)))

        [reply] = w.bot_creates(w.channel)
        assert str(reply.body["message_reference"]["message_id"]) == mention["id"]
        [request] = w.llm.received
        assert "login is broken on mobile" in request.user_text and "which app version?" in request.user_text
        assert "unrelated lunch plans" not in request.user_text
        assert_no_pings(fake)


async def test_a_replayed_message_create_gets_one_reply(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        mention = await fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> summary?")
        await w.wait(lambda: any(w.final(c.message_id) == scope_header("channel") + RENDERED_TEXT
                                 for c in w.bot_creates(w.channel)))
        # The same MESSAGE_CREATE again, as after a reconnect replay or from a second process.
        [sent] = [p for s in fake.gateway.sessions.values() for p in s.sent
                  if p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == mention["id"]]
        replayed = asyncio.create_task(w.adapter.client.wait_for("message", check=lambda m: m.id == int(mention["id"])))
        await asyncio.sleep(0)
        await fake.dispatch("MESSAGE_CREATE", sent["d"], guild_id=w.guild)
        async with asyncio.timeout(WAIT_S):
            await replayed
        # A later message is recorded once the replay has been handled (events are handled in order of arrival).
        await fake.user_message(w.channel, author_id=w.bob, content="thanks")

        async def later_recorded() -> bool:
            return any(m.text == "thanks" for m in await w.app.store.messages.recent(w.ref(w.channel), limit=10))

        async with asyncio.timeout(WAIT_S):
            while not await later_recorded():  # noqa: ASYNC110 - polls the store
                await asyncio.sleep(0.02)
        await w.adapter.idle()  # the replay's work (spawned before the later message's) is done too
        assert len(w.bot_creates(w.channel)) == 1
        assert len(w.llm.received) == 1


async def test_a_429_storm_on_edits_slows_them_but_the_final_text_lands(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        # More 429s than discord.py's five tries per request: one edit fails through to the live reply.
        fake.inject_429(ROUTE_EDIT_MESSAGE, count=8, retry_after=0.1)
        await fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> summary?")
        await w.wait(lambda: any(w.final(c.message_id) == scope_header("channel") + RENDERED_TEXT
                                 for c in w.bot_creates(w.channel)))
        assert fake.served_429 == 8
        assert len(fake.requests_on(ROUTE_EDIT_MESSAGE)) >= 8 + 1
        assert_no_pings(fake)


async def test_slash_commands_are_registered_deferred_and_answered_by_follow_ups(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        registered = {(c["name"], c.get("type", 1)) for o in fake.command_overwrites for c in o.commands}
        assert {("faq", 1), ("llmcost", 1), ("Summarize", 3)} <= registered

        for question in ("How do I reset my password?", "Why does the build fail on arm64?",
                         "How do I reset my password again?"):
            await fake.user_message(w.channel, author_id=w.alice, content=question)

        cost = await fake.slash_command(w.channel, user_id=w.alice, name="llmcost", options={"period": "7d"})
        await w.wait(lambda: any(x.kind == "followup" for x in fake.writes))
        [callback] = [c for c in fake.interaction_callbacks if c.interaction_id == cost.id]
        assert callback.callback_type == 5  # deferred
        assert callback.data.get("flags", 0) & FLAG_EPHEMERAL
        [followup] = [x for x in fake.writes if x.kind == "followup"]
        assert followup.body.get("flags", 0) & FLAG_EPHEMERAL  # cost is private unless shared
        assert followup.embeds and followup.embeds[0]["title"].startswith("LLM spend")

        shared = await fake.slash_command(w.channel, user_id=w.alice, name="llmcost", options={"share": True})
        await w.wait(lambda: len([x for x in fake.writes if x.kind == "followup"]) == 2)
        [callback] = [c for c in fake.interaction_callbacks if c.interaction_id == shared.id]
        assert not callback.data.get("flags", 0) & FLAG_EPHEMERAL
        assert not [x for x in fake.writes if x.kind == "followup"][1].body.get("flags", 0) & FLAG_EPHEMERAL

        faq = await fake.slash_command(w.channel, user_id=w.alice, name="faq", options={"days": 7})
        await w.wait(lambda: any(x.kind == "followup_edit" and "FAQ" in (x.content or "") for x in fake.writes))
        [callback] = [c for c in fake.interaction_callbacks if c.interaction_id == faq.id]
        assert callback.callback_type == 5 and not callback.data.get("flags", 0) & FLAG_EPHEMERAL
        [post] = w.bot_creates(w.channel)  # the FAQ, written in the channel through the live reply
        versions = fake.versions(post.message_id)
        final = versions[-1] or ""
        assert final.startswith("**FAQ**") and WRITING_MARKER not in final
        # The first post races the grace (FIRST_POST_GRACE_S) and finish(): the placeholder if the run outlasted
        # the grace, else the FAQ text — either in progress (the pump posted it before finish() took over) or final.
        first = versions[0] or ""
        assert "Writing an FAQ" in first or final.startswith(first.removesuffix(WRITING_MARKER)), versions
        assert w.channel in fake.typing  # shown at once in the channel the FAQ is written to
        link = next(x for x in fake.writes if x.kind == "followup_edit").content or ""
        assert str(post.message_id) in link

        target = await fake.user_message(w.channel, author_id=w.bob, content="the deploy is stuck")
        menu = await fake.message_command(w.channel, user_id=w.alice, name="Summarize",
                                          target_message_id=int(target["id"]))
        await w.wait(lambda: len(w.bot_creates(w.channel)) == 2
                     and w.final(w.bot_creates(w.channel)[1].message_id) == scope_header("channel") + RENDERED_TEXT)
        [callback] = [c for c in fake.interaction_callbacks if c.interaction_id == menu.id]
        assert callback.callback_type == 5 and callback.data.get("flags", 0) & FLAG_EPHEMERAL
        summary = w.bot_creates(w.channel)[1]
        assert str(summary.body["message_reference"]["message_id"]) == target["id"]
        assert w.final(summary.message_id) == scope_header("channel") + RENDERED_TEXT
        assert_no_pings(fake)


async def test_without_the_message_content_intent_the_admin_is_told_and_mentions_still_work(tmp_path: Path) -> None:
    async with world(tmp_path, message_content=False) as w:
        fake = w.fake
        await w.wait(lambda: bool(w.bot_creates(w.admin_channel)))
        [notice] = w.bot_creates(w.admin_channel)
        assert notice.content == MESSAGE_CONTENT_NOTICE
        assert "Message Content Intent" in MESSAGE_CONTENT_NOTICE and "Developer Portal" in MESSAGE_CONTENT_NOTICE

        await fake.user_message(w.channel, author_id=w.bob, content="a message the bot cannot read")
        await fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> summary?")
        await w.wait(lambda: any(w.final(c.message_id) == scope_header("channel") + RENDERED_TEXT
                                 for c in w.bot_creates(w.channel)))
        stored = await w.app.store.messages.recent(w.ref(w.channel), limit=10)
        assert [m.text for m in stored] == ["@supportbot summary?"]  # the blank message was not kept
        assert len(w.bot_creates(w.admin_channel)) == 1  # told once
        assert_no_pings(fake)


async def test_doctor_checks_the_token_and_the_intent(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        good = Settings(discord_token=SecretStr(fake.token), discord_api_url=fake.api_base)
        rows = await doctor(good)
        assert [r[0] for r in rows] == ["ok  ", "ok  "]
        assert "supportbot" in rows[0][2]
        bad = Settings(discord_token=SecretStr("wrong"), discord_api_url=fake.api_base)
        [(status, what, detail)] = await doctor(bad)
        assert (status, what) == ("FAIL", "discord") and "401" in detail
    assert await doctor(Settings(discord_token=None)) == [("ok  ", "discord", "not configured (no DISCORD_TOKEN)")]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/api/v10", "http://127.0.0.1:9/", "http://127.0.0.1:9"])
def test_api_base_accepts_a_proxy_root_or_a_full_base(url: str) -> None:
    from adapters.discord.endpoints import api_base

    assert api_base(url) == "http://127.0.0.1:9/api/v10"


# ---- the channel edit pacer, with an injected clock ------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # let the other turns look


def key(message_id: int) -> MessageRef:
    return MessageRef(ChannelRef("discord", "1", "7"), str(message_id))


async def test_the_pacer_keeps_a_token_for_every_streaming_replys_final_and_finals_pass_first() -> None:
    t = FakeTime()
    bucket = {"left": 5}
    reset_at = 5.0  # a 5-per-5-s window that started at 0
    pacer = ChannelEditPacer(budget=lambda channel: (bucket["left"], reset_at - t.now), clock=t.clock, sleep=t.sleep)

    async def turn(message_id: int, *, final: bool = False) -> float:
        await pacer.wait_turn(key(message_id), final=final)
        bucket["left"] -= 1  # the edit takes its token, as discord.py counts it
        return t.now

    assert await turn(1) == 0.0  # 5 left, 1 streaming
    assert await turn(2) == 0.0  # 4 left, 2 streaming: 3 stay for finals
    held = asyncio.create_task(turn(3))  # 3 left, 3 streaming: this would spend a final's token
    await asyncio.sleep(0)
    assert not held.done()
    first_final = await turn(1, final=True)  # a final goes at once, whatever is held
    assert not held.done()
    await turn(2, final=True)
    granted = await held  # its own final still needs the last token: held until the window's last second
    assert first_final < granted and reset_at - granted <= RESERVE_RELEASE_S


async def test_the_pacer_holds_finals_only_for_a_429_and_spaces_edits_of_an_unknown_bucket() -> None:
    t = FakeTime()
    pacer = ChannelEditPacer(clock=t.clock, sleep=t.sleep)  # discord.py has not seen the bucket yet
    await pacer.wait_turn(key(1), final=False)
    await pacer.wait_turn(key(2), final=False)
    assert t.now >= UNKNOWN_BUCKET_SPACING_S  # one edit at a time until the headers teach the bucket
    before = t.now
    await pacer.wait_turn(key(1), final=True)
    assert t.now == before  # no spacing, no bucket wait for a final
    await pacer.penalize(key(2), 3.0)
    await pacer.wait_turn(key(2), final=True)
    assert t.now >= before + 3.0  # but a 429's Retry-After holds the whole channel, finals too


async def test_a_reply_just_posted_reserves_its_final_token_before_it_asks_for_an_edit() -> None:
    t = FakeTime()
    reset_at = 5.0
    pacer = ChannelEditPacer(budget=lambda channel: (2, reset_at - t.now), clock=t.clock, sleep=t.sleep)
    pacer.note_post(7, 2)  # reply 2's first message, posted while reply 1 streams
    await pacer.wait_turn(key(1), final=False)  # 2 left, 2 replies that need a final each: no progress edit
    assert reset_at - t.now <= RESERVE_RELEASE_S  # until the window's last second
