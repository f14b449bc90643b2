"""Application commands: /faq, /llmcost and the "Summarize" message menu, their registration, and their answers.

Each command is registered for every context Discord offers (``contexts`` and ``integration_types``: guilds, DMs,
private channels; guild and user installs); where the bot is not a channel member, answers go through the
interaction (discord/interaction.py). Discord shows "did not respond" for an interaction unanswered for 3 s
(FACTS.md): every command defers at once, is claimed by its interaction id before any work, and is answered with a
clear line if it fails, if the process is shutting down, or if discord.py could not even parse it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

import aiohttp
import discord
from discord import app_commands

from adapters.discord.intake import claim
from adapters.discord.interaction import InteractionReply, bot_is_in_channel, missing_who_or_where
from adapters.discord.neutral import PLATFORM, place_of, to_chat, workspace_of_guild
from adapters.discord.pins import jump_url
from adapters.discord.platform import NO_PINGS, DiscordPlatform
from adapters.discord.render import scope_header, spend_embed
from bot.app import App
from bot.intake import Intake
from bot.types import ChannelRef, ChatMessage, Command

log = logging.getLogger(__name__)

# https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-response-object-interaction-
# callback-type and #...-messages (message flags): an immediate answer only the person who ran the command sees.
CALLBACK_CHANNEL_MESSAGE = 4
FLAG_EPHEMERAL = 1 << 6
RESTARTING = "I'm restarting — please run the command again in a minute."
FAILED = "Something went wrong on my side and this command stopped. Please run it again in a minute."
UNREADABLE_COMMAND = "Discord sent this command in a form I could not read, so I could not run it. Please try again."
# Where a command may run and who may install it (discord.py sends them as each command's ``contexts`` and
# ``integration_types``): everywhere. Where the bot is not a channel member, answers go through the interaction.
CONTEXTS = {"guilds": True, "dms": True, "private_channels": True}
INSTALLS = {"guilds": True, "users": True}


class SummarizeHere(Protocol):
    """Summarize ``message``'s conversation as a reply to it (discord/intake.py's GatewayEvents.summarize)."""

    def __call__(self, message: discord.Message, *, requester: ChatMessage, fresh: bool | None = None) -> Awaitable[None]:
        ...


class SlashCommands:
    """The application commands of one discord.py client, handed to the intake as neutral work."""

    def __init__(self, app: App, intake: Intake, platform: DiscordPlatform, *, summarize_here: SummarizeHere) -> None:
        self.assistant, self.intake, self.platform = app.assistant, intake, platform
        self._summarize_here = summarize_here

    def register(self, tree: app_commands.CommandTree[Any]) -> None:
        @tree.command(name="faq", description="Turn the questions asked in this channel into an FAQ")
        @app_commands.allowed_contexts(**CONTEXTS)
        @app_commands.allowed_installs(**INSTALLS)
        @app_commands.describe(days="How many days of questions to use (1–365, default 30)")
        async def faq(interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] | None = None) -> None:
            await self.faq(interaction, days)

        @tree.command(name="llmcost", description="What the bot has spent on language models")
        @app_commands.allowed_contexts(**CONTEXTS)
        @app_commands.allowed_installs(**INSTALLS)
        @app_commands.describe(period="today, 7d or 30d (add 'all' for every channel)", share="Show it to the channel")
        async def llmcost(interaction: discord.Interaction, period: str | None = None, share: bool = False) -> None:
            await self.llmcost(interaction, period or "", share)

        @tree.context_menu(name="Summarize")
        @app_commands.allowed_contexts(**CONTEXTS)
        @app_commands.allowed_installs(**INSTALLS)
        async def summarize(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.summarize_command(interaction, message)

    # -- lifecycle

    def unreadable(self, data: dict[str, Any]) -> None:
        """An INTERACTION_CREATE discord.py could not parse (discord/guard.py dropped it): answered all the same."""
        if self.intake.accepting and data.get("id") and data.get("token"):
            self.intake.take(self._answer_unreadable(str(data["id"]), str(data["token"])),
                             name=f"unreadable-{data['id']}", event_id=str(data["id"]),
                             claims=[claim(data["id"])])  # fmt: skip

    async def _answer_unreadable(self, interaction_id: str, token: str) -> None:
        """Answer an interaction discord.py could not parse, within Discord's 3 s, with a clear error."""
        route = discord.http.Route("POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                                   interaction_id=interaction_id, interaction_token=token)
        body = {"type": CALLBACK_CHANNEL_MESSAGE,
                "data": {"content": UNREADABLE_COMMAND, "flags": FLAG_EPHEMERAL, "allowed_mentions": {"parse": []}}}
        try:
            await self.platform.client.http.request(route, json=body)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not answer an unreadable interaction %s: %s", interaction_id, exc)


    def _command(self, interaction: discord.Interaction, name: str, args: str) -> Command:
        if interaction.channel is not None:
            channel, _ = place_of(interaction.channel, interaction.guild_id)
        else:
            channel = ChannelRef(PLATFORM, workspace_of_guild(interaction.guild_id), str(interaction.channel_id))
        user = interaction.user
        perms = interaction.permissions
        return self.intake.command(name, args, channel, str(user.id), user_name=user.display_name,
                                   platform_admin=perms.administrator or perms.manage_guild)  # fmt: skip

    def _accept(self, interaction: discord.Interaction, work: Callable[[], Coroutine[Any, Any, None]], *,
                name: str) -> None:  # fmt: skip
        """Hand an application command to the intake, claimed by its interaction id; while shutting down, answer
        that instead (Discord shows "did not respond" for an interaction unanswered for 3 s, and only this process
        received it). Whatever fails after the defer is answered with FAILED: "thinking…" would otherwise stay on
        screen for 15 minutes."""
        self.intake.take(
            self._resolved(interaction, work, name=name), name=f"{name}-{interaction.id}",
            event_id=str(interaction.id), command=name, claims=[claim(interaction.id)],
            reply_error=lambda text: self._tell(interaction, text), sorry=FAILED,
            declined=lambda: self._tell(interaction, RESTARTING),
        )  # fmt: skip

    async def _resolved(self, interaction: discord.Interaction, work: Callable[[], Coroutine[Any, Any, None]], *,
                        name: str) -> None:  # fmt: skip
        """Run a command whose interaction says who ran it and where; else answer why it cannot run."""
        lacking = missing_who_or_where(interaction)
        if lacking:
            log.warning("discord: /%s interaction %s came without %s", name, interaction.id, lacking)
            await self._tell(interaction, f"Discord did not say {lacking}, so I could not run this command. "
                                          "Please try again.")  # fmt: skip
            return
        await work()

    async def _tell(self, interaction: discord.Interaction, text: str) -> None:
        """An ephemeral line to the person who ran the command, as the answer or after a defer."""
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
            else:
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not tell the user %r: %s", text, exc)

    async def faq(self, interaction: discord.Interaction, days: int | None) -> None:
        self._accept(interaction, lambda: self._faq(interaction, days), name="faq")

    async def _faq(self, interaction: discord.Interaction, days: int | None) -> None:
        await interaction.response.defer(thinking=True)  # within 3 s (FACTS.md); the FAQ is for the channel
        command = self._command(interaction, "faq", str(days or ""))
        if not bot_is_in_channel(interaction):
            # A user install or a group DM: the FAQ streams into the interaction's own follow-ups.
            await self.assistant.faq(command, InteractionReply(interaction))
            return
        if interaction.channel_id is not None:
            self.platform.show_typing(interaction.channel_id)  # where the FAQ's live reply will appear
        note = await interaction.followup.send(
            "Writing the FAQ in this channel — it appears below as it is written.", allowed_mentions=NO_PINGS, wait=True
        )
        outcome = await self.assistant.faq(command, self.platform)
        if outcome.refs:
            first = outcome.refs[0]
            link = jump_url(first.channel.workspace, first.channel.channel, first.message_id)
            await note.edit(content=f"FAQ: {link}" if outcome.ok else f"The FAQ stopped: {link}",
                            allowed_mentions=NO_PINGS)
        else:
            await note.edit(content="The FAQ could not be posted in this channel.", allowed_mentions=NO_PINGS)

    async def llmcost(self, interaction: discord.Interaction, period: str, share: bool) -> None:
        self._accept(interaction, lambda: self._llmcost(interaction, period, share), name="llmcost")

    async def _llmcost(self, interaction: discord.Interaction, period: str, share: bool) -> None:
        share = share or self.intake.shared(period)  # the option, or "share" typed into the period as on Slack
        await interaction.response.defer(ephemeral=not share, thinking=True)  # cost is private unless shared
        report = await self.assistant.spend(self._command(interaction, "llmcost", period))
        if report.refusal:
            await interaction.followup.send(report.refusal, ephemeral=not share, allowed_mentions=NO_PINGS)
        else:
            await interaction.followup.send(embed=spend_embed(report), ephemeral=not share, allowed_mentions=NO_PINGS)

    async def summarize_command(self, interaction: discord.Interaction, message: discord.Message) -> None:
        self._accept(interaction, lambda: self._summarize_command(interaction, message), name="summarize")

    async def _summarize_command(self, interaction: discord.Interaction, message: discord.Message) -> None:
        in_channel = bot_is_in_channel(interaction)
        # Where the bot posts the summary as a reply, the interaction only gets a private note; elsewhere the
        # summary itself is the (visible) answer, as it would be as a reply in the channel.
        await interaction.response.defer(ephemeral=in_channel, thinking=True)
        user = interaction.user
        target = to_chat(message)
        requester = replace(target, author=str(user.id), author_name=user.display_name, text="", is_bot=False)
        if not in_channel:
            # The bot cannot read this channel: what the interaction carried (the message) is what it summarizes.
            mention = self.intake.mention(replace(requester, ref=replace(target.ref, thread_id=target.ref.message_id)),
                                          fresh=False)  # fmt: skip
            await self.assistant.summarize(mention, InteractionReply(interaction, known=[target],
                                                                     header=scope_header("message")))
            return
        await interaction.followup.send("Summarizing — the summary is posted as a reply to that message.",
                                        ephemeral=True, allowed_mentions=NO_PINGS)
        await self._summarize_here(message, requester=requester, fresh=False)

