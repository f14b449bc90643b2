"""Translation at the edge: discord.py's objects and errors → the neutral types bot/ speaks.

Threads are modelled as the neutral thread of their parent channel: ``ChannelRef.channel`` is the parent channel id
and ``MessageRef.thread_id`` the thread's id, which on Discord equals its starter message's id (FACTS.md). Outside a
thread, a reply chain is treated as a thread rooted at its first message (discord/history.py).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import discord

from bot.types import ChannelRef, ChatMessage, MessageGone, MessageRef, MessageTooLong, PlatformRateLimited

PLATFORM = "discord"
# Discord JSON error codes, https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
INVALID_FORM_BODY = 50035  # raised among others for content over 2,000 characters
FALLBACK_RETRY_AFTER_S = 1.0


def workspace_of_guild(guild_id: int | None) -> str:
    return str(guild_id) if guild_id else "dm"


def guild_of(channel: ChannelRef) -> int | None:
    """The guild id of a neutral channel (None in DMs)."""
    return int(channel.workspace) if channel.workspace.isdigit() else None


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


def neutral_error(exc: discord.HTTPException) -> Exception:
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
