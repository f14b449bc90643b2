"""The channel's FAQ as a set of pinned Discord messages, edited in place on refresh, and links to messages.

A message holds 2,000 characters (FACTS.md), so the FAQ is split into as many messages as it needs; a refresh
edits them in order, posts (and pins) more when the FAQ grew and deletes the extras when it shrank. Pinning needs
the Pin Messages permission (Manage Messages before 2026); without it the FAQ stays in the reply and the reply says
why. Messages someone deleted are posted again.
"""

from __future__ import annotations

import logging
from typing import Protocol

import discord

from bot.ports import PublishedDocument
from bot.safety import defang_mass_mentions
from bot.textsplit import split_message
from bot.types import ChannelRef, MessageGone, MessageRef, PlatformLimits

log = logging.getLogger(__name__)

JUMP_URL = "https://discord.com/channels/{guild}/{channel}/{message}"  # a message's link, as Message.jump_url
# Pins per channel: 250 since 2025 (50 before); one FAQ of 40 entries needs a handful of messages.
MAX_FAQ_MESSAGES = 10
PINNED_PLACE = "the pinned messages of this channel"


class ChannelMessages(Protocol):
    """What pinning needs of the platform (discord/platform.py's DiscordPlatform, which calls in here)."""

    client: discord.Client

    @property
    def limits(self) -> PlatformLimits: ...

    async def send(self, where: int, text: str, *, reply_to: int | None = None, guild_id: int | None = None) -> int: ...

    async def edit_in(self, where: int, message_id: int, text: str) -> None: ...


def jump_url(guild: str, channel: str | int, message: str | int) -> str:
    return JUMP_URL.format(guild=guild if guild.isdigit() else "@me", channel=channel, message=message)


async def publish_pinned(
    platform: ChannelMessages, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
) -> PublishedDocument:
    where = int(channel.channel)
    limit = platform.limits.max_message_chars
    parts = split_message(defang_mass_mentions(text), limit)[:MAX_FAQ_MESSAGES]
    old = [int(i) for i in previous.get("messages", "").split(",") if i.isdigit()]
    if not old:  # the first FAQ is the reply itself, pinned afterwards (keep_pinned): no second copy
        return PublishedDocument("reply", {})
    ids: list[int] = []
    try:
        for k, part in enumerate(parts):
            if k < len(old):
                try:
                    await platform.edit_in(where, old[k], part)
                    ids.append(old[k])
                    continue
                except MessageGone:
                    pass  # deleted by someone: post it again below
            message_id = await platform.send(where, part)
            ids.append(message_id)
            await platform.client.http.pin_message(
                where, message_id, reason=f"{title}, kept up to date by the bot"
            )
        for stale in old[len(parts) :]:
            try:
                await platform.client.http.delete_message(where, stale, reason=f"{title} got shorter")
            except (discord.NotFound, discord.Forbidden):
                pass
    except discord.Forbidden as exc:
        log.info("cannot pin the FAQ in %s: %s", channel.key, exc)
        for posted in (i for i in ids if i not in old):  # nothing half-published is left behind
            try:
                await platform.client.http.delete_message(where, posted)
            except discord.HTTPException:
                pass
        return PublishedDocument(
            "message", {}, note="the bot may not pin messages here (Pin Messages permission)"
        )
    handle = {"messages": ",".join(str(i) for i in ids)}
    return PublishedDocument(
        "pinned messages", handle, link=jump_url(channel.workspace, where, ids[0]), place=PINNED_PLACE
    )


async def keep_pinned(
    platform: ChannelMessages, channel: ChannelRef, refs: list[MessageRef], *, title: str
) -> PublishedDocument:
    """Pin the messages of the reply that carried the FAQ; they are the document from now on."""
    where = int(channel.channel)
    ids = [int(r.message_id) for r in refs][:MAX_FAQ_MESSAGES]
    try:
        for message_id in ids:
            await platform.client.http.pin_message(
                where, message_id, reason=f"{title}, kept up to date by the bot"
            )
    except discord.Forbidden as exc:
        log.info("cannot pin the FAQ in %s: %s", channel.key, exc)
        return PublishedDocument(
            "message", {}, note="the bot may not pin messages here (Pin Messages permission)"
        )
    return PublishedDocument(
        "pinned messages",
        {"messages": ",".join(map(str, ids))},
        link=jump_url(channel.workspace, where, ids[0]),
        place=PINNED_PLACE,
    )
