"""Slack's slash commands (/faq, /llmcost) and the "Summarize thread" message shortcut → the core.

Each listener acknowledges first (``ack()`` before anything that calls Slack: users.info on a slow Web API once took
the ack past 3 s), then hands the work to the intake (bot/intake.py). Failures are told to the person only, through
the command's response_url.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack.deliveries import Deliveries
from adapters.slack.events import slack_ts
from adapters.slack.platform import SlackPlatform
from adapters.slack.render import escape, spend_blocks
from bot.app import App
from bot.intake import ErrorReply
from bot.types import ChannelRef, ChatMessage, Command, Mention, MessageRef

log = logging.getLogger(__name__)

SHORTCUT_CALLBACK_ID = "summarize_thread"
NOT_IN_CHANNEL = "I can't post in this channel. Invite me with `/invite @supportbot`, then try again."
SHORTCUT_OUTSIDE_CHANNEL = "Use “Summarize thread” on a message in a channel I am in."
COMMAND_OUTSIDE_CHANNEL = "Run this command in a channel I am in."

class SlashCommands:
    """The listeners of /faq, /llmcost and the message shortcut."""

    def __init__(
        self,
        app: App,
        deliveries: Deliveries,
        *,
        platform_for: Callable[[str], SlackPlatform],
        summarize: Callable[..., Awaitable[None]],  # the adapter's: a thread's summary, as for a mention
    ) -> None:
        self.assistant = app.assistant
        self._deliveries = deliveries
        self.intake = deliveries.intake
        self.platform = platform_for
        self._summarize = summarize

    def _command(self, command: dict[str, Any], name: str, workspace: str) -> Command:
        channel = ChannelRef("slack", workspace, str(command.get("channel_id") or ""))
        user = str(command.get("user_id", ""))
        return self.intake.command(name, str(command.get("text") or ""), channel, user,
                                   user_name=str(command.get("user_name") or ""))  # fmt: skip

    async def on_faq(
        self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()
        cmd = self._command(command, "faq", self._deliveries.installation(command, context))
        self.intake.take(self._faq(cmd, respond), name=f"faq-{cmd.channel.channel}", command="/faq",
                         reply_error=_responder(respond))  # fmt: skip

    async def _faq(self, cmd: Command, respond: Any) -> None:
        if not cmd.channel.channel:
            await _safe_respond(respond, COMMAND_OUTSIDE_CHANNEL)
            return
        outcome = await self.assistant.faq(cmd, self.platform(cmd.channel.workspace))
        if not outcome.refs:
            await respond(text=NOT_IN_CHANNEL, response_type="ephemeral")

    async def on_llmcost(
        self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()
        cmd = self._command(command, "llmcost", self._deliveries.installation(command, context))
        self.intake.take(self._llmcost(cmd, respond), name="llmcost", command="/llmcost",
                         reply_error=_responder(respond))  # fmt: skip

    async def _llmcost(self, cmd: Command, respond: Any) -> None:
        result = await self.assistant.spend(cmd)
        if result.refusal:
            await respond(text=escape(result.refusal), response_type="ephemeral")
            return
        await respond(
            text=escape(result.to_text()),
            blocks=spend_blocks(result),
            response_type="in_channel" if self.intake.shared(cmd.args) else "ephemeral",
        )

    async def on_shortcut(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()  # before anything that calls Slack: users.info on a slow Web API once took the ack past 3 s
        self.intake.take(self._shortcut(body, self._deliveries.installation(body, context), respond), name="shortcut",
                         shortcut=SHORTCUT_CALLBACK_ID, reply_error=_responder(respond))  # fmt: skip

    async def _shortcut(self, body: dict[str, Any], workspace: str, respond: Any) -> None:
        channel_id = _field(body.get("channel"), "id")
        msg = body.get("message")
        msg = msg if isinstance(msg, dict) else {}
        user = _field(body.get("user"), "id")
        ts = slack_ts(msg.get("ts") or body.get("message_ts"))
        if not channel_id or ts is None:
            # A payload without a channel (or message) has nowhere to answer: never a post to channel "".
            log.warning("ignored a shortcut without a channel or message")
            await _safe_respond(respond, SHORTCUT_OUTSIDE_CHANNEL)
            return
        thread = slack_ts(msg.get("thread_ts")) or ts
        channel = ChannelRef("slack", workspace, channel_id)
        platform = self.platform(workspace)
        # The person who invoked the shortcut asked, as if they had mentioned the bot in that thread.
        asker = ChatMessage(
            ref=MessageRef(channel, ts, thread),
            author=user,
            author_name=await platform.display_name(user) if user else "",
            text="",
            sent_at=datetime.now(UTC),
        )
        await self._summarize(Mention(asker), platform, user=user)


def _field(value: object, key: str) -> str:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""


def _responder(respond: Any) -> ErrorReply:
    """The intake's error reply for a command or shortcut: through its response_url, to the person only."""
    return lambda text: _safe_respond(respond, text)


async def _safe_respond(respond: Any, text: str) -> None:
    try:
        await respond(text=text, response_type="ephemeral")
    except Exception:
        log.exception("could not answer through response_url")
