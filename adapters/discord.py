"""Discord through discord.py: events in, neutral calls to the Assistant, replies out.

The only module that knows Discord's shapes besides discord_render.py. Threads are modelled as the neutral
thread of their parent channel: ``ChannelRef.channel`` is the parent channel id and ``MessageRef.thread_id`` the
thread's id, which on Discord equals its starter message's id (FACTS.md), so the message log finds the starter
message and the replies of a thread under one key. Outside a thread, a reply chain is treated as a thread rooted
at its first message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord_render import MESSAGE_CONTENT_NOTICE, scope_header, spend_embed
from bot.app import App
from bot.live_reply import WRITING_MARKER
from bot.settings import Settings
from bot.summarize import wants_fresh
from bot.types import (
    ChannelRef,
    ChatMessage,
    Command,
    Mention,
    MessageGone,
    MessageRef,
    MessageTooLong,
    PlatformLimits,
    PlatformRateLimited,
)

log = logging.getLogger(__name__)

PLATFORM = "discord"
# Replies are plain message content, limited to 2,000 characters (FACTS.md), not embeds (4,096): content is what
# notifications, search, replies' previews and screen readers show, it renders the model's markdown in full, and it
# still shows for people who turned off "show embeds". Longer answers continue in further messages (LiveReply).
CONTENT_LIMIT = 2000
# Edits of one message at most this often: enough to read along, and five such edits fill a channel's observed
# edit bucket (FACTS.md: all edits in one channel share a bucket; 5 per 5 s observed). LiveReply's own floor counts
# from the post as well, but on Discord posts and edits use different buckets, so the floor is kept here, between
# edits, and the limit given to LiveReply is small.
MESSAGE_EDIT_SPACING_S = 1.0
LIVE_REPLY_FLOOR_S = 0.1
# Used only while discord.py has not yet learned a channel's edit bucket from X-RateLimit-* headers.
UNKNOWN_BUCKET_SPACING_S = 1.0
MAX_MESSAGE_EDIT_SPACING_S = 10.0
BUCKET_POLL_S = 0.05
# Replies in one channel end at about the same time and each final edit needs a token of the channel's bucket.
# An in-progress edit is held back (re-tried after this long) when taking a token would leave fewer than the other
# streaming replies need for their finals; a final edit is never held. Without this, progress edits spend the
# window and every final waits for the reset (up to 5 s): the whole tail of each answer arrives late.
FINAL_RESERVE_POLL_S = 0.25
STREAMING_FORGET_S = 60.0  # a reply silent this long (its process died mid-answer) stops reserving a token  # re-check of a spent bucket whose reset time discord.py does not know yet
PACER_FORGET_S = 600.0  # a message not edited for this long is forgotten by the pacer
# History pages hold at most 100 messages (FACTS.md); outside threads the last 200 messages are fetched.
HISTORY_PAGE = 100
RECENT_FETCH = 200
MAX_REPLY_CHAIN = 50  # messages walked up a reply chain before it is treated as long enough
CLAIM_TTL_S = 3600.0  # a replayed event (reconnect, a second shard process) is dropped for this long
NOTICE_TTL_S = 24 * 3600.0  # the missing-intent notice is repeated at most once a day (across processes)
EMPTY_CONTENT_SIGNS = 3  # blank non-mention messages in a row that show the Message Content intent is missing
# Discord JSON error codes, https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
INVALID_FORM_BODY = 50035  # raised among others for content over 2,000 characters
FALLBACK_RETRY_AFTER_S = 1.0
DOCTOR_TIMEOUT_S = 10.0
API_VERSION_PATH = "/api/v10"
NO_PINGS = discord.AllowedMentions.none()
# Application flags, https://discord.com/developers/docs/resources/application#application-object-application-flags
FLAG_MESSAGE_CONTENT = 1 << 18
FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19


# ---- pacing ----------------------------------------------------------------------------------------------------


EditBudget = Callable[[int], "tuple[int, float] | None"]


@dataclass
class _Lane:
    lock: asyncio.Lock
    last_turn_at: float = float("-inf")
    blocked_until: float = float("-inf")


@dataclass
class _MessagePace:
    next_at: float
    spacing: float
    seen_at: float
    held: bool = False  # the platform held an in-progress edit back to keep tokens for other replies' finals


class ChannelEditPacer:
    """EditPacer that lets an edit go out only when discord.py's bucket for the channel has room for it.

    discord.py honours Discord's buckets by holding a request until its bucket resets; a held edit carries the text
    of the moment it was made, which is stale by the time it lands. Asking first (``budget``: edits left in the
    channel's window and seconds until it resets, as discord.py learned them from the headers) makes the edit wait
    *here*, and LiveReply then sends the latest text when the turn comes. The replies of a channel take turns in
    order (asyncio.Lock is FIFO), and each message is edited at most every MESSAGE_EDIT_SPACING_S."""

    def __init__(
        self,
        *,
        budget: EditBudget | None = None,
        lane_of: Callable[[str], int] | None = None,
        message_spacing_s: float = MESSAGE_EDIT_SPACING_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budget = budget or (lambda channel_id: None)
        self._lane_of = lane_of or _channel_of_key
        self.message_spacing_s = message_spacing_s
        self._clock, self._sleep = clock, sleep
        self._lanes: dict[int, _Lane] = {}
        self._messages: dict[str, _MessagePace] = {}

    def _message(self, key: str) -> _MessagePace:
        key = key.rpartition("/")[2]  # the message id: the platform can name it too (hold)
        now = self._clock()
        pace = self._messages.get(key)
        if pace is None:
            if len(self._messages) > 1000:
                self._messages = {k: v for k, v in self._messages.items() if now - v.seen_at < PACER_FORGET_S}
            pace = self._messages[key] = _MessagePace(float("-inf"), self.message_spacing_s, now)
        pace.seen_at = now
        return pace

    def _lane(self, key: str) -> tuple[int, _Lane]:
        channel_id = self._lane_of(key)
        lane = self._lanes.get(channel_id)
        if lane is None:
            lane = self._lanes[channel_id] = _Lane(asyncio.Lock())
        return channel_id, lane

    async def wait_turn(self, key: str) -> None:
        pace = self._message(key)
        while (delay := pace.next_at - self._clock()) > 0:  # outside the lane: others may go meanwhile
            await self._sleep(delay)
        channel_id, lane = self._lane(key)
        async with lane.lock:
            while (delay := self._channel_delay(channel_id, lane)) > 0:
                await self._sleep(delay)
            lane.last_turn_at = self._clock()
        pace.spacing = max(self.message_spacing_s, pace.spacing * 0.7)  # back to normal after a penalty
        pace.next_at = self._clock() + pace.spacing

    def _channel_delay(self, channel_id: int, lane: _Lane) -> float:
        now = self._clock()
        if lane.blocked_until > now:
            return lane.blocked_until - now
        budget = self._budget(channel_id)
        if budget is None:
            return lane.last_turn_at + UNKNOWN_BUCKET_SPACING_S - now
        left, reset_in = budget
        return 0.0 if left > 0 else max(reset_in, BUCKET_POLL_S)

    def hold(self, message_id: int, seconds: float) -> None:
        """Keep this message's next edit back a little, without blaming the channel (see DiscordPlatform.edit_in)."""
        pace = self._message(str(message_id))
        pace.held = True
        pace.next_at = max(pace.next_at, self._clock() + seconds)

    async def penalize(self, key: str, retry_after_s: float) -> None:
        pace = self._message(key)
        if pace.held:  # our own hold, not a 429: nothing to back off from
            pace.held = False
            return
        pace.spacing = min(MAX_MESSAGE_EDIT_SPACING_S, pace.spacing * 2)
        _, lane = self._lane(key)
        lane.blocked_until = max(lane.blocked_until, self._clock() + retry_after_s)


def _channel_of_key(key: str) -> int:
    """Keys are "{channel.key}/{message_id}" with channel.key "discord:{guild}:{channel}"."""
    return int(key.rpartition("/")[0].rpartition(":")[2])


# ---- translation at the edge -----------------------------------------------------------------------------------


def _workspace(guild_id: int | None) -> str:
    return str(guild_id) if guild_id else "dm"


def place_of(channel: Any, guild_id: int | None) -> tuple[ChannelRef, str | None]:
    """(the neutral channel, thread id) of a discord.py channel: a thread belongs to its parent channel."""
    if isinstance(channel, discord.Thread):
        return ChannelRef(PLATFORM, _workspace(guild_id), str(channel.parent_id)), str(channel.id)
    return ChannelRef(PLATFORM, _workspace(guild_id), str(channel.id)), None


def to_chat(message: discord.Message, *, thread_id: str | None = None) -> ChatMessage:
    channel, in_thread = place_of(message.channel, message.guild.id if message.guild else None)
    author = message.author
    return ChatMessage(
        ref=MessageRef(channel, str(message.id), in_thread or thread_id),
        author=str(author.id),
        author_name=author.display_name,
        text=message.clean_content,  # <@id> as @name: what people read, and what the model should read
        sent_at=message.created_at.astimezone(UTC),
        is_bot=author.bot or message.webhook_id is not None,
    )


def _error_code(exc: discord.HTTPException) -> int:
    return int(getattr(exc, "code", 0) or 0)


def _translate(exc: discord.HTTPException) -> Exception:
    """discord.py's exceptions → the ChatPlatform's. discord.py already retried 429s (up to 5 tries, honouring
    retry_after); reaching here means it gave up, so LiveReply backs off on top."""
    if isinstance(exc, (discord.NotFound, discord.Forbidden)):
        return MessageGone(str(exc))
    if exc.status == 429:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        return PlatformRateLimited(float(header) if header else FALLBACK_RETRY_AFTER_S)
    if _error_code(exc) == INVALID_FORM_BODY and "length" in str(exc).lower():
        return MessageTooLong(str(exc))
    return exc


# ---- the ChatPlatform ------------------------------------------------------------------------------------------


class DiscordPlatform:
    """ChatPlatform over a discord.py client. Every send and edit carries AllowedMentions.none(): model text and
    quoted user text must never ping anyone (FACTS.md)."""

    limits = PlatformLimits(
        max_message_chars=CONTENT_LIMIT, min_edit_interval_s=LIVE_REPLY_FLOOR_S, markup="discord_markdown"
    )

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        # LiveReply takes the pacer from the platform (bot/assistant.py: _pacer).
        self.pacer = ChannelEditPacer(budget=self.edit_budget, lane_of=self._lane_of)
        self._is_thread: dict[int, bool] = {}
        # One request per channel and route in flight: discord.py 2.7 counts requests in flight twice when one
        # finishes (Ratelimit.__aexit__: remaining - outgoing), so a burst of 4 on a 5-per-5-s bucket makes it hold a
        # request that already succeeded until the window resets. Serialized, the bucket's whole budget is usable.
        self._in_flight: dict[tuple[str, int], asyncio.Lock] = {}
        # Messages showing in-progress text, per channel: {message id: last edit time}.
        self._streaming: dict[int, dict[int, float]] = {}
        # Where each message we posted lives (a thread or a channel), so an edit needs no lookup.
        self._where: OrderedDict[int, int] = OrderedDict()

    def _lane_of(self, key: str) -> int:
        """The Discord channel whose edit bucket an edit of this message uses (a thread has its own)."""
        message_id = key.rpartition("/")[2]
        where = self._where.get(int(message_id)) if message_id.isdigit() else None
        return where if where is not None else _channel_of_key(key)

    def edit_budget(self, channel_id: int) -> tuple[int, float] | None:
        """(edits left, seconds until the window resets) of the channel's edit bucket as discord.py knows it, or
        None before it has seen the bucket's headers. discord.py keeps this in HTTPClient._buckets (private): read
        defensively, and any surprise just means "unknown"."""
        try:
            http: Any = self.client.http
            route = discord.http.Route(
                "PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=channel_id, message_id=0
            )
            bucket_hash = http._bucket_hashes.get(route.key)
            bucket = http._buckets.get(f"{bucket_hash}:{route.major_parameters}") if bucket_hash else None
            if bucket is None:
                return None
            now = asyncio.get_running_loop().time()
            if bucket.expires is None:
                return int(bucket.remaining - bucket.outgoing), 0.0
            if now > bucket.expires:
                return int(bucket.limit), 0.0  # the window is over: discord.py resets it on the next request
            return int(bucket.remaining - bucket.outgoing), float(bucket.expires - now)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            return None

    def note_thread(self, thread_id: int) -> None:
        self._is_thread[thread_id] = True

    async def is_thread(self, channel_id: int) -> bool:
        known = self._is_thread.get(channel_id)
        if known is not None:
            return known
        cached = self.client.get_channel(channel_id)
        if cached is not None:
            result = isinstance(cached, discord.Thread)
        else:
            try:
                result = isinstance(await self.client.fetch_channel(channel_id), discord.Thread)
            except (discord.NotFound, discord.Forbidden):
                result = False  # not a channel: a message id (the root of a reply chain)
        self._is_thread[channel_id] = result
        return result

    # -- ChatPlatform

    async def post(self, channel: ChannelRef, text: str, *, thread_id: str | None = None) -> MessageRef:
        where, reply_to = int(channel.channel), None
        if thread_id is not None:
            if await self.is_thread(int(thread_id)):
                where = int(thread_id)
            else:
                reply_to = int(thread_id)  # outside threads the core's "thread" is the message replied to
        message_id = await self.send(where, text, reply_to=reply_to, guild_id=_guild(channel))
        return MessageRef(channel, str(message_id), thread_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        where = self._where.get(int(ref.message_id))
        if where is None:
            thread = ref.thread_id
            where = int(thread) if thread and await self.is_thread(int(thread)) else int(ref.channel.channel)
        await self.edit_in(where, int(ref.message_id), text)

    async def fetch_thread(self, ref: MessageRef, *, since: datetime | None = None) -> list[ChatMessage]:
        channel = ref.channel
        if ref.thread_id and await self.is_thread(int(ref.thread_id)):
            return await self._thread_history(channel, int(ref.thread_id), since)
        if ref.thread_id:
            chain = await self.reply_chain(channel, int(ref.message_id))
            return [m for m in chain if since is None or m.sent_at > since]
        where = self.client.get_partial_messageable(int(channel.channel), guild_id=_guild(channel))
        newest_first = [m async for m in where.history(limit=RECENT_FETCH, after=since, oldest_first=False)]
        return [to_chat(m) for m in reversed(newest_first)]

    # -- Discord-level calls

    async def send(self, where: int, text: str, *, reply_to: int | None = None, guild_id: int | None = None) -> int:
        target = self.client.get_partial_messageable(where, guild_id=guild_id)
        reference = (
            discord.MessageReference(message_id=reply_to, channel_id=where, guild_id=guild_id, fail_if_not_exists=False)
            if reply_to is not None
            else None
        )
        try:
            async with self._one_at_a_time("create", where):
                if reference is None:
                    sent = await target.send(text, allowed_mentions=NO_PINGS)
                else:
                    sent = await target.send(
                        text, allowed_mentions=NO_PINGS, reference=reference, mention_author=False
                    )
        except discord.RateLimited as exc:
            raise PlatformRateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise _translate(exc) from exc
        self._where[sent.id] = where
        while len(self._where) > 10_000:
            self._where.popitem(last=False)
        return sent.id

    async def edit_in(self, where: int, message_id: int, text: str) -> None:
        in_progress = WRITING_MARKER in text
        if in_progress and self._keep_for_finals(where, message_id):
            self.pacer.hold(message_id, FINAL_RESERVE_POLL_S)
            raise PlatformRateLimited(0.0)
        message = self.client.get_partial_messageable(where).get_partial_message(message_id)
        try:
            async with self._one_at_a_time("edit", where):
                await message.edit(content=text, allowed_mentions=NO_PINGS)
        except discord.RateLimited as exc:
            raise PlatformRateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise _translate(exc) from exc
        streaming = self._streaming.setdefault(where, {})
        if in_progress:
            streaming[message_id] = time.monotonic()
        else:
            streaming.pop(message_id, None)

    def _keep_for_finals(self, where: int, message_id: int) -> bool:
        budget = self.edit_budget(where)
        if budget is None:
            return False
        now = time.monotonic()
        streaming = self._streaming.get(where, {})
        for mid in [m for m, at in streaming.items() if now - at > STREAMING_FORGET_S]:
            del streaming[mid]
        if message_id not in streaming:
            return False  # its first text: what a reader waits for most is never held
        others = sum(1 for mid in streaming if mid != message_id)
        left, _ = budget
        return left - 1 < others

    def _one_at_a_time(self, route: str, where: int) -> asyncio.Lock:
        lock = self._in_flight.get((route, where))
        if lock is None:
            if len(self._in_flight) > 10_000:
                self._in_flight = {k: v for k, v in self._in_flight.items() if v.locked()}
            lock = self._in_flight[(route, where)] = asyncio.Lock()
        return lock

    async def reply_chain(self, channel: ChannelRef, message_id: int) -> list[ChatMessage]:
        """The messages replied to from ``message_id`` up to the chain's first, oldest first, each tagged with the
        first one's id as thread id (the core's thread key for a reply chain)."""
        where = self.client.get_partial_messageable(int(channel.channel), guild_id=_guild(channel))
        cached = {m.id: m for m in self.client.cached_messages}
        chain: list[discord.Message] = []
        next_id: int | None = message_id
        while next_id is not None and len(chain) < MAX_REPLY_CHAIN:
            message = cached.get(next_id)
            if message is None:
                try:
                    message = await where.fetch_message(next_id)
                except (discord.NotFound, discord.Forbidden):
                    break  # a deleted message ends the chain
            chain.append(message)
            ref = message.reference
            next_id = ref.message_id if ref is not None and ref.channel_id == message.channel.id else None
        if not chain:
            return []
        root = str(chain[-1].id)
        return [to_chat(m, thread_id=root) for m in reversed(chain)]

    async def _thread_history(self, channel: ChannelRef, thread_id: int, since: datetime | None) -> list[ChatMessage]:
        thread = self.client.get_partial_messageable(thread_id, guild_id=_guild(channel))
        messages: list[ChatMessage] = []
        try:  # the starter message lives in the parent channel and has the thread's id
            parent = self.client.get_partial_messageable(int(channel.channel), guild_id=_guild(channel))
            messages.append(to_chat(await parent.fetch_message(thread_id)))
        except (discord.NotFound, discord.Forbidden):
            pass  # a thread started without a message, or a deleted starter
        async for m in thread.history(limit=None, after=since, oldest_first=True):
            chat = to_chat(m)
            messages.append(replace(chat, ref=MessageRef(channel, chat.ref.message_id, str(thread_id))))
        return [m for m in messages if since is None or m.sent_at > since]


def _guild(channel: ChannelRef) -> int | None:
    return int(channel.workspace) if channel.workspace.isdigit() else None


class _ReplyHere:
    """The platform as one summary sees it: every message goes to ``where`` (the thread or channel of the
    request), the first one as a reply to the request, headed by a line that says what was summarized."""

    def __init__(self, platform: DiscordPlatform, *, where: int, reply_to: int | None, header: str) -> None:
        self._platform, self._where, self._reply_to, self._header = platform, where, reply_to, header
        self._first: str | None = None
        self.pacer = platform.pacer  # one pacer per channel, whichever reply edits there
        base = platform.limits
        self.limits = replace(base, max_message_chars=base.max_message_chars - len(header))

    async def post(self, channel: ChannelRef, text: str, *, thread_id: str | None = None) -> MessageRef:
        first = self._first is None
        body = self._header + text if first else text
        reply_to = self._reply_to if first else None
        message_id = await self._platform.send(self._where, body, reply_to=reply_to, guild_id=_guild(channel))
        if first:
            self._first = str(message_id)
        return MessageRef(channel, str(message_id), thread_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        body = self._header + text if ref.message_id == self._first else text
        await self._platform.edit_in(self._where, int(ref.message_id), body)

    async def fetch_thread(self, ref: MessageRef, *, since: datetime | None = None) -> list[ChatMessage]:
        return await self._platform.fetch_thread(ref, since=since)


# ---- the adapter -----------------------------------------------------------------------------------------------


def point_discord_py(settings: Settings) -> None:
    """DISCORD_API_URL / DISCORD_GATEWAY_URL: where discord.py connects (a REST proxy, a gateway proxy, a fake).
    Both are class attributes of discord.py (FACTS.md), so this is process-wide."""
    if settings.discord_api_url:
        discord.http.Route.BASE = api_base(settings.discord_api_url)
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def api_base(url: str) -> str:
    """Accept a proxy's root ('http://proxy:8080') or a full base ('…/api/v10')."""
    url = url.rstrip("/")
    return url if "/api/v" in url else url + API_VERSION_PATH


class DiscordAdapter:
    def __init__(
        self,
        app: App,
        *,
        shard_ids: list[int] | None = None,
        shard_count: int | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.assistant = app.assistant
        self.shard_ids, self.shard_count = shard_ids, shard_count
        self._client_options = client_options or {}
        self.content_intent = True
        self.ready = asyncio.Event()
        self._blank_in_a_row = 0
        self._noticed = False
        self.client, self.tree, self.platform = self._build(message_content=True)

    # -- composition

    def _build(self, *, message_content: bool) -> tuple[discord.Client, app_commands.CommandTree[Any], DiscordPlatform]:
        intents = discord.Intents.default()
        intents.message_content = message_content  # privileged: the fallback below runs without it
        options: dict[str, Any] = {"intents": intents, "allowed_mentions": NO_PINGS, **self._client_options}
        client: discord.Client
        if self.shard_ids is not None or self.shard_count is not None:
            if self.shard_ids is not None:  # this process runs a range of the shards (one Redis for all)
                options["shard_ids"] = self.shard_ids
            client = discord.AutoShardedClient(shard_count=self.shard_count, **options)
        else:
            client = discord.Client(**options)
        tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
        platform = DiscordPlatform(client)
        self._register(client, tree)
        return client, tree, platform

    def _register(self, client: discord.Client, tree: app_commands.CommandTree[Any]) -> None:
        async def setup_hook() -> None:
            await tree.sync()  # registered on every start: a bulk overwrite is idempotent

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        client.event(self.on_ready)
        client.event(self.on_message)
        client.event(self.on_raw_message_edit)
        client.event(self.on_raw_message_delete)
        client.event(self.on_raw_bulk_message_delete)
        client.event(self.on_thread_create)

        @tree.command(name="faq", description="Turn the questions asked in this channel into an FAQ")
        @app_commands.describe(days="How many days of questions to use (1–365, default 30)")
        async def faq(interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] | None = None) -> None:
            await self.faq(interaction, days)

        @tree.command(name="llmcost", description="What the bot has spent on language models")
        @app_commands.describe(period="today, 7d or 30d (add 'all' for every channel)", share="Show it to the channel")
        async def llmcost(interaction: discord.Interaction, period: str | None = None, share: bool = False) -> None:
            await self.llmcost(interaction, period or "", share)

        @tree.context_menu(name="Summarize")
        async def summarize(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.summarize_command(interaction, message)

    # -- lifecycle

    async def run(self, token: str) -> None:
        """Run until cancelled. Without the Message Content intent Discord refuses the connection (close 4014):
        say so, and reconnect without it so mentions and commands keep working."""
        try:
            try:
                await self.client.start(token)
            except discord.PrivilegedIntentsRequired:
                log.error("Discord refused the Message Content intent. %s", MESSAGE_CONTENT_NOTICE)
                await self.client.close()
                self.content_intent = False
                self.client, self.tree, self.platform = self._build(message_content=False)
                await self.client.start(token)
        finally:
            await self.client.close()

    async def close(self) -> None:
        await self.client.close()

    async def on_ready(self) -> None:
        log.info("discord: connected as %s to %d guild(s)", self.client.user, len(self.client.guilds))
        self.ready.set()
        if not self.content_intent:
            await self._tell_admin_once()

    # -- messages

    def _is_own_or_bot(self, author: discord.abc.User, webhook_id: int | None) -> bool:
        me = self.client.user
        return author.bot or webhook_id is not None or (me is not None and author.id == me.id)

    def _mentions_me(self, message: discord.Message) -> bool:
        # The explicit <@id> only: a reply to one of the bot's messages lists the bot in `mentions` too, and that
        # must not start a summary.
        me = self.client.user
        return me is not None and (f"<@{me.id}>" in message.content or f"<@!{me.id}>" in message.content)

    async def on_message(self, message: discord.Message) -> None:
        if self._is_own_or_bot(message.author, message.webhook_id):
            return
        if not await self.app.store.claims.claim(f"discord:{message.id}", ttl_s=CLAIM_TTL_S):
            return  # a replay after a reconnect, or another process already took it
        if isinstance(message.channel, discord.Thread):
            self.platform.note_thread(message.channel.id)
        mentioned = self._mentions_me(message)
        if not mentioned and await self._content_missing(message):
            return
        chat = to_chat(message)
        await self.assistant.record(chat, mentions_bot=mentioned, link=message.jump_url)
        if mentioned:
            await self._summarize(message, requester=chat, fresh=wants_fresh(chat.text))

    async def _content_missing(self, message: discord.Message) -> bool:
        """True for a blank message that only says the intent is missing; tells the admin after a few in a row."""
        if message.content or message.attachments or message.embeds or message.stickers or message.poll:
            self._blank_in_a_row = 0
            return False
        self._blank_in_a_row += 1
        if not self.content_intent or self._blank_in_a_row >= EMPTY_CONTENT_SIGNS:
            await self._tell_admin_once()
        return True

    async def _tell_admin_once(self) -> None:
        if self._noticed:
            return
        self._noticed = True
        log.error("%s", MESSAGE_CONTENT_NOTICE)
        admin = self.app.settings.admin_channel
        if not admin or not admin.isdigit():
            return
        if not await self.app.store.claims.claim("discord:notice:message-content", ttl_s=NOTICE_TTL_S):
            return  # another process (shard) already said it
        try:
            await self.platform.send(int(admin), MESSAGE_CONTENT_NOTICE)
        except Exception:
            log.exception("could not post the Message Content notice to channel %s", admin)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if "content" not in payload.data or self._is_own_or_bot(message.author, message.webhook_id):
            return  # an embed unfurl, or a bot's edit (the bot's own streaming edits land here too)
        await self.assistant.edited(to_chat(message).ref, message.clean_content)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        channel, thread_id = await self._place(payload.channel_id, payload.guild_id)
        await self.assistant.deleted(MessageRef(channel, str(payload.message_id), thread_id))

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        channel, thread_id = await self._place(payload.channel_id, payload.guild_id)
        for message_id in payload.message_ids:
            await self.assistant.deleted(MessageRef(channel, str(message_id), thread_id))

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.platform.note_thread(thread.id)

    async def _place(self, channel_id: int, guild_id: int | None) -> tuple[ChannelRef, str | None]:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            return ChannelRef(PLATFORM, _workspace(guild_id), str(channel_id)), None
        return place_of(channel, guild_id)

    # -- summaries

    async def _summarize(self, message: discord.Message, *, requester: ChatMessage, fresh: bool) -> None:
        """Thread → the thread; a reply → its reply chain; otherwise the channel's recent conversation."""
        channel, thread_id = place_of(message.channel, message.guild.id if message.guild else None)
        scope = "thread" if thread_id else "channel"
        if thread_id is None and message.reference is not None and message.reference.message_id:
            chain = await self.platform.reply_chain(channel, message.id)
            if len(chain) > 1:
                scope, thread_id = "reply chain", chain[0].ref.message_id
                for m in chain:  # the log then finds the chain under its root, like a thread
                    await self.app.store.messages.add(m)
        mention = Mention(
            message=replace(requester, ref=MessageRef(channel, str(message.id), thread_id)), fresh=fresh
        )
        target = _ReplyHere(
            self.platform, where=message.channel.id, reply_to=message.id, header=scope_header(scope)
        )
        await self.assistant.summarize(mention, target)

    # -- application commands

    def _command(self, interaction: discord.Interaction, name: str, args: str) -> Command:
        if interaction.channel is not None:
            channel, _ = place_of(interaction.channel, interaction.guild_id)
        else:
            channel = ChannelRef(PLATFORM, _workspace(interaction.guild_id), str(interaction.channel_id))
        user = interaction.user
        perms = interaction.permissions
        return Command(
            name=name,
            args=args,
            channel=channel,
            user=str(user.id),
            user_name=user.display_name,
            is_admin=str(user.id) in self.app.settings.admins or perms.administrator or perms.manage_guild,
        )

    async def _claim(self, interaction: discord.Interaction) -> bool:
        return await self.app.store.claims.claim(f"discord:{interaction.id}", ttl_s=CLAIM_TTL_S)

    async def faq(self, interaction: discord.Interaction, days: int | None) -> None:
        if not await self._claim(interaction):
            return
        await interaction.response.defer(thinking=True)  # within 3 s (FACTS.md); the FAQ is for the channel
        command = self._command(interaction, "faq", str(days or ""))
        note = await interaction.followup.send(
            "Writing the FAQ in this channel — it appears below as it is written.", allowed_mentions=NO_PINGS, wait=True
        )
        outcome = await self.assistant.faq(command, self.platform)
        if outcome.refs:
            first = outcome.refs[0]
            link = f"https://discord.com/channels/{first.channel.workspace}/{first.channel.channel}/{first.message_id}"
            await note.edit(content=f"FAQ: {link}" if outcome.ok else f"The FAQ stopped: {link}",
                            allowed_mentions=NO_PINGS)

    async def llmcost(self, interaction: discord.Interaction, period: str, share: bool) -> None:
        if not await self._claim(interaction):
            return
        await interaction.response.defer(ephemeral=not share, thinking=True)  # cost is private unless shared
        report = await self.assistant.spend(self._command(interaction, "llmcost", period))
        if isinstance(report, str):
            await interaction.followup.send(report, ephemeral=not share, allowed_mentions=NO_PINGS)
        else:
            await interaction.followup.send(embed=spend_embed(report), ephemeral=not share, allowed_mentions=NO_PINGS)

    async def summarize_command(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if not await self._claim(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = interaction.user
        requester = replace(
            to_chat(message), author=str(user.id), author_name=user.display_name, text="", is_bot=False
        )
        await interaction.followup.send("Summarizing — the summary is posted as a reply to that message.",
                                        ephemeral=True, allowed_mentions=NO_PINGS)
        await self._summarize(message, requester=requester, fresh=False)


# ---- entry points ----------------------------------------------------------------------------------------------


async def run_discord(app: App, *, shard_ids: list[int] | None, shard_count: int | None) -> None:
    token = app.settings.secret("discord_token")
    if not token:
        raise RuntimeError("DISCORD_TOKEN is not set")
    point_discord_py(app.settings)
    await DiscordAdapter(app, shard_ids=shard_ids, shard_count=shard_count).run(token)


async def doctor(settings: Settings) -> list[tuple[str, str, str]]:
    """Checks the token (GET /users/@me) and whether the Message Content intent is enabled for the application."""
    token = settings.secret("discord_token")
    if not token:
        return [("ok  ", "discord", "not configured (no DISCORD_TOKEN)")]
    base = api_base(settings.discord_api_url or "https://discord.com")
    headers = {"Authorization": f"Bot {token}", "User-Agent": "supportbot doctor"}
    results: list[tuple[str, str, str]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOCTOR_TIMEOUT_S)) as session:
            async with session.get(f"{base}/users/@me", headers=headers) as resp:
                if resp.status == 401:
                    return [("FAIL", "discord", "DISCORD_TOKEN was refused (401): copy the bot token again from "
                                                "the Developer Portal → Bot → Reset Token")]
                if resp.status != 200:
                    return [("FAIL", "discord", f"GET /users/@me answered HTTP {resp.status} ({base})")]
                me = await resp.json()
            results.append(("ok  ", "discord", f"token valid: bot {me.get('username')} ({me.get('id')})"))
            async with session.get(f"{base}/oauth2/applications/@me", headers=headers) as resp:
                flags = int((await resp.json()).get("flags") or 0) if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [("FAIL", "discord", f"{base} unreachable ({type(exc).__name__}): check DISCORD_API_URL")]
    if flags is None:
        results.append(("warn", "discord intents", "could not read the application's flags"))
    elif flags & (FLAG_MESSAGE_CONTENT | FLAG_MESSAGE_CONTENT_LIMITED):
        results.append(("ok  ", "discord intents", "Message Content intent enabled"))
    else:
        results.append(("warn", "discord intents", "Message Content intent off: Developer Portal → Bot → "
                                                   "Privileged Gateway Intents → Message Content Intent"))
    return results
