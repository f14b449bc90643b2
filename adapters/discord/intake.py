"""Discord through discord.py: events in, neutral calls to the Assistant, replies out.

The adapter (gateway events, application commands, the missing-intent notice) and the entry points (run, doctor).
Sending, editing, pacing and translating discord.py objects into neutral types live in discord/platform.py; how
replies look, in discord/render.py. Threads and reply chains map onto the neutral thread as discord/platform.py
describes.

Many processes (shards, or replicas during a rolling update) share one store: every message and interaction is
claimed there before any work (the keys are named here, the intake in bot/intake.py claims them), so a replayed or
doubly delivered event gets one reply. Each event's work runs as the intake's tracked work, so on SIGTERM the
adapter stops taking events, lets replies in flight finish for settings.shutdown_grace_s and only then closes the
client. A reply cut off there — or by a crash — stays in the store's registry, and the orphan janitor of any Discord
process finalises it through ``DiscordAdapter.finisher``. A mention or command that fails gets the intake's short
error reply, never silence.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord.guard import guard_parsers, log_dropped
from adapters.discord.interaction import (
    InteractionReply,
    bot_is_in_channel,
    message_link,
    missing_who_or_where,
)
from adapters.discord.platform import (
    CONTENT_LIMIT,
    NO_PINGS,
    PLATFORM,
    DiscordPlatform,
    ReplyHere,
    place_of,
    to_chat,
    workspace_of_guild,
)
from adapters.discord.render import MESSAGE_CONTENT_NOTICE, SCOPE_HEADERS, scope_header, spend_embed
from bot.app import App
from bot.intake import Claim, ErrorReply, Intake
from bot.orphans import INTERRUPTED_LINE
from bot.settings import Settings
from bot.textsplit import safe_prefix_len
from bot.types import ChannelRef, ChatMessage, Command, MessageGone, MessageRef

log = logging.getLogger(__name__)

CLAIM_TTL_S = 3600.0  # a replayed event (reconnect, a second shard process) is dropped for this long
NOTICE_TTL_S = 24 * 3600.0  # the missing-intent notice is repeated at most once a day (across processes)
EMPTY_CONTENT_SIGNS = 3  # blank non-mention messages in a row that show the Message Content intent is missing
DOCTOR_TIMEOUT_S = 10.0
API_VERSION_PATH = "/api/v10"
# Application flags, https://discord.com/developers/docs/resources/application#application-object-application-flags
FLAG_MESSAGE_CONTENT = 1 << 18
FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19
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
# Message types people write, https://discord.com/developers/docs/resources/message#message-object-message-types:
# only these can be evidence that content is withheld; system messages (joins, pins, boosts) are blank by nature.
CONVERSATION_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# The gateway event behind each of our handlers, for the one log line of a dispatch our translation could not take.
EVENT_OF_HANDLER = {
    "on_message": "MESSAGE_CREATE", "on_raw_message_edit": "MESSAGE_UPDATE", "on_raw_message_delete": "MESSAGE_DELETE",
    "on_raw_bulk_message_delete": "MESSAGE_DELETE_BULK", "on_thread_create": "THREAD_CREATE", "on_ready": "READY",
}


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
        self._failures_seen: set[tuple[str, str]] = set()
        self.intake = Intake(app, platform=PLATFORM)
        self.client, self.tree, self.platform = self._build(message_content=True)
        if app.janitor is not None:
            app.janitor.serve(PLATFORM, self.finisher)

    @property
    def accepting(self) -> bool:
        """False from shutdown on: events are left alone (not claimed) and commands declined."""
        return self.intake.accepting

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
        guard_parsers(client, on_dropped=self._dropped)  # no payload can stop the process (discord/guard.py)
        tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
        platform = DiscordPlatform(client)
        self._register(client, tree)
        return client, tree, platform

    def _register(self, client: discord.Client, tree: app_commands.CommandTree[Any]) -> None:
        async def setup_hook() -> None:
            await tree.sync()  # registered on every start: a bulk overwrite is idempotent

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        client.event(self.on_error)
        client.event(self.on_ready)
        client.event(self.on_message)
        client.event(self.on_raw_message_edit)
        client.event(self.on_raw_message_delete)
        client.event(self.on_raw_bulk_message_delete)
        client.event(self.on_thread_create)

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

    async def serve(self, token: str, *, stop: asyncio.Event, grace_s: float) -> None:
        """Run until ``stop`` (SIGTERM), then shut down gracefully; a client that ends by itself (a bad token, say)
        ends this too, with its error."""
        running = asyncio.create_task(self.run(token), name="discord-client")
        stopping = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.shutdown(grace_s=grace_s)
            await asyncio.gather(running, stopping, return_exceptions=True)
        if not running.cancelled() and running.exception() is not None:
            raise running.exception()  # type: ignore[misc]

    async def shutdown(self, *, grace_s: float) -> int:
        """Stop taking events, let the work in flight finish for up to ``grace_s``, then close the client (the
        gateway and the REST session). Returns how many pieces of work were cut off."""
        try:
            return await self.drain(grace_s=grace_s)
        finally:
            await self.client.close()

    async def on_ready(self) -> None:
        log.info("discord: connected as %s to %d guild(s)", self.client.user, len(self.client.guilds))
        self.ready.set()
        if not self.content_intent:
            await self._tell_admin_once()

    # -- dispatches that did not parse

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """A handler of ours raised on an event discord.py did parse (a message with no author, say): the same one
        line as a dispatch that did not parse, instead of discord.py's traceback per event."""
        error = sys.exc_info()[1] or RuntimeError("unknown error")
        event = EVENT_OF_HANDLER.get(event_method, event_method)
        log_dropped(event, error, seen=self._failures_seen, stage="could not be handled")

    def _dropped(self, event: str, data: Any, exc: Exception) -> None:
        """What is still owed for a dispatch discord/guard.py dropped (it has already logged it)."""
        if not isinstance(data, dict) or not self.accepting:
            return
        if event == "INTERACTION_CREATE" and data.get("id") and data.get("token"):
            self.intake.take(self._answer_unreadable(str(data["id"]), str(data["token"])),
                             name=f"unreadable-{data['id']}", event_id=str(data["id"]),
                             claims=[_claim(data["id"])])  # fmt: skip
        elif event == "MESSAGE_UPDATE" and isinstance(data.get("content"), str) and data.get("id"):
            # A partial update (documented until 2024: no type, no author) that still says what the text is now:
            # the message log keeps it, as it would a parsed edit. Bots' edits are left alone as in on_raw_message_edit.
            raw_author = data.get("author")
            author: dict[str, Any] = raw_author if isinstance(raw_author, dict) else {}
            me = self.client.user
            if author.get("bot") or data.get("webhook_id") or (me is not None and str(author.get("id")) == str(me.id)):
                return
            self.intake.take(self._raw_edit(data), name=f"raw-edit-{data['id']}", event_id=f"edit-{data['id']}")

    async def _answer_unreadable(self, interaction_id: str, token: str) -> None:
        """Answer an interaction discord.py could not parse, within Discord's 3 s, with a clear error."""
        route = discord.http.Route("POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                                   interaction_id=interaction_id, interaction_token=token)
        body = {"type": CALLBACK_CHANNEL_MESSAGE,
                "data": {"content": UNREADABLE_COMMAND, "flags": FLAG_EPHEMERAL, "allowed_mentions": {"parse": []}}}
        try:
            await self.client.http.request(route, json=body)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("could not answer an unreadable interaction %s: %s", interaction_id, exc)

    async def _raw_edit(self, data: dict[str, Any]) -> None:
        try:
            channel_id, message_id = int(data["channel_id"]), int(data["id"])
            guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        except (KeyError, TypeError, ValueError):
            return  # not even an address: nothing to keep
        channel, thread_id = await self._place(channel_id, guild_id)
        await self.assistant.edited(MessageRef(channel, str(message_id), thread_id), str(data["content"]))

    # -- work in flight

    async def idle(self) -> None:
        await self.intake.idle()

    async def drain(self, *, grace_s: float) -> int:
        return await self.intake.drain(grace_s=grace_s)

    def finisher(self, workspace: str) -> Finisher:
        """The janitor's way to this process's Discord (bot/orphans.py): REST reaches every guild whatever shard
        this process runs, so any Discord process can finalise any guild's interrupted reply."""
        return Finisher(self.platform)

    # -- messages

    def _is_own_or_bot(self, author: discord.abc.User, webhook_id: int | None) -> bool:
        me = self.client.user
        return author.bot or webhook_id is not None or (me is not None and author.id == me.id)

    def _addressed(self, message: discord.Message) -> bool:
        """Whether the message asks the bot for a summary. Counted: ``<@bot>`` or ``<@!bot>`` in the text; a
        mention of the bot's managed role (``<@&role>``, which Discord's autocomplete offers beside the bot, as the
        role carries the bot's name); and a reply to one of the bot's messages with the reply ping left on (Discord's
        default; Discord then lists the bot in ``mentions``). A reply with the ping turned off does not count, so
        people can answer the bot without summoning it."""
        me = self.client.user
        if me is None:
            return False
        content = message.content
        if f"<@{me.id}>" in content or f"<@!{me.id}>" in content:
            return True
        role = message.guild.self_role if message.guild is not None else None
        if role is not None and (role.id in message.raw_role_mentions
                                 or any(r.id == role.id for r in message.role_mentions)):
            return True  # role_mentions comes from mention_roles, which Discord sends even without content
        return message.reference is not None and self._replies_to_me(message, me.id)

    def _replies_to_me(self, message: discord.Message, me: int) -> bool:
        if not any(u.id == me for u in message.mentions):
            return False  # the ping was turned off (or it is someone else's message)
        replied = message.reference.resolved if message.reference is not None else None
        if isinstance(replied, discord.Message):
            return replied.author.id == me
        # Discord omits referenced_message at times (deep chains, a deleted message): without <@bot> in the text, the
        # bot can only be in `mentions` as the author pinged by the reply.
        return True

    async def on_message(self, message: discord.Message) -> None:
        if not self.accepting or self._is_own_or_bot(message.author, message.webhook_id):
            return  # shutting down: not claimed, so the event is not marked handled
        # Claimed first: a replay after a reconnect, or another process already took it.
        self.intake.take(self._message(message), name=f"message-{message.id}", event_id=str(message.id),
                         claims=[_claim(message.id)], reply_error=self._sorry_if_addressed(message))  # fmt: skip

    def _sorry_if_addressed(self, message: discord.Message) -> ErrorReply:
        """The intake's error reply for a message: a reply to it when it asked the bot (a mention whose reading
        failed gets an answer, not silence); nothing for the messages the bot only keeps."""

        async def reply(text: str) -> None:
            try:
                addressed = self._addressed(message)
            except Exception:
                addressed = False  # not even readable as a mention: nobody to answer
            if addressed:
                guild_id = message.guild.id if message.guild is not None else None
                await self.platform.send(message.channel.id, text, reply_to=message.id, guild_id=guild_id)

        return reply

    async def _message(self, message: discord.Message) -> None:
        if isinstance(message.channel, discord.Thread):
            self.platform.note_thread(message.channel.id)
        if message.type not in CONVERSATION_TYPES:
            return  # a member join, a pin, a boost: nobody said anything, and blank by nature (no intent evidence)
        mentioned = self._addressed(message)
        if not mentioned and await self._content_missing(message):
            return
        chat = to_chat(message, thread_id=await self._reply_root(message))
        await self.assistant.record(chat, mentions_bot=mentioned, link=message.jump_url)
        if mentioned:
            await self._summarize(message, requester=chat)

    async def _reply_root(self, message: discord.Message) -> str | None:
        """A reply outside a thread belongs to its reply chain as a thread reply belongs to its thread (so /faq
        finds the answers people gave by replying to a question): the chain's root as far as it is known — the
        replied-to message's own root, else that message. None for thread messages, forwards and other channels."""
        ref = message.reference
        if isinstance(message.channel, discord.Thread) or ref is None or ref.message_id is None:
            return None
        if ref.type is not discord.MessageReferenceType.reply or ref.channel_id != message.channel.id:
            return None
        channel, _ = place_of(message.channel, message.guild.id if message.guild else None)
        parent_id = str(ref.message_id)
        try:
            known = await self.app.store.messages.thread(channel, parent_id)
        except Exception:  # the log is unreachable: the replied-to message is the best root known
            log.warning("could not read the reply chain of %s", parent_id, exc_info=True)
            return parent_id
        parent = next((m for m in known if m.ref.message_id == parent_id), None)
        if parent is not None:
            return parent.ref.thread_id or parent_id
        # Not recorded yet (its event is still being handled): Discord sent the replied-to message along, with
        # its own reference — one level up, enough for a question, its answer and the thanks.
        resolved = ref.resolved
        above = resolved.reference if isinstance(resolved, discord.Message) else None
        if above is not None and above.message_id is not None and above.type is discord.MessageReferenceType.reply:
            return str(above.message_id)
        return parent_id

    async def _content_missing(self, message: discord.Message) -> bool:
        """True for a blank message (not kept: there is nothing to read). Called for people's ordinary messages and
        replies only (bots, webhooks and system messages never get here): one of those that is blank with nothing
        attached is evidence that the Message Content intent is off; the admin is told after a few in a row."""
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
        if not self.accepting or "content" not in payload.data:
            return  # shutting down, or an embed unfurl
        if self._is_own_or_bot(message.author, message.webhook_id):
            return  # a bot's edit (the bot's own streaming edits land here too)
        work = self.assistant.edited(to_chat(message).ref, message.clean_content)
        self.intake.take(work, name=f"edit-{message.id}", event_id=f"edit-{message.id}")

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if self.accepting:
            self.intake.take(self._deleted(payload.channel_id, payload.guild_id, [payload.message_id]),
                             name=f"delete-{payload.message_id}", event_id=f"delete-{payload.message_id}")

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if self.accepting:
            self.intake.take(self._deleted(payload.channel_id, payload.guild_id, sorted(payload.message_ids)),
                             name=f"bulk-delete-{payload.channel_id}", event_id=f"bulk-delete-{payload.channel_id}")

    async def _deleted(self, channel_id: int, guild_id: int | None, message_ids: list[int]) -> None:
        channel, thread_id = await self._place(channel_id, guild_id)
        for message_id in message_ids:
            await self.assistant.deleted(MessageRef(channel, str(message_id), thread_id))

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.platform.note_thread(thread.id)

    async def _place(self, channel_id: int, guild_id: int | None) -> tuple[ChannelRef, str | None]:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            return ChannelRef(PLATFORM, workspace_of_guild(guild_id), str(channel_id)), None
        return place_of(channel, guild_id)

    # -- summaries

    async def _summarize(self, message: discord.Message, *, requester: ChatMessage, fresh: bool | None = None) -> None:
        """Thread → the thread; a reply → its reply chain; otherwise the channel's recent conversation."""
        # At once: the reply's first message waits for the model's first text (FIRST_POST_GRACE_S).
        self.platform.show_typing(message.channel.id)
        channel, thread_id = place_of(message.channel, message.guild.id if message.guild else None)
        scope = "thread" if thread_id else "channel"
        if thread_id is None and message.reference is not None and message.reference.message_id:
            chain = await self.platform.reply_chain(channel, message.id)
            if len(chain) > 1:
                scope, thread_id = "reply chain", chain[0].ref.message_id
                for m in chain:  # the log then finds the chain under its root, like a thread
                    await self.app.store.messages.add(m)
        mention = self.intake.mention(replace(requester, ref=MessageRef(channel, str(message.id), thread_id)),
                                      fresh=fresh)  # fmt: skip
        target = ReplyHere(
            self.platform, where=message.channel.id, reply_to=message.id, header=scope_header(scope)
        )
        await self.assistant.summarize(mention, target)

    # -- application commands

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
            event_id=str(interaction.id), command=name, claims=[_claim(interaction.id)],
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
            link = message_link(first.channel.workspace, first.channel.channel, first.message_id)
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
        await self._summarize(message, requester=requester, fresh=False)


def _claim(event_id: object) -> Claim:
    """A message's or an interaction's id (snowflakes: unique across both), claimed before any work on it."""
    return Claim(f"discord:{event_id}", CLAIM_TTL_S)


# ---- finalising interrupted replies ----------------------------------------------------------------------------


class Finisher:
    """What the orphan janitor edits an interrupted Discord reply through (bot/orphans.py: finalise).

    A summary's first message starts with a scope line (ReplyHere adds it; the registry holds only the model's
    text), so the message is read first and the line kept, and the text shortened to fit beside it. The split of a
    multi-message summary into messages is recomputed at the full CONTENT_LIMIT, which is exact for replies without
    a scope line (the FAQ) and can be off by the line's length at a boundary for a summary long enough to need a
    second message."""

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
        thread = ref.thread_id
        where = int(thread) if thread and await platform.is_thread(int(thread)) else int(ref.channel.channel)
        message_id = int(ref.message_id)
        try:
            shown = await platform.client.get_partial_messageable(where).fetch_message(message_id)
            header = next((h for h in SCOPE_HEADERS.values() if h and shown.content.startswith(h)), "")
        except discord.NotFound as exc:
            raise MessageGone(str(exc)) from exc
        except discord.Forbidden:
            header = ""  # it cannot be read back (no Read Message History): the edit may still go through
        await platform.edit_in(where, message_id, header + fit(text, CONTENT_LIMIT - len(header)))


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


# ---- entry points ----------------------------------------------------------------------------------------------


async def run_discord(
    app: App, *, shard_ids: list[int] | None, shard_count: int | None, stop: asyncio.Event | None = None
) -> None:
    """`supportbot run --platform discord`, until ``stop`` (SIGTERM): then no new events are taken, replies in
    flight get settings.shutdown_grace_s to finish, and the client closes (its shards' sessions end cleanly)."""
    token = app.settings.secret("discord_token")
    if not token:
        raise RuntimeError("DISCORD_TOKEN is not set")
    point_discord_py(app.settings)
    adapter = DiscordAdapter(app, shard_ids=shard_ids, shard_count=shard_count)
    await adapter.serve(token, stop=stop or asyncio.Event(), grace_s=app.settings.shutdown_grace_s)


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
