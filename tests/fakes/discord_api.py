"""A fake Discord (REST + gateway) on 127.0.0.1 for the real discord.py client.

    async with FakeDiscord() as fake:
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        alice = fake.add_member(guild, username="alice")
        with discord_py_pointed_at(fake):
            client = discord.Client(intents=..., guild_ready_timeout=0.05)
            ...                                   # client.start(fake.token) in a task
            await fake.user_message(channel, author_id=alice, content=f"<@{fake.bot_user_id}> hi")

Seeding (`add_*`, `seed_message`) changes state without telling clients; `user_message`, `edit_user_message`,
`delete_message`, `create_thread`, `slash_command` and `message_command` also dispatch the gateway event.
What clients did is in `requests`, `writes`, `versions()`, `interaction_callbacks`, `command_overwrites`,
`typing` and `gateway.received`; faults are injected with `inject_429` / `inject_500`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

import yarl
from aiohttp import web

from tests.fakes.discord_gateway import Gateway
from tests.fakes.discord_payloads import (
    ALL_PERMISSIONS,
    DM,
    GROUP_DM,
    GUILD_FORUM,
    PUBLIC_THREAD,
    Json,
    SnowflakeFactory,
    gateway_message,
    member_payload,
    mentioned_user_ids,
    message_payload,
    role_payload,
    text_channel_payload,
    thread_payload,
    user_payload,
)
from tests.fakes.discord_ratelimit import RateLimitConfig, RateLimiter
from tests.fakes.discord_rest import (
    API_PREFIX,
    MISSING_ACCESS,
    UNKNOWN_CHANNEL,
    DiscordApiError,
    RecordedRequest,
    RestApi,
)

# Route keys for fault injection (method + template, as RecordedRequest.route shows them).
ROUTE_CREATE_MESSAGE = "POST /channels/{channel_id}/messages"
ROUTE_EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
ROUTE_FOLLOWUP = "POST /webhooks/{application_id}/{token}"
ROUTE_FOLLOWUP_EDIT = "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
ROUTE_INTERACTION_CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"

# Application command types, https://discord.com/developers/docs/interactions/application-commands
CHAT_INPUT = 1
MESSAGE_COMMAND = 3
# Interaction type APPLICATION_COMMAND
INTERACTION_APPLICATION_COMMAND = 2
# Interaction contexts, https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object-
# interaction-context-types
CONTEXT_GUILD, CONTEXT_BOT_DM, CONTEXT_PRIVATE_CHANNEL = 0, 1, 2
# Option types by Python value, for slash_command(options=...)
_OPTION_TYPES: dict[type, int] = {str: 3, int: 4, bool: 5, float: 10}

# The value captured in tests/fixtures/discord/gateway_ready.json (includes GATEWAY_MESSAGE_CONTENT_LIMITED, 1 << 19).
DEFAULT_APPLICATION_FLAGS = 11051008


@dataclass(frozen=True)
class RecordedWrite:
    """One message write by the client. `allowed_mentions` is None when the body had none."""

    kind: str  # create | edit | delete | followup | followup_edit | original_edit | followup_delete
    channel_id: int
    message_id: int
    content: str | None
    embeds: list[Json] | None
    allowed_mentions: Json | None
    body: Json


@dataclass(frozen=True)
class InteractionCallback:
    interaction_id: int
    callback_type: int  # 4 = message, 5 = deferred message
    data: Json


@dataclass(frozen=True)
class CommandOverwrite:
    guild_id: int | None  # None for global commands
    commands: list[Json]


@dataclass
class FakeInteraction:
    payload: Json  # the INTERACTION_CREATE data sent
    home_channel_id: int  # where its response and follow-ups are stored (a hidden one if the payload names none)
    acknowledged: bool = False
    original_id: int | None = None

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    @property
    def channel_id(self) -> int:
        return int(self.payload["channel_id"])


@dataclass
class _Guild:
    guild_id: int
    name: str
    channel_ids: list[int] = field(default_factory=list)
    member_ids: list[int] = field(default_factory=list)
    bot_role_id: int = 0  # the managed role Discord gives the bot in the guild (tags.bot_id)


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_username: str = "supportbot",
        rate_limits: RateLimitConfig | None = None,
        heartbeat_interval_ms: int = 41_250,
        message_content_enabled: bool = True,
        recommended_shards: int = 1,
    ) -> None:
        self.token = token
        self.snowflakes = SnowflakeFactory()
        self.application_id = self.bot_user_id = self.snowflakes.next()  # a bot user shares its app's id
        self.bot_user = user_payload(user_id=self.bot_user_id, username=bot_username, bot=True)
        self.application_flags = DEFAULT_APPLICATION_FLAGS
        self.message_content_enabled = message_content_enabled
        self.recommended_shards = recommended_shards
        self.limiter = RateLimiter(config=rate_limits or RateLimitConfig())
        self.users: dict[int, Json] = {self.bot_user_id: self.bot_user}
        self.channels: dict[int, Json] = {}
        self.messages: dict[int, Json] = {}
        self.history: dict[int, list[int]] = {}
        self.commands: dict[int | None, list[Json]] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        # Records
        self.requests: list[RecordedRequest] = []
        self.writes: list[RecordedWrite] = []
        self.interaction_callbacks: list[InteractionCallback] = []
        self.command_overwrites: list[CommandOverwrite] = []
        self.typing: list[int] = []
        self.invalid_requests = 0  # 401/403/429 served; Discord bans an IP at 10,000 per 10 minutes
        self._guilds: dict[int, _Guild] = {}
        self.no_access: set[int] = set()  # channels the bot is not a member of (group DMs): 403 on channel routes
        self._changed = asyncio.Event()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        RestApi(self).install(app)
        app.router.add_get("/gateway", self.gateway.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        """Value for `discord.http.Route.BASE`."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> yarl.URL:
        """Value for `DiscordWebSocket.DEFAULT_GATEWAY`; discord.py appends ?v=10&encoding=json&compress=..."""
        return yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    # --- seeding -------------------------------------------------------------------------------------

    def add_guild(self, *, name: str = "guild") -> int:
        guild_id = self.snowflakes.next()
        self._guilds[guild_id] = _Guild(guild_id, name, member_ids=[self.bot_user_id],
                                        bot_role_id=self.snowflakes.next())
        return guild_id

    def bot_role(self, guild_id: int) -> int:
        return self._guilds[guild_id].bot_role_id

    def add_forum_channel(self, guild_id: int, *, name: str = "forum") -> int:
        channel_id = self.add_text_channel(guild_id, name=name)
        self.channels[channel_id]["type"] = GUILD_FORUM
        return channel_id

    def add_dm(self, user_id: int) -> int:
        """The DM channel between the bot and a user (no guild)."""
        channel_id = self.snowflakes.next()
        self.channels[channel_id] = {"id": str(channel_id), "type": DM, "last_message_id": None, "flags": 0,
                                     "recipients": [self.users[user_id]]}
        return channel_id

    def add_group_dm(self, user_ids: list[int], *, name: str = "group") -> int:
        """A group DM of people, without the bot: channel routes answer 403 Missing Access."""
        channel_id = self.snowflakes.next()
        self.channels[channel_id] = {"id": str(channel_id), "type": GROUP_DM, "name": name, "icon": None,
                                     "owner_id": str(user_ids[0]), "last_message_id": None, "flags": 0,
                                     "recipients": [self.users[u] for u in user_ids]}
        self.no_access.add(channel_id)
        return channel_id

    def add_text_channel(self, guild_id: int, *, name: str = "general") -> int:
        guild = self._guilds[guild_id]
        channel_id = self.snowflakes.next()
        self.channels[channel_id] = text_channel_payload(
            channel_id=channel_id, guild_id=guild_id, name=name, position=len(guild.channel_ids))
        guild.channel_ids.append(channel_id)
        return channel_id

    def add_thread(self, parent_id: int, *, name: str = "thread", owner_id: int | None = None,
                   starter_message_id: int | None = None) -> int:
        """A public thread; its id is the starter message's id when given, as on Discord."""
        parent = self.require_channel(parent_id)
        thread_id = starter_message_id or self.snowflakes.next()
        guild_id = int(parent["guild_id"])
        self.channels[thread_id] = thread_payload(thread_id=thread_id, guild_id=guild_id, parent_id=parent_id,
                                                  owner_id=owner_id or self.bot_user_id, name=name)
        self._guilds[guild_id].channel_ids.append(thread_id)
        return thread_id

    def add_member(self, guild_id: int, *, username: str, bot: bool = False) -> int:
        user_id = self.snowflakes.next()
        self.users[user_id] = user_payload(user_id=user_id, username=username, bot=bot)
        self._guilds[guild_id].member_ids.append(user_id)
        return user_id

    def seed_message(self, channel_id: int, *, author_id: int, content: str, reply_to: int | None = None) -> Json:
        """Put a message into a channel's history (for the REST history endpoint) without dispatching it."""
        return self.store_message(channel_id=channel_id, author_id=author_id, content=content, reference_id=reply_to)

    # --- gateway events ------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: Json, *, guild_id: int | None = None) -> int:
        """Send any DISPATCH event; returns how many sessions received it."""
        return await self.gateway.dispatch(event, data, guild_id=guild_id)

    async def user_message(self, channel_id: int, *, author_id: int, content: str,
                           reply_to: int | None = None, reply_ping: bool = True) -> Json:
        """A user posts: stored in history and dispatched as MESSAGE_CREATE. `<@id>` in content become mentions;
        a reply with `reply_ping` (Discord's default, "@ON") also mentions the replied message's author (unless
        that is the author: nobody pings themselves)."""
        message = self.store_message(channel_id=channel_id, author_id=author_id, content=content,
                                     reference_id=reply_to)
        if reply_to is not None and reply_ping:
            replied_author = self.messages[reply_to]["author"]
            if replied_author["id"] != str(author_id) and all(u["id"] != replied_author["id"]
                                                              for u in message["mentions"]):
                message["mentions"] = [*message["mentions"], replied_author]
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def forum_post(self, forum_id: int, *, author_id: int, title: str, content: str) -> tuple[int, Json]:
        """A forum post: a thread whose starter message lives in the thread itself and shares its id; Discord
        dispatches THREAD_CREATE, then the starter's MESSAGE_CREATE."""
        thread_id = self.snowflakes.next()
        self.add_thread(forum_id, name=title, owner_id=author_id, starter_message_id=thread_id)
        guild_id = self.guild_of(thread_id)
        await self.dispatch("THREAD_CREATE", {**self.channels[thread_id], "newly_created": True}, guild_id=guild_id)
        message = self.store_message(channel_id=thread_id, author_id=author_id, content=content,
                                     message_id=thread_id)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return thread_id, message

    async def edit_user_message(self, message_id: int, *, content: str) -> Json:
        message = self.messages[message_id]
        message["content"] = content
        message["mentions"] = self._mentions(content)
        message["edited_timestamp"] = message["timestamp"]
        await self._dispatch_message("MESSAGE_UPDATE", message)
        return message

    async def delete_message(self, message_id: int) -> None:
        message = self.messages[message_id]
        self.remove_message(message_id)
        guild_id = self.guild_of(int(message["channel_id"]))
        await self.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                               "guild_id": str(guild_id)}, guild_id=guild_id)

    async def create_thread(self, parent_id: int, *, name: str, owner_id: int,
                            starter_message_id: int | None = None) -> int:
        thread_id = self.add_thread(parent_id, name=name, owner_id=owner_id, starter_message_id=starter_message_id)
        guild_id = self.guild_of(thread_id)
        data = {**self.channels[thread_id], "newly_created": True}
        await self.dispatch("THREAD_CREATE", data, guild_id=guild_id)
        return thread_id

    async def slash_command(self, channel_id: int, *, user_id: int, name: str,
                            options: dict[str, str | int | bool | float] | None = None,
                            guild_command: bool = True, user_install: bool = False) -> FakeInteraction:
        """INTERACTION_CREATE for `/name`. `guild_command` puts data.guild_id, as for guild-registered commands;
        `user_install` sends it as from a user-installed app (authorizing_integration_owners {"1": user})."""
        data: Json = {"id": str(self._command_id(name)), "name": name, "type": CHAT_INPUT}
        if options:
            data["options"] = [{"name": k, "type": _OPTION_TYPES[type(v)], "value": v} for k, v in options.items()]
        return await self._interaction(channel_id, user_id=user_id, data=data, guild_command=guild_command,
                                       user_install=user_install)

    async def message_command(self, channel_id: int, *, user_id: int, name: str, target_message_id: int,
                              guild_command: bool = True, user_install: bool = False) -> FakeInteraction:
        """INTERACTION_CREATE for a message context-menu command on `target_message_id`."""
        target = self.messages[target_message_id]
        data: Json = {"id": str(self._command_id(name)), "name": name, "type": MESSAGE_COMMAND,
                      "target_id": target["id"], "resolved": {"messages": {target["id"]: target}}}
        return await self._interaction(channel_id, user_id=user_id, data=data, guild_command=guild_command,
                                       user_install=user_install)

    async def raw_interaction(self, payload: Json, *, guild_id: int | None = None) -> FakeInteraction:
        """Dispatch an INTERACTION_CREATE exactly as given (a recorded or malformed one) and accept its callbacks
        at `payload["token"]`; with no channel in it (or one the fake does not know), its messages are kept in a
        hidden channel."""
        named = int(payload["channel_id"]) if payload.get("channel_id") else None
        home = named if named in self.channels else self._hidden_channel()
        interaction = FakeInteraction(payload, home_channel_id=home)
        self.interactions[interaction.token] = interaction
        await self.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        return interaction

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked after every request served and gateway payload received.

        Bound it with `asyncio.timeout(...)` in the caller.
        """
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def notify(self) -> None:
        """Called by the REST and gateway modules whenever something was recorded."""
        self._changed.set()

    # --- fault injection -----------------------------------------------------------------------------

    def inject_429(self, route: str, *, count: int, retry_after: float = 0.2, is_global: bool = False) -> None:
        """The next `count` requests on `route` get 429. discord.py gives up after 5 tries of one request."""
        self.limiter.inject(route, status=429, count=count, retry_after=retry_after, is_global=is_global)

    def inject_500(self, route: str, *, count: int) -> None:
        """The next `count` requests on `route` get 500 (discord.py retries after 1 s, 3 s, ...)."""
        self.limiter.inject(route, status=500, count=count, retry_after=0.0, is_global=False)

    @property
    def served_429(self) -> int:
        return self.limiter.served_429

    # --- queries over records ------------------------------------------------------------------------

    def versions(self, message_id: int) -> list[str | None]:
        """Content of a message after its create and after each edit, in order."""
        return [w.content for w in self.writes if w.message_id == message_id and w.kind != "delete"]

    def writes_in(self, channel_id: int) -> list[RecordedWrite]:
        return [w for w in self.writes if w.channel_id == channel_id]

    def requests_on(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    # --- state used by the REST and gateway modules --------------------------------------------------

    def guild_ids(self) -> list[int]:
        return list(self._guilds)

    def guild_of(self, channel_id: int) -> int:
        return int(self.require_channel(channel_id)["guild_id"])

    def require_channel(self, channel_id: int) -> Json:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise DiscordApiError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        return channel

    def require_access(self, channel_id: int) -> Json:
        """A channel the bot may use through the channel routes (a group DM without the bot answers 403)."""
        channel = self.require_channel(channel_id)
        if channel_id in self.no_access:
            raise DiscordApiError(403, MISSING_ACCESS, "Missing Access")
        return channel

    def application_payload(self) -> Json:
        return {"id": str(self.application_id), "name": self.bot_user["username"], "icon": None,
                "description": "", "bot_public": False, "bot_require_code_grant": False,
                "owner": user_payload(user_id=self.snowflakes.next(), username="owner"),
                "verify_key": "0" * 64, "flags": self.application_flags, "team": None, "bot": self.bot_user}

    def member_payloads(self, guild_id: int) -> list[Json]:
        guild = self._guilds[guild_id]
        return [member_payload(user=self.users[u], role_ids=[guild.bot_role_id] if u == self.bot_user_id else [])
                for u in guild.member_ids]

    def guild_create_payload(self, guild_id: int) -> Json:
        guild = self._guilds[guild_id]
        channels = [self.channels[c] for c in guild.channel_ids]
        members = self.member_payloads(guild_id)
        return {
            "id": str(guild_id), "name": guild.name, "unavailable": False, "owner_id": str(self.bot_user_id),
            "icon": None, "splash": None, "discovery_splash": None, "banner": None, "description": None,
            "features": [], "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "preferred_locale": "en-US", "system_channel_id": None, "system_channel_flags": 0,
            "rules_channel_id": None, "public_updates_channel_id": None, "afk_channel_id": None, "afk_timeout": 300,
            "roles": [role_payload(role_id=guild_id, name="@everyone", position=0),
                      role_payload(role_id=guild.bot_role_id, name=self.bot_user["username"], position=1,
                                   bot_id=self.bot_user_id)],
            "emojis": [], "stickers": [], "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "joined_at": "2024-02-27T19:50:51.701000+00:00",
            # member_count == len(members) marks the guild as chunked, so discord.py sends no op 8 at startup
            "large": False, "member_count": len(members), "members": members,
            "channels": [c for c in channels if c["type"] != PUBLIC_THREAD],
            "threads": [c for c in channels if c["type"] == PUBLIC_THREAD],
        }

    def store_message(self, *, channel_id: int, author_id: int, content: str, embeds: list[Json] | None = None,
                      reference_id: int | None = None, flags: int = 0, webhook: bool = False,
                      message_id: int | None = None) -> Json:
        self.require_channel(channel_id)
        message_id = message_id or self.snowflakes.next()
        reference = self.messages.get(reference_id) if reference_id is not None else None
        message = message_payload(
            message_id=message_id, channel_id=channel_id, author=self.users[author_id], content=content,
            mentions=self._mentions(content), embeds=embeds, reference=dict(reference) if reference else None,
            flags=flags, webhook_id=self.application_id if webhook else None,
            application_id=self.application_id if webhook else None,
        )
        self.messages[message_id] = message
        self.history.setdefault(channel_id, []).append(message_id)
        self.channels[channel_id]["last_message_id"] = str(message_id)
        return message

    def remove_message(self, message_id: int) -> None:
        message = self.messages.pop(message_id)
        self.history[int(message["channel_id"])].remove(message_id)

    def record_write(self, kind: str, message: Json, body: Json) -> None:
        self.writes.append(RecordedWrite(
            kind=kind, channel_id=int(message["channel_id"]), message_id=int(message["id"]),
            content=message.get("content"), embeds=message.get("embeds"),
            allowed_mentions=body.get("allowed_mentions"), body=body))

    def record_callback(self, interaction: FakeInteraction, callback_type: int, data: Json) -> None:
        self.interaction_callbacks.append(InteractionCallback(interaction.id, callback_type, data))

    def overwrite_commands(self, guild_id: int | None, commands: list[Json]) -> list[Json]:
        self.command_overwrites.append(CommandOverwrite(guild_id, commands))
        stored = [{"options": [], "default_member_permissions": None, "dm_permission": True, "nsfw": False,
                   "contexts": None, "integration_types": [0], "description": "", **command,
                   "id": str(self._command_id(command["name"])), "application_id": str(self.application_id),
                   "version": str(self.snowflakes.next()), "guild_id": str(guild_id) if guild_id else None}
                  for command in commands]
        self.commands[guild_id] = stored
        return stored

    # --- internals -----------------------------------------------------------------------------------

    def _mentions(self, content: str) -> list[Json]:
        return [self.users[u] for u in mentioned_user_ids(content) if u in self.users]

    def _command_id(self, name: str) -> int:
        for commands in self.commands.values():
            for command in commands:
                if command["name"] == name:
                    return int(command["id"])
        return self.snowflakes.next()

    def _hidden_channel(self) -> int:
        channel_id = self.snowflakes.next()
        self.channels[channel_id] = {"id": str(channel_id), "type": GROUP_DM, "last_message_id": None}
        self.no_access.add(channel_id)
        return channel_id

    async def _dispatch_message(self, event: str, message: Json) -> None:
        channel = self.channels[int(message["channel_id"])]
        if "guild_id" not in channel:  # a DM: no guild, no member, channel_type 1 (delivered on shard 0)
            await self.dispatch(event, {**message, "channel_type": channel["type"]}, guild_id=None)
            return
        guild_id = int(channel["guild_id"])
        member = member_payload(user=None, role_ids=[])
        data = gateway_message(message, guild_id=guild_id, channel_type=channel["type"], member=member)
        data["mentions"] = [{**u, "member": member} for u in data["mentions"]]
        await self.dispatch(event, data, guild_id=guild_id)

    async def _interaction(self, channel_id: int, *, user_id: int, data: Json, guild_command: bool,
                           user_install: bool) -> FakeInteraction:
        channel = self.require_channel(channel_id)
        common: Json = {
            "id": str(self.snowflakes.next()), "application_id": str(self.application_id),
            "type": INTERACTION_APPLICATION_COMMAND, "data": data,
            "channel_id": str(channel_id), "channel": {**channel, "permissions": ALL_PERMISSIONS},
            "token": secrets.token_urlsafe(24), "version": 1, "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US", "entitlements": [], "entitlement_sku_ids": [], "attachment_size_limit": 524_288_000,
        }
        if "guild_id" not in channel:  # the bot's DM or a private channel: a user, no guild
            in_dm = channel["type"] == DM and channel_id not in self.no_access
            payload = {**common, "user": self.users[user_id],
                       "context": CONTEXT_BOT_DM if in_dm else CONTEXT_PRIVATE_CHANNEL,
                       "authorizing_integration_owners": {"1": str(user_id)} if user_install or not in_dm
                       else {"0": "0"}}
            interaction = FakeInteraction(payload, home_channel_id=channel_id)
            self.interactions[interaction.token] = interaction
            await self.dispatch("INTERACTION_CREATE", payload, guild_id=None)
            return interaction
        guild_id = int(channel["guild_id"])
        if guild_command:
            data["guild_id"] = str(guild_id)
        payload = {
            **common, "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "member": {**member_payload(user=self.users[user_id], role_ids=[]), "permissions": ALL_PERMISSIONS,
                       "collectibles": None, "display_name_styles": None},
            "guild_locale": "en-US",
            "authorizing_integration_owners": {"1": str(user_id)} if user_install else {"0": str(guild_id)},
            "context": CONTEXT_GUILD,
        }
        interaction = FakeInteraction(payload, home_channel_id=channel_id)
        self.interactions[interaction.token] = interaction
        await self.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        return interaction


@contextlib.contextmanager
def discord_py_pointed_at(fake: FakeDiscord | None = None, *, api_base: str | None = None,
                          gateway_url: yarl.URL | None = None) -> Iterator[None]:
    """Point discord.py's REST (`Route.BASE`) and gateway (`DEFAULT_GATEWAY`) at the fake, then restore them.

    Both are class attributes read when a Route or websocket is created, so the context must span the client's
    whole life (login to close).
    """
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    saved_base, saved_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    base = api_base or (fake.api_base if fake else None)
    gateway = gateway_url or (fake.gateway_url if fake else None)
    if base is None or gateway is None:
        raise ValueError("give a FakeDiscord or both api_base and gateway_url")
    Route.BASE = base
    DiscordWebSocket.DEFAULT_GATEWAY = gateway
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved_base, saved_gateway


__all__ = [
    "ROUTE_CREATE_MESSAGE", "ROUTE_EDIT_MESSAGE", "ROUTE_FOLLOWUP", "ROUTE_FOLLOWUP_EDIT",
    "ROUTE_INTERACTION_CALLBACK", "CommandOverwrite", "FakeDiscord", "FakeInteraction", "InteractionCallback",
    "RateLimitConfig", "RecordedRequest", "RecordedWrite", "discord_py_pointed_at",
]
