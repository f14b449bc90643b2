"""The fake Discord against the real discord.py 2.7 client, and its wire protocol against raw aiohttp clients."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fakes.discord_api import (
    ROUTE_EDIT_MESSAGE,
    FakeDiscord,
    RateLimitConfig,
    discord_py_pointed_at,
)
from tests.fakes.discord_gateway import MESSAGE_CONTENT_INTENT, ZLIB_SUFFIX
from tests.fakes.discord_ratelimit import BucketRule

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
# Short waits for on_ready: discord.py waits this long after the last GUILD_CREATE (its default is 2 s).
GUILD_READY_TIMEOUT = 0.05
NO_PINGS = discord.AllowedMentions.none()


@dataclass
class World:
    fake: FakeDiscord
    guild: int
    channel: int
    thread: int
    alice: int


@pytest.fixture
async def world() -> AsyncIterator[World]:
    # A small edit bucket keeps the bucket-waiting tests fast; its shape is the real one.
    limits = RateLimitConfig(edit_message=BucketRule(3, 0.5))
    async with FakeDiscord(rate_limits=limits) as fake:
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        alice = fake.add_member(guild, username="alice")
        starter = fake.seed_message(channel, author_id=alice, content="my build fails")
        thread = fake.add_thread(channel, name="build fails", owner_id=alice, starter_message_id=int(starter["id"]))
        yield World(fake, guild, channel, thread, alice)


def intents() -> discord.Intents:
    chosen = discord.Intents.default()
    chosen.message_content = True
    return chosen


@asynccontextmanager
async def running(client: discord.Client, fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """Start `client` against the fake, wait for on_ready, close it cleanly afterwards."""
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    client.event(on_ready)
    with discord_py_pointed_at(fake):
        task = asyncio.create_task(client.start(fake.token))
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            yield client
        finally:
            await client.close()
            await task


def new_client(**options: Any) -> discord.Client:
    return discord.Client(intents=options.pop("intents", intents()), guild_ready_timeout=GUILD_READY_TIMEOUT,
                          **options)


async def test_client_logs_in_identifies_and_sees_the_seeded_guild(world: World) -> None:
    fake = world.fake
    async with running(new_client(), fake) as client:
        assert client.user is not None and client.user.id == fake.bot_user_id
        assert client.application_id == fake.application_id
        thread = client.get_channel(world.thread)
        assert isinstance(thread, discord.Thread)
        assert thread.parent_id == world.channel
        assert isinstance(client.get_channel(world.channel), discord.TextChannel)
        guild = client.get_guild(world.guild)
        # Without the members intent discord.py caches no members, only the count GUILD_CREATE gave.
        assert guild is not None and guild.member_count == 2 and guild.me is not None

    # What discord.py asks at login: the bot user, then its application.
    assert [r.route for r in fake.requests][:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert fake.gateway.connect_queries == [{"v": "10", "encoding": "json", "compress": "zlib-stream"}]
    identify = next(p for p in fake.gateway.received if p["op"] == 2)["d"]
    assert identify["token"] == fake.token
    assert identify["intents"] & MESSAGE_CONTENT_INTENT
    assert any(p["op"] == 1 for p in fake.gateway.received)  # discord.py heartbeats right after HELLO
    async with asyncio.timeout(5):
        await fake.wait_until(lambda: fake.gateway.connections == [])  # the client closed its socket


async def test_mention_in_a_thread_reaches_on_message(world: World) -> None:
    fake = world.fake
    client = new_client()
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    client.event(on_message)
    async with running(client, fake):
        first = await fake.user_message(world.thread, author_id=world.alice, content="it says exit code 2")
        await fake.user_message(world.thread, author_id=world.alice,
                                content=f"<@{fake.bot_user_id}> summarize please", reply_to=int(first["id"]))
        async with asyncio.timeout(5):
            plain, mention = await received.get(), await received.get()

    assert plain.content == "it says exit code 2"
    assert mention.content == f"<@{fake.bot_user_id}> summarize please"
    assert mention.author.id == world.alice and mention.author.name == "alice" and not mention.author.bot
    assert isinstance(mention.channel, discord.Thread) and mention.channel.id == world.thread
    assert [u.id for u in mention.mentions] == [fake.bot_user_id]
    assert mention.reference is not None and mention.reference.message_id == int(first["id"])


async def test_sent_message_and_edits_are_recorded_with_allowed_mentions(world: World) -> None:
    fake = world.fake
    async with running(new_client(), fake) as client:
        thread = client.get_channel(world.thread)
        assert isinstance(thread, discord.Thread)
        sent = await thread.send("Summarizing…", allowed_mentions=NO_PINGS)
        # More edits than the bucket holds: discord.py must wait on X-RateLimit-* instead of hitting 429s.
        texts = ["The build", "The build fails because", "The build fails because of a typo.", "Done: a typo.",
                 "Done: a typo in setup.cfg."]
        for text in texts:
            sent = await sent.edit(content=text, allowed_mentions=NO_PINGS)
        with pytest.raises(discord.HTTPException) as too_long:
            await sent.edit(content="x" * 2001)
        fetched = await thread.fetch_message(sent.id)
        await thread.typing()
        await fetched.delete()

    assert fake.versions(sent.id) == ["Summarizing…", *texts]
    assert all(w.allowed_mentions == {"parse": []} for w in fake.writes if w.kind in ("create", "edit"))
    assert fake.served_429 == 0
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert fetched.content == texts[-1]
    assert fake.typing == [world.thread]
    assert sent.id not in fake.messages and [w.kind for w in fake.writes][-1] == "delete"


async def test_a_429_storm_slows_edits_but_the_final_edit_lands(world: World) -> None:
    fake = world.fake
    async with running(new_client(), fake) as client:
        channel = client.get_channel(world.channel)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("working…", allowed_mentions=NO_PINGS)
        fake.inject_429(ROUTE_EDIT_MESSAGE, count=3, retry_after=0.05)
        await sent.edit(content="final answer", allowed_mentions=NO_PINGS)
        fake.inject_429(ROUTE_EDIT_MESSAGE, count=1, retry_after=0.05, is_global=True)
        await sent.edit(content="final answer, really", allowed_mentions=NO_PINGS)
        fake.inject_500(ROUTE_EDIT_MESSAGE, count=1)  # discord.py retries a 500 after 1 s
        await sent.edit(content="final answer, really final", allowed_mentions=NO_PINGS)

    statuses = [r.status for r in fake.requests_on(ROUTE_EDIT_MESSAGE)]
    assert statuses == [429, 429, 429, 200, 429, 200, 500, 200]
    assert fake.served_429 == 4 and fake.invalid_requests == 4
    assert fake.messages[sent.id]["content"] == "final answer, really final"


async def test_client_resumes_after_reconnect_requests_and_dropped_sockets(world: World) -> None:
    fake = world.fake
    client = new_client()
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    client.event(on_message)
    async with running(client, fake):
        for resumes, op7 in enumerate((True, False), start=1):
            await fake.gateway.reconnect_all(op7=op7)

            def resumed(expected: int = resumes) -> bool:
                ops = [p["op"] for p in fake.gateway.received]
                return ops.count(6) == expected and len(fake.gateway.connections) == 1

            async with asyncio.timeout(5):
                await fake.wait_until(resumed)
            await fake.user_message(world.channel, author_id=world.alice, content=f"after op7={op7}")
            async with asyncio.timeout(5):
                assert (await received.get()).content == f"after op7={op7}"

    assert [p["op"] for p in fake.gateway.received].count(2) == 1  # resumed both times, never re-identified
    assert len(fake.gateway.sessions) == 1


class _ShardedClient(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py waits 5 s between IDENTIFYs by default


async def test_auto_sharded_client_asks_gateway_bot_and_identifies_each_shard() -> None:
    async with FakeDiscord(recommended_shards=2) as fake:
        guilds = [fake.add_guild(name=f"g{i}") for i in range(4)]
        client = _ShardedClient(intents=intents(), guild_ready_timeout=GUILD_READY_TIMEOUT)
        async with running(client, fake):
            assert sorted(g.id for g in client.guilds) == sorted(guilds)
            shards = sorted(p["d"]["shard"] for p in fake.gateway.received if p["op"] == 2)
        assert shards == [[0, 2], [1, 2]]
        assert "GET /gateway/bot" in [r.route for r in fake.requests]


async def test_history_pages_by_100(world: World) -> None:
    fake = world.fake
    seeded = [int(fake.seed_message(world.channel, author_id=world.alice, content=f"m{i}")["id"])
              for i in range(230)]
    everything = [int(world.thread)] + seeded  # the thread starter was seeded first
    async with running(new_client(), fake) as client:
        channel = client.get_channel(world.channel)
        assert isinstance(channel, discord.TextChannel)
        newest_first = [m.id async for m in channel.history(limit=None)]
        after = [m.id async for m in channel.history(limit=150, after=discord.Object(id=seeded[9]))]
        fetched = await client.fetch_channel(world.thread)

    assert newest_first == list(reversed(everything))
    assert after == seeded[10:160]
    assert isinstance(fetched, discord.Thread) and fetched.parent_id == world.channel
    limits = [r.query["limit"] for r in fake.requests_on("GET /channels/{channel_id}/messages")]
    assert limits[:3] == ["100", "100", "100"]


async def test_slash_command_is_deferred_and_answered_by_a_follow_up(world: World) -> None:
    fake = world.fake
    client = new_client()
    tree = app_commands.CommandTree(client)
    guild = discord.Object(id=world.guild)

    @tree.command(name="faq", description="Turn questions into FAQs", guild=guild)
    async def faq(interaction: discord.Interaction, topic: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"FAQ about {topic}", allowed_mentions=NO_PINGS)
        await interaction.edit_original_response(content="FAQ posted below.", allowed_mentions=NO_PINGS)

    @tree.context_menu(name="Summarize", guild=guild)
    async def summarize(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.followup.send(f"summary of: {message.content}", ephemeral=True, allowed_mentions=NO_PINGS)

    async with running(client, fake):
        await tree.sync(guild=guild)
        await tree.sync()
        await fake.slash_command(world.channel, user_id=world.alice, name="faq", options={"topic": "billing"})
        target = await fake.user_message(world.channel, author_id=world.alice, content="why is CI red?")
        await fake.message_command(world.channel, user_id=world.alice, name="Summarize",
                                   target_message_id=int(target["id"]))
        async with asyncio.timeout(5):
            await fake.wait_until(lambda: len([w for w in fake.writes if w.kind == "followup"]) == 2)

    overwrites = {o.guild_id: sorted(c["name"] for c in o.commands) for o in fake.command_overwrites}
    assert overwrites == {world.guild: ["Summarize", "faq"], None: []}
    assert [(c.callback_type, c.data.get("flags", 0)) for c in fake.interaction_callbacks] == [(5, 0), (5, 64)]
    followups = [w for w in fake.writes if w.kind == "followup"]
    assert [w.content for w in followups] == ["FAQ about billing", "summary of: why is CI red?"]
    assert [w.body.get("flags", 0) for w in followups] == [0, 64]
    assert all(w.allowed_mentions == {"parse": []} for w in followups)
    original = next(w for w in fake.writes if w.kind == "original_edit")
    assert original.content == "FAQ posted below." and fake.messages[original.message_id]["flags"] == 0


async def test_without_message_content_intent_only_mentions_carry_text(world: World) -> None:
    fake = world.fake
    client = new_client(intents=discord.Intents.default())
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    client.event(on_message)
    async with running(client, fake):
        await fake.user_message(world.channel, author_id=world.alice, content="secret")
        await fake.user_message(world.channel, author_id=world.alice, content=f"<@{fake.bot_user_id}> hi")
        async with asyncio.timeout(5):
            plain, mention = await received.get(), await received.get()
    assert (plain.content, mention.content) == ("", f"<@{fake.bot_user_id}> hi")


async def test_privileged_intent_not_enabled_closes_with_4014() -> None:
    async with FakeDiscord(message_content_enabled=False) as fake:
        fake.add_guild()
        client = new_client()
        with discord_py_pointed_at(fake), pytest.raises(discord.PrivilegedIntentsRequired):
            async with asyncio.timeout(10):
                await client.start(fake.token)
        await client.close()


# --- the wire protocol, with raw clients -------------------------------------------------------------


async def _receive(ws: aiohttp.ClientWebSocketResponse, inflater: Any) -> dict[str, Any]:
    msg = await ws.receive()
    if msg.type is aiohttp.WSMsgType.BINARY:
        assert msg.data.endswith(ZLIB_SUFFIX)
        return json.loads(inflater.decompress(msg.data))
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_gateway_zlib_stream_identify_heartbeat_and_resume(world: World) -> None:
    fake = world.fake
    url = fake.gateway_url.with_query(v=10, encoding="json", compress="zlib-stream")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            inflater = zlib.decompressobj()
            hello = await _receive(ws, inflater)
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41_250
            await ws.send_json({"op": 1, "d": None})
            assert (await _receive(ws, inflater))["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 513, "shard": [0, 1],
                                               "properties": {}}})
            ready = await _receive(ws, inflater)
            guild_create = await _receive(ws, inflater)
            session_id = ready["d"]["session_id"]
        assert (ready["t"], ready["s"], guild_create["t"], guild_create["s"]) == ("READY", 1, "GUILD_CREATE", 2)
        assert ready["d"]["guilds"] == [{"id": str(world.guild), "unavailable": True}]
        assert ready["d"]["resume_gateway_url"] == str(fake.gateway_url)
        assert [t["id"] for t in guild_create["d"]["threads"]] == [str(world.thread)]

        # Missed while disconnected; dispatched to the session, replayed on RESUME (plain JSON this time).
        session = fake.gateway.sessions[session_id]
        await fake.gateway.send_dispatch(session, "TYPING_START", {"channel_id": str(world.channel)})
        async with http.ws_connect(fake.gateway_url.with_query(v=10, encoding="json")) as ws:
            assert (await _receive(ws, None))["op"] == 10
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": session_id, "seq": 2}})
            replayed, resumed = await _receive(ws, None), await _receive(ws, None)
        assert (replayed["t"], replayed["s"], resumed["t"], resumed["s"]) == ("TYPING_START", 3, "RESUMED", 4)

        async with http.ws_connect(fake.gateway_url) as ws:
            await _receive(ws, None)
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": "gone", "seq": 1}})
            assert (await _receive(ws, None)) == {"op": 9, "s": None, "t": None, "d": False}
            await ws.send_json({"op": 2, "d": {"token": "wrong"}})
            closed = await ws.receive()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004


async def test_rest_limits_headers_and_rate_limit_bodies(world: World) -> None:
    fake = world.fake
    url = f"{fake.api_base}/channels/{world.channel}/messages"
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(url, json={"content": "x" * 2000, "allowed_mentions": {"parse": []}}) as response:
            assert response.status == 200
            headers = response.headers
            message_id = (await response.json())["id"]
        assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"
        assert headers["Via"] == "1.1 google" and len(headers["X-RateLimit-Bucket"]) == 32
        assert 0 < float(headers["X-RateLimit-Reset-After"]) <= 5

        cases = [{"content": "x" * 2001}, {"embeds": [{"description": "x" * 4097}]},
                 {"embeds": [{"description": "x" * 4000}, {"description": "y" * 2001}]}, {"content": ""}]
        codes = []
        for body in cases:
            async with http.post(url, json=body) as response:
                codes.append((response.status, (await response.json())["code"]))
        assert codes == [(400, 50035), (400, 50035), (400, 50035), (400, 50006)]
        async with http.post(url, json={"content": "ok"}) as response:
            assert response.status == 429  # rejected bodies spent the bucket too, as on Discord

        edit_url = f"{url}/{message_id}"
        statuses = []
        for i in range(4):  # the test bucket holds 3 edits
            async with http.patch(edit_url, json={"content": f"v{i}"}) as response:
                statuses.append(response.status)
                last, last_headers = await response.json(), response.headers
        assert statuses == [200, 200, 200, 429]
        assert last["message"] == "You are being rate limited." and last["global"] is False
        assert 0 < last["retry_after"] <= 0.5
        assert last_headers["X-RateLimit-Scope"] == "user" and last_headers["Retry-After"] == "1"
        assert last_headers["Via"] == "1.1 google"

    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{fake.api_base}/users/@me") as response:
        assert response.status == 401
    assert fake.invalid_requests == 3  # two 429s and the 401
    assert [w.allowed_mentions for w in fake.writes if w.kind == "create"] == [{"parse": []}]


async def test_global_limit_is_shared_by_all_routes_but_not_interactions() -> None:
    limits = RateLimitConfig(global_limit=BucketRule(3, 10.0))
    async with FakeDiscord(rate_limits=limits) as fake:
        auth = {"Authorization": f"Bot {fake.token}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            statuses = []
            for path in ["/users/@me", "/gateway/bot", "/users/@me", "/oauth2/applications/@me"]:
                async with http.get(fake.api_base + path) as response:
                    statuses.append(response.status)
                    body = await response.json()
            assert statuses == [200, 200, 200, 429]
            assert body["global"] is True and response.headers["X-RateLimit-Scope"] == "global"
            # Interaction endpoints are outside the global limit: this reaches the handler (unknown token).
            async with http.post(f"{fake.api_base}/interactions/1/nope/callback", json={"type": 5}) as response:
                assert response.status == 404 and (await response.json())["code"] == 10062


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())[0]


# Keys the captures carry that the fake leaves out on purpose: client-specific noise Discord adds for
# user accounts or tracing, and the optional `nonce` echo.
IGNORED_KEYS = {"_trace", "nonce", "private_channels", "presences", "relationships", "game_relationships",
                "geo_ordered_rtc_regions", "user_settings", "guild_join_requests", "auth", "session_type",
                "unusual_dm_activity_until", "theme_color", "icon_emoji", "last_pin_timestamp", "premium_type",
                "banner_color", "locale", "bio", "email", "mfa_enabled", "verified"}


def _missing_keys(captured: Any, produced: Any, path: str = "") -> list[str]:
    if not isinstance(captured, dict) or not isinstance(produced, dict):
        return []
    missing = []
    for key, value in captured.items():
        if key in IGNORED_KEYS:
            continue
        if key not in produced:
            missing.append(path + key)
        else:
            missing += _missing_keys(value, produced[key], f"{path}{key}.")
    return missing


async def test_payloads_carry_the_keys_of_captured_discord_payloads(world: World) -> None:
    fake = world.fake
    seen: list[dict[str, Any]] = []

    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        await ws.receive()
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": MESSAGE_CONTENT_INTENT}})
        seen += [json.loads((await ws.receive()).data) for _ in range(2)]
        await fake.user_message(world.thread, author_id=world.alice, content="hi")
        await fake.create_thread(world.channel, name="new", owner_id=world.alice)
        await fake.slash_command(world.channel, user_id=world.alice, name="faq")
        seen += [json.loads((await ws.receive()).data) for _ in range(3)]
    by_event = {p["t"]: p for p in seen}

    assert _missing_keys(_fixture("gateway_ready.json"), by_event["READY"]) == []
    assert _missing_keys(_fixture("gateway_message_create.json"), by_event["MESSAGE_CREATE"]) == []
    assert _missing_keys(_fixture("gateway_thread_create.json"), by_event["THREAD_CREATE"]) == []
    assert _missing_keys(_fixture("gateway_interaction_create.json"), by_event["INTERACTION_CREATE"]) == []
    rest_message = fake.store_message(channel_id=world.channel, author_id=fake.bot_user_id, content="x")
    assert _missing_keys(_fixture("rest_create_message.json"), rest_message) == []
    assert _missing_keys(_fixture("rest_get_me.json"), fake.bot_user) == []
