"""Application commands in every context Discord offers: where the bot can post, and how to answer where it cannot.

Discord runs a command in a guild channel, in the bot's DM, or in a private channel (a group DM or a DM between
two other people), from a guild install or a user install
(https://discord.com/developers/docs/interactions/application-commands#interaction-contexts). The bot is a member of
the channel only in a guild that installed it and in its own DM; elsewhere (a user install used in a server without
the bot, a group DM) Discord refuses the channel endpoints, and the only way to answer is the interaction's own
follow-ups, which need no channel access. InteractionReply is that way, as a ChatPlatform, so a live reply (the
FAQ, a summary) streams through follow-up edits there exactly as it streams through message edits elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import discord

from adapters.discord.neutral import neutral_error
from adapters.discord.pacing import ChannelEditPacer
from adapters.discord.platform import NO_PINGS, DiscordPlatform
from bot.types import ChannelRef, ChatMessage, MessageRef, PlatformRateLimited

log = logging.getLogger(__name__)

# Application integration types, https://discord.com/developers/docs/resources/application#application-object-
# application-integration-types: the key in an interaction's ``authorizing_integration_owners``.
GUILD_INSTALL = 0


def bot_is_in_channel(interaction: discord.Interaction) -> bool:
    """Whether the channel endpoints reach the interaction's channel (else: answer through follow-ups only)."""
    context = interaction.context
    if context.private_channel:
        return False  # a group DM or someone else's DM: the bot is never a member
    if interaction.guild_id is None:
        return True  # the bot's own DM (context 1, or a payload from before contexts existed)
    # discord.py keeps the owners only privately (Interaction._integration_owners); a payload without them comes
    # from before user installs existed, when a command in a guild meant the guild had installed the bot.
    owners: dict[int, int] = getattr(interaction, "_integration_owners", None) or {}
    return not owners or owners.get(GUILD_INSTALL) == interaction.guild_id


class InteractionReply:
    """ChatPlatform over one interaction's follow-ups: posts are follow-ups, edits edit them. Discord allows a
    user-installed app that the server did not install 5 follow-ups per interaction
    (https://discord.com/developers/docs/interactions/receiving-and-responding#followup-messages): a live reply's
    continuation messages count, so an answer longer than 5 × 2,000 characters is cut off there.

    ``known`` is what the interaction itself carried (the target message of a context-menu command): where the bot
    cannot read the channel's history, that is the whole thread it can summarize."""

    def __init__(self, interaction: discord.Interaction, *, known: list[ChatMessage] | None = None,
                 header: str = "") -> None:
        self._interaction = interaction
        self._known = known or []
        self._header = header
        self._first: str | None = None
        base = DiscordPlatform.limits
        self.limits = replace(base, max_message_chars=base.max_message_chars - len(header))
        # Follow-up edits go to the webhook route (PATCH /webhooks/{app}/{token}/messages/{id}), one bucket per
        # interaction token that discord.py learns from the headers; the pacer spaces them until it knows more.
        self.pacer = ChannelEditPacer()

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        first = self._first is None
        shown = self._header + text if first else text
        try:
            sent = await self._interaction.followup.send(shown, wait=True, allowed_mentions=NO_PINGS)
        except discord.RateLimited as exc:
            raise PlatformRateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise neutral_error(exc) from exc
        if first:
            self._first = str(sent.id)
        return MessageRef(channel, str(sent.id), thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        shown = self._header + text if ref.message_id == self._first else text
        try:
            await self._interaction.followup.edit_message(int(ref.message_id), content=shown,
                                                          allowed_mentions=NO_PINGS)
        except discord.RateLimited as exc:
            raise PlatformRateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise neutral_error(exc) from exc

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        return [m for m in self._known if since is None or m.sent_at > since]


def missing_who_or_where(interaction: discord.Interaction) -> str:
    """What the interaction lacks to run a command ('' when it has both): Discord documents ``user`` or
    ``member`` and ``channel`` as present for commands, but a payload without them must still get an answer."""
    user: Any = getattr(interaction, "user", None)
    if user is None or user is discord.utils.MISSING or getattr(user, "id", None) is None:
        return "who ran it"
    if interaction.channel is None:
        return "which channel it was run in"
    return ""
