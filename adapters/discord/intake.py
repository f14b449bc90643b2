"""Gateway events → bot/ requests: messages kept in the log, mentions summarized, edits and deletions followed.

Many processes (shards, or replicas during a rolling update) share one store: every message is claimed there before
any work (the keys are named here, the intake in bot/intake.py claims them), so a replayed or doubly delivered event
gets one reply. A mention that fails gets the intake's short error reply, never silence. Without the Message
Content intent, people's messages arrive blank: a few in a row tell the admin channel once (across processes).
Application commands are discord/commands.py's; the process around both, discord/run.py's.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import discord

from adapters.discord.neutral import PLATFORM, place_of, to_chat, workspace_of_guild
from adapters.discord.platform import DiscordPlatform, ReplyTarget
from adapters.discord.render import MESSAGE_CONTENT_NOTICE, scope_header
from bot.app import App
from bot.intake import Claim, ErrorReply, Intake
from bot.types import ChannelRef, ChatMessage, MessageRef

log = logging.getLogger(__name__)

CLAIM_TTL_S = 3600.0  # a replayed event (reconnect, a second shard process) is dropped for this long
NOTICE_TTL_S = 24 * 3600.0  # the missing-intent notice is repeated at most once a day (across processes)
EMPTY_CONTENT_SIGNS = 3  # blank non-mention messages in a row that show the Message Content intent is missing
# Message types people write, https://discord.com/developers/docs/resources/message#message-object-message-types:
# only these can be evidence that content is withheld; system messages (joins, pins, boosts) are blank by nature.
CONVERSATION_TYPES = (discord.MessageType.default, discord.MessageType.reply)


def claim(event_id: object) -> Claim:
    """A message's or an interaction's id (snowflakes: unique across both), claimed before any work on it."""
    return Claim(f"discord:{event_id}", CLAIM_TTL_S)


class GatewayEvents:
    """The message events of one discord.py client, handed to the intake as neutral work."""

    def __init__(
        self, app: App, intake: Intake, client: discord.Client, platform: DiscordPlatform, *, content_intent: bool
    ) -> None:
        self.app, self.assistant, self.intake = app, app.assistant, intake
        self.client, self.platform = client, platform
        self.content_intent = content_intent
        self._blank_in_a_row = 0
        self._noticed = False

    def register(self) -> None:
        for handler in (self.on_message, self.on_raw_message_edit, self.on_raw_message_delete,
                        self.on_raw_bulk_message_delete, self.on_thread_create):  # fmt: skip
            self.client.event(handler)

    @property
    def accepting(self) -> bool:
        return self.intake.accepting

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
                         claims=[claim(message.id)], reply_error=self._sorry_if_addressed(message))  # fmt: skip

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
            await self.summarize(message, requester=chat)

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
            await self.tell_admin_once()
        return True

    async def tell_admin_once(self) -> None:
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

    # -- edits and deletions

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

    def raw_update(self, data: dict[str, Any]) -> None:
        """A MESSAGE_UPDATE discord.py could not parse (discord/guard.py dropped it) that still says what the text is
        now: a partial update (documented until 2024: no type, no author). The message log keeps it, as it would a
        parsed edit; bots' edits are left alone as in on_raw_message_edit."""
        if not self.accepting or not isinstance(data.get("content"), str) or not data.get("id"):
            return
        raw_author = data.get("author")
        author: dict[str, Any] = raw_author if isinstance(raw_author, dict) else {}
        me = self.client.user
        if author.get("bot") or data.get("webhook_id") or (me is not None and str(author.get("id")) == str(me.id)):
            return
        self.intake.take(self._raw_edit(data), name=f"raw-edit-{data['id']}", event_id=f"edit-{data['id']}")

    async def _raw_edit(self, data: dict[str, Any]) -> None:
        try:
            channel_id, message_id = int(data["channel_id"]), int(data["id"])
            guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        except (KeyError, TypeError, ValueError):
            return  # not even an address: nothing to keep
        channel, thread_id = await self._place(channel_id, guild_id)
        await self.assistant.edited(MessageRef(channel, str(message_id), thread_id), str(data["content"]))

    # -- summaries

    async def summarize(self, message: discord.Message, *, requester: ChatMessage, fresh: bool | None = None) -> None:
        """Thread → the thread; a reply → its reply chain; otherwise the channel's recent conversation."""
        # At once: the reply's first message waits for the model's first text (FIRST_POST_GRACE_S).
        self.platform.show_typing(message.channel.id)
        channel, thread_id = place_of(message.channel, message.guild.id if message.guild else None)
        scope = "thread" if thread_id else "channel"
        if thread_id is None and message.reference is not None and message.reference.message_id:
            chain = await self.platform.history.reply_chain(channel, message.id)
            if len(chain) > 1:
                scope, thread_id = "reply chain", chain[0].ref.message_id
                for m in chain:  # the log then finds the chain under its root, like a thread
                    await self.app.store.messages.add(m)
        mention = self.intake.mention(replace(requester, ref=MessageRef(channel, str(message.id), thread_id)),
                                      fresh=fresh)  # fmt: skip
        target = ReplyTarget(
            self.platform, where=message.channel.id, reply_to=message.id, header=scope_header(scope)
        )
        await self.assistant.summarize(mention, target)
