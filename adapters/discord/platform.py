"""Discord's side of a ChatPlatform: sending and editing through discord.py, paced by the channel's edit bucket.

DiscordPlatform is what bot/ talks to (post, edit, fetch_thread) plus the Discord-level calls the adapter needs;
ChannelEditPacer decides when an edit may go out; the translation helpers turn discord.py objects into neutral
types. Threads are modelled as the neutral thread of their parent channel: ``ChannelRef.channel`` is the parent
channel id and ``MessageRef.thread_id`` the thread's id, which on Discord equals its starter message's id
(FACTS.md). Outside a thread, a reply chain is treated as a thread rooted at its first message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import cachetools
import discord

from bot.ports import PublishedDocument
from bot.types import (
    ChannelRef,
    ChatMessage,
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
# A reply's first message waits up to this long for the model's first text (PlatformLimits.first_post_grace_s)
# while Discord shows "supportbot is typing…" (show_typing). A first message that carries text saves the edit that
# would replace a placeholder: one of the 5 edits per 5 s a channel's bucket allows (FACTS.md), the budget final
# edits wait for in a busy channel. 0.8 s covers the usual first token — the thread fetch plus a hosted model's
# 0.3–0.6 s to first token, the bench's fake model 0.4 s — and stays under the ~1 s after which a silent wait breaks
# the user's flow (Nielsen's response-time limits); a slower model still gets the placeholder at 0.8 s.
FIRST_POST_GRACE_S = 0.8
# Discord's typing indicator lasts 10 s or until the bot posts in the channel
# (https://discord.com/developers/docs/resources/channel#trigger-typing-indicator); discord.py's own
# ``async with channel.typing()`` re-sends every 5 s, so one request per channel per 5 s is never a gap.
TYPING_REFRESH_S = 5.0
# Edits of one message at most this often: enough to read along, and five such edits fill a channel's observed
# edit bucket (FACTS.md: all edits in one channel share a bucket; 5 per 5 s observed). LiveReply's own floor counts
# from the post as well, but on Discord posts and edits use different buckets, so the floor is kept here, between
# edits, and the limit given to LiveReply is small.
MESSAGE_EDIT_SPACING_S = 1.0
LIVE_REPLY_FLOOR_S = 0.1
# Used only while discord.py has not yet learned a channel's edit bucket from X-RateLimit-* headers.
UNKNOWN_BUCKET_SPACING_S = 1.0
MAX_MESSAGE_EDIT_SPACING_S = 10.0
BUCKET_POLL_S = 0.05  # re-check of a spent bucket whose reset time discord.py does not know yet
# Replies in one channel end at about the same time and each final edit needs a token of the channel's bucket, so an
# in-progress edit goes out only if it leaves one token for every reply still streaming there (itself included).
# Without this, progress edits spend the window and every final waits for the reset (up to 5 s): the whole tail of
# each answer arrives late. A held edit looks again this often (a final landing frees its reserve) ...
RESERVE_POLL_S = 0.25
# ... and in a window's last second the reserve is released: a final then waits at most that long for the reset.
RESERVE_RELEASE_S = 1.0
STREAMING_FORGET_S = 60.0  # a reply silent this long (its process died mid-answer) stops reserving a token
# A message just posted counts as streaming from its post (its reply's first progress edit comes only after
# LiveReply's floor, when another reply may already be asking); one that asks for no edit this long (a notice, or
# a reply posted complete) stops reserving a token.
POSTED_RESERVE_S = 5.0
PACER_FORGET_S = 600.0  # a message not edited for this long is forgotten by the pacer
# One size policy for every per-message / per-channel map: the most recent this many, the rest forgotten.
REMEMBERED = 10_000
# History pages hold at most 100 messages (FACTS.md); outside threads the last 200 messages are fetched.
HISTORY_PAGE = 100
RECENT_FETCH = 200
MAX_REPLY_CHAIN = 50  # messages walked up a reply chain before it is treated as long enough
# Discord JSON error codes, https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
INVALID_FORM_BODY = 50035  # raised among others for content over 2,000 characters
FALLBACK_RETRY_AFTER_S = 1.0
NO_PINGS = discord.AllowedMentions.none()


# ---- pacing ----------------------------------------------------------------------------------------------------


# (edits left in the channel's window, seconds until it resets — inf while no window runs), or None if unknown.
EditBudget = Callable[[int], "tuple[int, float] | None"]


@dataclass
class _Lane:
    """One channel's edit bucket as the pacer sees it."""

    lock: asyncio.Lock  # in-progress edits take turns in order
    last_turn_at: float = float("-inf")
    blocked_until: float = float("-inf")
    streaming: dict[str, float] = field(default_factory=dict)  # message id -> until when it reserves a final token


