"""Discord as the background jobs of any Discord process reach it: the orphan janitor finalising a reply a dead
process left half-done, and the scheduled FAQ refresh publishing the channel's FAQ (pinned messages).

Both find it through the janitor's registry (``OrphanJanitor.serve`` / ``.platform``, bot/orphans.py); REST reaches
every guild whatever shard this process runs, so any Discord process can serve any guild's background work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord

from adapters.discord.platform import CONTENT_LIMIT, DiscordPlatform
from adapters.discord.render import SCOPE_HEADERS
from bot.orphans import INTERRUPTED_LINE
from bot.ports import PublishedDocument
from bot.textsplit import safe_prefix_len
from bot.types import ChannelRef, ChatMessage, MessageGone, MessageRef

# A scheduled FAQ refresh that is ready to publish while the client is still logging in (a restart) waits this long
# for the connection before it counts as failed (and is tried again later, bot/faq_schedule.py).
READY_WAIT_S = 60.0


class JanitorPlatform:
    """The ChatPlatform (and DocumentPublisher) the janitor's registry hands out for Discord.

    Edits finalise interrupted replies (bot/orphans.py: finalise). A summary's first message starts with a scope
    line (ReplyTarget adds it; the registry holds only the model's text), so the message is read first and the line
    kept, and the text shortened to fit beside it. The split of a multi-message summary into messages is recomputed
    at the full CONTENT_LIMIT, which is exact for replies without a scope line (the FAQ) and can be off by the
    line's length at a boundary for a summary long enough to need a second message.

    Documents are the channel's pinned FAQ, published as DiscordPlatform publishes them for /faq."""

    def __init__(self, platform: DiscordPlatform) -> None:
        self._platform = platform
        self.limits = platform.limits
        self.pacer = platform.pacer

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        return await self._platform.post(channel, text, thread_id=thread_id)

    async def fetch_thread(self, *args: Any, **kwargs: Any) -> list[ChatMessage]:
        return await self._platform.fetch_thread(*args, **kwargs)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        platform = self._platform
        if not platform.client.is_ready():
            # At start-up the janitor's first sweep can come before the login; the next sweep tries again.
            raise RuntimeError("discord: not connected yet")
        where = await platform.where_is(ref)
        message_id = int(ref.message_id)
        try:
            shown = await platform.client.get_partial_messageable(where).fetch_message(message_id)
            header = next((h for h in SCOPE_HEADERS.values() if h and shown.content.startswith(h)), "")
        except discord.NotFound as exc:
            raise MessageGone(str(exc)) from exc
        except discord.Forbidden:
            header = ""  # it cannot be read back (no Read Message History): the edit may still go through
        await platform.edit_in(where, message_id, header + fit(text, CONTENT_LIMIT - len(header)))

    # -- the scheduled FAQ refresh (bot/faq_schedule.py): DocumentPublisher and message links, as for /faq

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        await self._connected()
        return await self._platform.publish_document(channel, title=title, text=text, previous=previous)

    async def keep_as_document(self, channel: ChannelRef, refs: list[MessageRef], *, title: str) -> PublishedDocument:
        await self._connected()
        return await self._platform.keep_as_document(channel, refs, title=title)

    async def message_link(self, ref: MessageRef) -> str:
        return await self._platform.message_link(ref)

    async def _connected(self) -> None:
        try:
            await asyncio.wait_for(self._platform.client.wait_until_ready(), READY_WAIT_S)
        except TimeoutError as exc:
            raise RuntimeError("discord: not connected yet") from exc


def fit(text: str, limit: int) -> str:
    """``text`` (the janitor's "what was shown, then the interrupted line") within ``limit``: the shown part is
    shortened, the line kept."""
    if len(text) <= limit:
        return text
    line = "\n\n" + INTERRUPTED_LINE
    body = text.removesuffix(line) if text.endswith(line) else text
    room = max(limit - len(line), 0)
    cut = body[: safe_prefix_len(body, room)].rstrip()
    return cut + line if cut else INTERRUPTED_LINE[:limit]

