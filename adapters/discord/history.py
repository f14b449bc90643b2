"""Reading what was said on Discord: a thread (with its starter message), a reply chain, a channel's recent messages.

A thread's id equals its starter message's id, and the starter lives in the parent channel (FACTS.md); outside
threads, a reply chain is the neutral thread, rooted at its first message (discord/neutral.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import cachetools
import discord

from adapters.discord.neutral import guild_of, to_chat
from adapters.discord.pacing import REMEMBERED
from bot.types import ChannelRef, ChatMessage, MessageRef

# History pages hold at most 100 messages (FACTS.md); outside threads the last 200 messages are fetched.
HISTORY_PAGE = 100
RECENT_FETCH = 200
MAX_REPLY_CHAIN = 50  # messages walked up a reply chain before it is treated as long enough


class ChannelHistory:
    """The messages of a thread, a reply chain or a channel, through discord.py's REST client and message cache."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._is_thread: cachetools.LRUCache[int, bool] = cachetools.LRUCache(REMEMBERED)

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

    async def fetch_thread(self, ref: MessageRef, *, since: datetime | None = None) -> list[ChatMessage]:
        """ChatPlatform.fetch_thread: the thread, the reply chain or the channel's recent messages, oldest first."""
        channel = ref.channel
        if ref.thread_id and await self.is_thread(int(ref.thread_id)):
            return await self._thread_history(channel, int(ref.thread_id), since)
        if ref.thread_id:
            chain = await self.reply_chain(channel, int(ref.message_id))
            return [m for m in chain if since is None or m.sent_at > since]
        where = self.client.get_partial_messageable(int(channel.channel), guild_id=guild_of(channel))
        newest_first = [m async for m in where.history(limit=RECENT_FETCH, after=since, oldest_first=False)]
        return [to_chat(m) for m in reversed(newest_first)]

    async def reply_chain(self, channel: ChannelRef, message_id: int) -> list[ChatMessage]:
        """The messages replied to from ``message_id`` up to the chain's first, oldest first, each tagged with the
        first one's id as thread id (the core's thread key for a reply chain)."""
        where = self.client.get_partial_messageable(int(channel.channel), guild_id=guild_of(channel))
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
        thread = self.client.get_partial_messageable(thread_id, guild_id=guild_of(channel))
        messages: list[ChatMessage] = []
        try:  # the starter message lives in the parent channel and has the thread's id
            parent = self.client.get_partial_messageable(int(channel.channel), guild_id=guild_of(channel))
            messages.append(to_chat(await parent.fetch_message(thread_id)))
        except (discord.NotFound, discord.Forbidden):
            pass  # a thread started without a message, or a deleted starter
        async for m in thread.history(limit=None, after=since, oldest_first=True):
            chat = to_chat(m)
            messages.append(replace(chat, ref=MessageRef(channel, chat.ref.message_id, str(thread_id))))
        return [m for m in messages if since is None or m.sent_at > since]