@dataclass
class _MessagePace:
    next_at: float
    spacing: float
    seen_at: float


class ChannelEditPacer:
    """EditPacer that lets an edit go out only when discord.py's bucket for the channel has room for it.

    discord.py honours Discord's buckets by holding a request until its bucket resets; a held edit carries the text
    of the moment it was made, which is stale by the time it lands. Asking first (``budget``: edits left in the
    channel's window and seconds until it resets, as discord.py learned them from the headers) makes an in-progress
    edit wait *here*, and LiveReply then sends the latest text when the turn comes. In-progress edits of a channel
    take turns in order (asyncio.Lock is FIFO), each message at most every MESSAGE_EDIT_SPACING_S, and only while
    a token stays in reserve for the final edit of every reply streaming in the channel. A final edit
    (``final=True``) carries text that will not change, so queueing in discord.py costs it nothing: it passes
    ahead of all of that and only waits out a 429."""

    def __init__(
        self,
        *,
        budget: EditBudget | None = None,
        lane_of: Callable[[MessageRef], int] | None = None,
        message_spacing_s: float = MESSAGE_EDIT_SPACING_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budget = budget or (lambda channel_id: None)
        self._lane_of = lane_of or _channel_of
        self.message_spacing_s = message_spacing_s
        self._clock, self._sleep = clock, sleep
        self._lanes: dict[int, _Lane] = {}
        self._messages: cachetools.TTLCache[str, _MessagePace] = cachetools.TTLCache(
            REMEMBERED, PACER_FORGET_S, timer=clock
        )

    def _message(self, message_id: str) -> _MessagePace:
        now = self._clock()
        pace = self._messages.get(message_id)
        if pace is None:
            pace = _MessagePace(float("-inf"), self.message_spacing_s, now)
        pace.seen_at = now
        self._messages[message_id] = pace  # re-set: the TTL counts from the last edit
        return pace

    def _lane(self, channel_id: int) -> _Lane:
        lane = self._lanes.get(channel_id)
        if lane is None:
            if len(self._lanes) >= REMEMBERED:  # forget idle lanes (a held lock must stay the channel's one lock)
                now = self._clock()
                self._lanes = {c: k for c, k in self._lanes.items() if k.lock.locked() or k.blocked_until > now
                               or any(until >= now for until in k.streaming.values())}  # fmt: skip
            lane = self._lanes[channel_id] = _Lane(asyncio.Lock())
        return lane

    async def wait_turn(self, ref: MessageRef, *, final: bool) -> None:
        message_id = ref.message_id
        channel_id = self._lane_of(ref)
        lane = self._lane(channel_id)
        if final:
            lane.streaming.pop(message_id, None)  # it needs no token beyond the one it takes now
            while (delay := lane.blocked_until - self._clock()) > 0:
                await self._sleep(delay)
            lane.last_turn_at = self._clock()
            return
        lane.streaming[message_id] = self._clock() + STREAMING_FORGET_S
        pace = self._message(message_id)
        while (delay := pace.next_at - self._clock()) > 0:  # outside the lane: others may go meanwhile
            await self._sleep(delay)
        async with lane.lock:
            while (delay := self._progress_delay(channel_id, lane)) > 0:
                await self._sleep(delay)
                lane.streaming[message_id] = self._clock() + STREAMING_FORGET_S  # still streaming, only held back
            lane.last_turn_at = self._clock()
        pace.spacing = max(self.message_spacing_s, pace.spacing * 0.7)  # back to normal after a penalty
        pace.next_at = self._clock() + pace.spacing

    def _progress_delay(self, channel_id: int, lane: _Lane) -> float:
        now = self._clock()
        if lane.blocked_until > now:
            return lane.blocked_until - now
        budget = self._budget(channel_id)
        if budget is None:  # one edit teaches discord.py the bucket
            return lane.last_turn_at + UNKNOWN_BUCKET_SPACING_S - now
        left, reset_in = budget
        if left <= 0:
            return max(min(reset_in, UNKNOWN_BUCKET_SPACING_S), BUCKET_POLL_S)
        for mid in [m for m, until in lane.streaming.items() if until < now]:
            del lane.streaming[mid]
        if left - 1 >= len(lane.streaming) or reset_in <= RESERVE_RELEASE_S:
            return 0.0
        return max(min(RESERVE_POLL_S, reset_in - RESERVE_RELEASE_S), BUCKET_POLL_S)

    def note_post(self, channel_id: int, message_id: int) -> None:
        """A message was just posted in ``channel_id``: reserve a token for its final edit from now on."""
        lane = self._lane(channel_id)
        now = self._clock()
        for mid in [m for m, until in lane.streaming.items() if until < now]:  # posts that never streamed
            del lane.streaming[mid]
        lane.streaming.setdefault(str(message_id), now + POSTED_RESERVE_S)

    async def penalize(self, ref: MessageRef, retry_after_s: float) -> None:
        pace = self._message(ref.message_id)
        pace.spacing = min(MAX_MESSAGE_EDIT_SPACING_S, pace.spacing * 2)
        lane = self._lane(self._lane_of(ref))
        lane.blocked_until = max(lane.blocked_until, self._clock() + retry_after_s)


def _channel_of(ref: MessageRef) -> int:
    """The channel whose edit bucket an edit of ``ref`` uses, when nothing better is known (a thread has its own)."""
    return int(ref.channel.channel)


# ---- translation at the edge -----------------------------------------------------------------------------------


def workspace_of_guild(guild_id: int | None) -> str:
    return str(guild_id) if guild_id else "dm"


def place_of(channel: Any, guild_id: int | None) -> tuple[ChannelRef, str | None]:
    """(the neutral channel, thread id) of a discord.py channel: a thread belongs to its parent channel."""
    if isinstance(channel, discord.Thread):
        return ChannelRef(PLATFORM, workspace_of_guild(guild_id), str(channel.parent_id)), str(channel.id)
    return ChannelRef(PLATFORM, workspace_of_guild(guild_id), str(channel.id)), None


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
        max_message_chars=CONTENT_LIMIT,
        min_edit_interval_s=LIVE_REPLY_FLOOR_S,
        markup="discord_markdown",
        first_post_grace_s=FIRST_POST_GRACE_S,
    )

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        # Every live reply and the orphan janitor wait their turn here (ChatPlatform.pacer).
        self.pacer = ChannelEditPacer(budget=self.edit_budget, lane_of=self._lane_of)
        self._is_thread: cachetools.LRUCache[int, bool] = cachetools.LRUCache(REMEMBERED)
        # One request per channel and route in flight: discord.py 2.7 counts requests in flight twice when one
        # finishes (Ratelimit.__aexit__: remaining - outgoing), so a burst of 4 on a 5-per-5-s bucket makes it hold a
        # request that already succeeded until the window resets. Serialized, the bucket's whole budget is usable.
        self._in_flight: dict[tuple[str, int], asyncio.Lock] = {}
        # Edits per channel between entering edit_in and returning, whether queued or sent: the pacer counts them
        # against the bucket at once, before discord.py has seen them.
        self._edits_in_hand: dict[int, int] = {}
        # Where each message we posted lives (a thread or a channel), so an edit needs no lookup.
        self._where: cachetools.LRUCache[int, int] = cachetools.LRUCache(REMEMBERED)
        # Typing indicators: when one was last triggered per channel (a post ends it), and the requests in flight.
        self._typing_at: cachetools.TTLCache[int, float] = cachetools.TTLCache(REMEMBERED, TYPING_REFRESH_S)
        self._typing: dict[int, asyncio.Task[None]] = {}

    def _lane_of(self, ref: MessageRef) -> int:
        """The Discord channel whose edit bucket an edit of this message uses (a thread has its own)."""
        message_id = ref.message_id
        where = self._where.get(int(message_id)) if message_id.isdigit() else None
        return where if where is not None else _channel_of(ref)

    def edit_budget(self, channel_id: int) -> tuple[int, float] | None:
        """(edits left, seconds until the window resets; inf while no window runs) of the channel's edit bucket, or
        None before discord.py has seen the bucket's headers. discord.py keeps this in HTTPClient._buckets
        (private): read defensively, and any surprise just means "unknown".

        discord.py takes a token from ``remaining`` when a request starts (``outgoing`` + 1) and gives the count
        back to the headers when it ends, so ``remaining + outgoing`` is the budget before the requests in flight;
        every edit of ours between edit_in's start and end (queued, in flight or just done) is then subtracted
        once, including edits the pacer has just allowed that discord.py has not seen yet."""
        try:
            http: Any = self.client.http
            route = discord.http.Route(
                "PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=channel_id, message_id=0
            )
            bucket_hash = http._bucket_hashes.get(route.key)
            hashed = http._buckets.get(f"{bucket_hash}:{route.major_parameters}") if bucket_hash else None
            # A channel whose first edit went out before discord.py knew the route's bucket hash keeps what its
            # headers taught under the interim key; the hashed bucket only learns on the channel's next edit.
            interim = http._buckets.get(f"{route.key}:{route.major_parameters}")
            learned = [b for b in (hashed, interim) if b is not None and (b.dirty or b.limit > 1)]
            bucket = learned[0] if learned else None
            if bucket is None:
                return None
            now = asyncio.get_running_loop().time()
            in_hand = self._edits_in_hand.get(channel_id, 0)
            if bucket.expires is None:
                return int(bucket.remaining + bucket.outgoing) - in_hand, math.inf
            if now > bucket.expires:  # the window is over: discord.py resets it on the next request
                return int(bucket.limit) - in_hand, math.inf
            return int(bucket.remaining + bucket.outgoing) - in_hand, float(bucket.expires - now)
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

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        where, reply_to = int(channel.channel), None
        if thread_id is not None:
            if await self.is_thread(int(thread_id)):
                where = int(thread_id)
            else:
                reply_to = int(thread_id)  # outside threads the core's "thread" is the message replied to
        message_id = await self.send(where, text, reply_to=reply_to, guild_id=_guild(channel))
        return MessageRef(channel, str(message_id), thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        where = self._where.get(int(ref.message_id))
        if where is None:
            thread = ref.thread_id
            where = int(thread) if thread and await self.is_thread(int(thread)) else int(ref.channel.channel)
        await self.edit_in(where, int(ref.message_id), text)

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        # ``progress`` is not used: Discord pages 100 messages per request, no wait worth telling anyone about.
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
        self._end_typing(where)
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
        self.pacer.note_post(where, sent.id)
        return sent.id

    async def edit_in(self, where: int, message_id: int, text: str) -> None:
        message = self.client.get_partial_messageable(where).get_partial_message(message_id)
        # Counted before the first await: the pacer's next decision already sees this edit (edit_budget).
        self._edits_in_hand[where] = self._edits_in_hand.get(where, 0) + 1
        try:
            async with self._one_at_a_time("edit", where):
                await message.edit(content=text, allowed_mentions=NO_PINGS)
        except discord.RateLimited as exc:
            raise PlatformRateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise _translate(exc) from exc
        finally:
            left = self._edits_in_hand[where] - 1
            if left:
                self._edits_in_hand[where] = left
            else:
                del self._edits_in_hand[where]

    def show_typing(self, where: int) -> None:
        """Discord's "supportbot is typing…" in ``where``, at once, while a reply's first message waits for the
        model's first text (FIRST_POST_GRACE_S). One request in the background; skipped if one was triggered in
        the last TYPING_REFRESH_S and the bot has not posted there since (a post ends the indicator)."""
        now = time.monotonic()
        if now - self._typing_at.get(where, -math.inf) < TYPING_REFRESH_S:
            return
        self._typing_at[where] = now
        task = asyncio.create_task(self._trigger_typing(where), name="discord-typing")
        self._typing[where] = task
        task.add_done_callback(lambda t: self._typing.pop(where, None) if self._typing.get(where) is t else None)

    async def _trigger_typing(self, where: int) -> None:
        try:
            await self.client.get_partial_messageable(where).typing()  # awaited once: POST /channels/{id}/typing
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.debug("typing indicator in %s failed: %s", where, exc)  # cosmetic: the reply goes on without it

    def _end_typing(self, where: int) -> None:
        """A post ends the typing indicator; a typing request still waiting to go out would start it again after
        the message, for 10 s, so it is cancelled."""
        self._typing_at.pop(where, None)
        task = self._typing.pop(where, None)
        if task is not None and not task.done():
            task.cancel()

    def _one_at_a_time(self, route: str, where: int) -> asyncio.Lock:
        lock = self._in_flight.get((route, where))
        if lock is None:
            if len(self._in_flight) >= REMEMBERED:  # forget idle locks (a held one must stay the only one)
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

    # -- the channel's FAQ as pinned messages, and message links (adapters/discord/pins.py)

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        from adapters.discord.pins import publish_pinned

        return await publish_pinned(self, channel, title=title, text=text, previous=previous)

    async def keep_as_document(self, channel: ChannelRef, refs: list[MessageRef], *, title: str) -> PublishedDocument:
        from adapters.discord.pins import keep_pinned

        return await keep_pinned(self, channel, refs, title=title)

    async def message_link(self, ref: MessageRef) -> str:
        from adapters.discord.pins import message_link

        return await message_link(self, ref)


def _guild(channel: ChannelRef) -> int | None:
    return int(channel.workspace) if channel.workspace.isdigit() else None


class ReplyHere:
    """The platform as one summary sees it: every message goes to ``where`` (the thread or channel of the
    request), the first one as a reply to the request, headed by a line that says what was summarized."""

    def __init__(self, platform: DiscordPlatform, *, where: int, reply_to: int | None, header: str) -> None:
        self._platform, self._where, self._reply_to, self._header = platform, where, reply_to, header
        self._first: str | None = None
        self.pacer = platform.pacer  # one pacer per channel, whichever reply edits there
        base = platform.limits
        self.limits = replace(base, max_message_chars=base.max_message_chars - len(header))

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        first = self._first is None
        shown = self._header + text if first else text
        reply_to = self._reply_to if first else None
        message_id = await self._platform.send(self._where, shown, reply_to=reply_to, guild_id=_guild(channel))
        if first:
            self._first = str(message_id)
        return MessageRef(channel, str(message_id), thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        shown = self._header + text if ref.message_id == self._first else text
        await self._platform.edit_in(self._where, int(ref.message_id), shown)

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        return await self._platform.fetch_thread(ref, since=since, progress=progress)


