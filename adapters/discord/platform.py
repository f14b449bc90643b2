"""Discord's side of a ChatPlatform: sending and editing through discord.py, paced by the channel's edit bucket.

DiscordPlatform is what bot/ talks to (post, edit, fetch_thread, and the channel's FAQ as pinned messages) plus the
Discord-level calls the adapter needs (send, edit_in, show_typing). When an edit may go out is discord/pacing.py's
job; reading threads and reply chains, discord/history.py's; translating discord.py's objects and errors,
discord/neutral.py's. ReplyTarget is the platform as one summary sees it: a reply to the request, with a scope line.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import aiohttp
import cachetools
import discord

from adapters.discord import pins
from adapters.discord.history import ChannelHistory
from adapters.discord.neutral import guild_of, neutral_error
from adapters.discord.pacing import REMEMBERED, ChannelEditPacer, EditBuckets, channel_of
from bot.ports import PublishedDocument
from bot.types import ChannelRef, ChatMessage, MessageRef, PlatformLimits, PlatformRateLimited

log = logging.getLogger(__name__)

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
# LiveReply's own floor between edits is small: the pacer keeps each message's edits MESSAGE_EDIT_SPACING_S apart
# (discord/pacing.py), counted between edits, because on Discord posts and edits use different buckets.
LIVE_REPLY_FLOOR_S = 0.1
NO_PINGS = discord.AllowedMentions.none()


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
        self.history = ChannelHistory(client)
        self.edit_buckets = EditBuckets(client)
        # Every live reply and the orphan janitor wait their turn here (ChatPlatform.pacer).
        self.pacer = ChannelEditPacer(budget=self.edit_buckets.budget, lane_of=self._lane_of)
        # One request per channel and route in flight: discord.py 2.7 counts requests in flight twice when one
        # finishes (Ratelimit.__aexit__: remaining - outgoing), so a burst of 4 on a 5-per-5-s bucket makes it hold a
        # request that already succeeded until the window resets. Serialized, the bucket's whole budget is usable.
        self._in_flight: dict[tuple[str, int], asyncio.Lock] = {}
        # Where each message we posted lives (a thread or a channel), so an edit needs no lookup.
        self._where: cachetools.LRUCache[int, int] = cachetools.LRUCache(REMEMBERED)
        # Typing indicators: when one was last triggered per channel (a post ends it), and the requests in flight.
        self._typing_at: cachetools.TTLCache[int, float] = cachetools.TTLCache(REMEMBERED, TYPING_REFRESH_S)
        self._typing: dict[int, asyncio.Task[None]] = {}

    def _lane_of(self, ref: MessageRef) -> int:
        """The Discord channel whose edit bucket an edit of this message uses (a thread has its own)."""
        message_id = ref.message_id
        where = self._where.get(int(message_id)) if message_id.isdigit() else None
        return where if where is not None else channel_of(ref)

    def note_thread(self, thread_id: int) -> None:
        self.history.note_thread(thread_id)

    async def is_thread(self, channel_id: int) -> bool:
        return await self.history.is_thread(channel_id)

    async def where_is(self, ref: MessageRef) -> int:
        """The Discord channel a message lives in: its thread, else its channel."""
        thread = ref.thread_id
        return int(thread) if thread and await self.is_thread(int(thread)) else int(ref.channel.channel)

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
        message_id = await self.send(where, text, reply_to=reply_to, guild_id=guild_of(channel))
        return MessageRef(channel, str(message_id), thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        where = self._where.get(int(ref.message_id))
        if where is None:
            where = await self.where_is(ref)
        await self.edit_in(where, int(ref.message_id), text)

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        # ``progress`` is not used: Discord pages 100 messages per request, no wait worth telling anyone about.
        return await self.history.fetch_thread(ref, since=since)

    # -- the channel's FAQ as pinned messages, and message links (DocumentPublisher, discord/pins.py)

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        return await pins.publish_pinned(self, channel, title=title, text=text, previous=previous)

    async def keep_as_document(self, channel: ChannelRef, refs: list[MessageRef], *, title: str) -> PublishedDocument:
        return await pins.keep_pinned(self, channel, refs, title=title)

    async def message_link(self, ref: MessageRef) -> str:
        return pins.jump_url(ref.channel.workspace, await self.where_is(ref), ref.message_id)

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
            raise neutral_error(exc) from exc
        self._where[sent.id] = where
        self.pacer.note_post(where, sent.id)
        return sent.id

    async def edit_in(self, where: int, message_id: int, text: str) -> None:
        message = self.client.get_partial_messageable(where).get_partial_message(message_id)
        # Counted before the first await: the pacer's next decision already sees this edit (EditBuckets.budget).
        with self.edit_buckets.in_hand(where):
            try:
                async with self._one_at_a_time("edit", where):
                    await message.edit(content=text, allowed_mentions=NO_PINGS)
            except discord.RateLimited as exc:
                raise PlatformRateLimited(exc.retry_after) from exc
            except discord.HTTPException as exc:
                raise neutral_error(exc) from exc

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


class ReplyTarget:
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
        message_id = await self._platform.send(self._where, shown, reply_to=reply_to, guild_id=guild_of(channel))
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


