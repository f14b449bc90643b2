"""Slack, through slack-bolt's AsyncApp: events, slash commands and the "Summarize thread" shortcut → the core.

Every listener acknowledges first (Bolt acks events itself before running the listener; commands and shortcuts
call ``ack()`` first, commands.py), reads and claims the delivery (deliveries.py) and hands the request to the
intake (bot/intake.py), which runs it in the background, so Slack's 3-second deadline never depends on the model or
on any Web API call; a request that fails gets the intake's short error reply (ephemeral, or through the command's
response_url). Every signed event delivery gets a 200, ignored and unknown ones included (http.py): Slack disables
the event subscription of an app whose deliveries keep failing.

Mentions and the channel messages the bot records are handled here; direct messages and Slack's AI side pane are
conversations with the bot (conversation.py). The process around it — HTTP or Socket Mode — is run.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.commands import NOT_IN_CHANNEL, SHORTCUT_CALLBACK_ID, SlashCommands
from adapters.slack.conversation import ConversationListeners, DirectConversation, ThreadContexts
from adapters.slack.deliveries import Deliveries
from adapters.slack.events import CHANGED, DELETED, SlackEvent, SlackMessage
from adapters.slack.http import RATE_LIMITED, HttpFront
from adapters.slack.identity import BotIdentity
from adapters.slack.people import readable
from adapters.slack.platform import SlackPlatform
from adapters.slack.render import escape
from adapters.slack.workspaces import Workspaces
from bot.app import App
from bot.intake import SORRY, Claim, ErrorReply, Intake
from bot.types import ChannelRef, Mention, MessageRef

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
# Message subtypes that are something a person said (https://docs.slack.dev/reference/events/message).
SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})

class SlackAdapter:
    """Translates Slack requests into calls on ``app.assistant`` and renders what comes back."""

    def __init__(
        self,
        app: App,
        *,
        client: AsyncWebClient | None = None,
        history_per_minute: float | None = None,
        history_page_limit: int | None = None,
        restricted_history_per_minute: float | None = None,
        edits_per_minute: float | None = None,
        edit_burst: int | None = None,
        stream_calls_per_minute: float | None = None,
        allow_bots: bool | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.assistant = app.assistant
        self.client = client or AsyncWebClient(
            token=settings.secret("slack_bot_token"), base_url=settings.slack_api_url or DEFAULT_API_URL
        )
        self.allow_bots = settings.slack_allow_bots if allow_bots is None else allow_bots
        self.intake = Intake(app, platform="slack")
        self.workspaces = Workspaces(
            app, self.client, history_per_minute=history_per_minute, history_page_limit=history_page_limit,
            restricted_history_per_minute=restricted_history_per_minute, edits_per_minute=edits_per_minute,
            edit_burst=edit_burst, stream_calls_per_minute=stream_calls_per_minute,
        )  # fmt: skip
        self.identity = BotIdentity(self.client)
        self.deliveries = Deliveries(app, self.intake, self.identity, allow_bots=self.allow_bots)
        self.bolt = AsyncApp(
            client=self.client,
            authorize=self.identity.authorize,
            signing_secret=settings.secret("slack_signing_secret"),
            # Socket Mode requests are not signed; HTTP requests are, and Bolt refuses bad or stale signatures (401).
            request_verification_enabled=settings.slack_signing_secret is not None,
            raise_error_for_unhandled_request=False,
            # Listeners only claim and hand work to a tracked task, so running them before the response costs
            # milliseconds, and the work is always visible to idle() and to shutdown.
            process_before_response=True,
        )
        self.http = HttpFront(self.bolt, signing_secret=settings.secret("slack_signing_secret"),
                              ignored=self.deliveries.ignored, busy=lambda: len(self.intake))  # fmt: skip
        self.conversation = DirectConversation(app, self.intake, platform_for=self.platform)
        self.talk = ConversationListeners(self.deliveries, self.conversation, platform_for=self.platform)
        self.commands = SlashCommands(app, self.deliveries, platform_for=self.platform, summarize=self._summarize)
        self._register()
        if app.janitor is not None:
            app.janitor.serve("slack", self.platform)

    def platform(self, team_id: str) -> SlackPlatform:
        return self.workspaces.platform(team_id)

    # ---- requests -------------------------------------------------------------------------------------------

    async def idle(self) -> None:
        await self.intake.idle()
        await self.workspaces.settle()  # streams' stops left for later

    def claims(self, body: dict[str, Any], workspace: str, channel: str, ts: str) -> list[Claim]:
        return self.deliveries.claims(body, workspace, channel, ts)

    def request(self, body: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
        return self.deliveries.request(body)

    # ---- listeners ------------------------------------------------------------------------------------------

    def _register(self) -> None:
        bolt = self.bolt
        bolt.middleware(self._rate_limited_notice)
        pane = AsyncAssistant(thread_context_store=ThreadContexts(self.app.store.kv))
        talk = self.talk
        pane.thread_started(talk.on_pane_opened)
        pane.thread_context_changed(talk.on_pane_context)
        pane.user_message(talk.on_pane_message)
        bolt.assistant(pane)
        bolt.event("app_home_opened")(talk.on_home_opened)
        bolt.event("app_mention")(self._on_mention)
        bolt.event("message")(self._on_message)
        bolt.command("/faq")(self.commands.on_faq)
        bolt.command("/llmcost")(self.commands.on_llmcost)
        bolt.shortcut(SHORTCUT_CALLBACK_ID)(self.commands.on_shortcut)
        # Last: every other event is acknowledged too (a 404 counts as a failed delivery, and Slack disables the
        # subscription of an app whose deliveries keep failing).
        bolt.event(re.compile(".*"))(self._on_other_event)
        bolt.error(self._on_error)

    async def _rate_limited_notice(self, body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        # app_rate_limited is not an event_callback: Slack says it dropped this app's events for a minute
        # (https://docs.slack.dev/apis/events-api/#rate-limiting). Nothing to answer but a 200 and a warning.
        inner = body.get("event")
        if body.get("type") != RATE_LIMITED and not (isinstance(inner, dict) and inner.get("type") == RATE_LIMITED):
            await next()
            return None
        log.warning("Slack rate-limited this app's events (minute %s): deliveries were dropped",
                    str(body.get("minute_rate_limited"))[:20])  # fmt: skip
        self.app.metrics.platform_event("slack", "app_rate_limited")
        return BoltResponse(status=200, body="")

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        event = body.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        log.debug("acknowledged an unhandled Slack %s event", str(kind)[:40])
        self.app.metrics.platform_event("slack", "unhandled")

    async def _on_error(self, error: Exception, body: dict[str, Any], respond: Any = None) -> None:
        # Bolt calls this for exceptions in listeners or middleware: log, and tell the person when we can.
        log.error("slack listener failed: %s", error, exc_info=error)
        if respond is not None and body.get("response_url"):
            try:
                await respond(text=SORRY, response_type="ephemeral")
            except Exception:
                log.exception("could not tell the user about the failure")

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        with self.request(body):
            checked = self.deliveries.checked(body, event)
            if checked is None or checked.message is None:
                return
            said = checked.message
            if said.is_bot and not self.allow_bots:
                # Another bot's mention: answering bots is how bot-to-bot loops start (and spend).
                self.deliveries.ignored("bot", f"mention from bot {said.bot_id} in {checked.channel}")
                return
            workspace = self.deliveries.installation(body, context)
            channel = ChannelRef("slack", workspace, checked.channel)
            self.intake.take(
                self._mentioned(channel, said), name=f"summary-{said.ts}",
                claims=self.claims(body, workspace, checked.channel, said.ts),
                duplicate=self.deliveries.duplicate(f"mention {checked.channel}/{said.ts} (edited: {said.edited})"),
                # Whatever fails from here on — reading the mention included — is told to the asker, in the thread.
                reply_error=self._teller(channel, said.author, thread_id=said.thread_ts or said.ts),
            )  # fmt: skip

    async def _mentioned(self, channel: ChannelRef, event: SlackMessage) -> None:
        platform = self.platform(channel.workspace)
        message = await platform.to_chat_message(channel, event)
        await self._summarize(self.intake.mention(message), platform, user=message.author)

    async def _summarize(self, mention: Mention, platform: SlackPlatform, *, user: str) -> None:
        ref = mention.message.ref
        platform.expect_reply(ref.channel, ref.thread_id or ref.message_id, user=user)
        outcome = await self.assistant.summarize(mention, platform)
        if not outcome.refs:
            await self._tell(platform, ref.channel, user, NOT_IN_CHANNEL, thread_id=None)

    def _teller(self, channel: ChannelRef, user: str, *, thread_id: str | None) -> ErrorReply:
        return lambda text: self._tell(self.platform(channel.workspace), channel, user, text, thread_id=thread_id)

    async def _tell(
        self, platform: SlackPlatform, channel: ChannelRef, user: str, text: str, *, thread_id: str | None
    ) -> None:
        """A last-resort note to one person (when the reply itself could not be posted)."""
        try:
            await platform.client.chat_postEphemeral(
                channel=channel.channel, user=user, text=escape(text), thread_ts=thread_id
            )
        except Exception:
            log.warning("could not tell %s in %s: %s", user, channel.key, text)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        ours = {str(x) for x in (context.bot_user_id, context.bot_id) if x}
        with self.request(body):
            checked = self.deliveries.checked(body, event)
            if checked is None:
                return
            workspace = self.deliveries.installation(body, context)
            if checked.direct:
                await self.talk.direct_message(body, workspace, checked, ours)
                return
            channel = ChannelRef("slack", workspace, checked.channel)
            self.intake.take(self._message(channel, checked, ours, context.bot_user_id), name=f"message-{channel.key}")

    async def _message(self, channel: ChannelRef, event: SlackEvent, ours: set[str], bot_user: str | None) -> None:
        said = event.message
        if event.subtype == CHANGED and said is not None:
            if _is_from(said, ours) or said.text == event.previous_text:
                return  # our own edits, and unfurls/reactions that change nothing a person wrote
            ref = MessageRef(channel, said.ts, said.thread_ts)
            await self.assistant.edited(ref, readable(said.text, {}))
            return
        if event.subtype == DELETED and event.deleted_ts is not None:
            await self.assistant.deleted(MessageRef(channel, event.deleted_ts))
            return
        if said is None or _is_from(said, ours):
            return
        if (said.is_bot and not self.allow_bots) or (said.subtype not in SPOKEN_SUBTYPES | {"bot_message"}):
            return
        message = await self.platform(channel.workspace).to_chat_message(channel, said)
        mentions_bot = bool(bot_user) and f"<@{bot_user}>" in said.text
        await self.assistant.record(message, mentions_bot=mentions_bot)

    # ---- serving --------------------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        return self.http.web_app()

    async def serve_http(self, *, host: str, port: int) -> web.AppRunner:
        """Start serving; returns the runner (its ``addresses`` tell the port when ``port`` is 0)."""
        await self.identity.identify()  # fail fast on a bad token, and no auth.test burst on the first events
        runner = web.AppRunner(self.web_app(), handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    async def close(self) -> None:
        await self.idle()

    async def drain(self, *, grace_s: float) -> int:
        cut_off = await self.intake.drain(grace_s=grace_s)
        try:  # streams' stops left for later; past the grace Slack ends idle streams itself
            await asyncio.wait_for(self.workspaces.settle(), grace_s)
        except TimeoutError:
            log.warning("slack: streams' late stops unfinished after %.0fs; Slack ends them when idle", grace_s)
        return cut_off


def _is_from(message: SlackMessage, ours: set[str]) -> bool:
    return bool(ours) and (message.user in ours or message.bot_id in ours)
