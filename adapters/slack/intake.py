"""Slack, through slack-bolt's AsyncApp: events, slash commands and the "Summarize thread" shortcut → the core.

Every listener acknowledges first (Bolt acks events itself before running the listener; commands and shortcuts
call ``ack()`` first), translates the payload and hands the request to the intake (bot/intake.py), which runs it
in the background, so Slack's 3-second deadline never depends on the model or on any Web API call. The claim keys
named here — each event id, and each asking message (channel + ts) — are claimed in the shared store before any
work, so a retried delivery, an edited mention re-delivered as a new event, or a copy reaching another replica
never produces a second reply; a request that fails gets the intake's short error reply (ephemeral, or through
the command's response_url). Every signed event delivery gets a 200, ignored and unknown ones included:
Slack disables the event subscription of an app whose deliveries keep failing.

Direct messages and Slack's AI side pane are conversations with the bot (adapters/slack/conversation.py); the
installation a payload belongs to is read once (adapters/slack/identity.py).

Runs in Socket Mode when SLACK_APP_TOKEN is set, else serves Slack's HTTP requests at /slack/events (and GET
/healthz for load balancers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buckets import (
    HISTORY_BURST,
    POST_PER_CHANNEL_BURST,
    POST_PER_CHANNEL_PER_MINUTE,
    STREAM_CALLS_BURST,
    StoreBudget,
    StreamBudgets,
)
from adapters.slack.conversation import ConversationListeners, DirectConversation, ThreadContexts
from adapters.slack.events import (
    CHANGED,
    DELETED,
    Malformed,
    SlackEvent,
    SlackMessage,
    read_delivery,
    slack_ts,
)
from adapters.slack.history import RESTRICTED_PER_MINUTE
from adapters.slack.identity import BotIdentity, installation
from adapters.slack.learned import LearnedBudget, WorkspaceFacts
from adapters.slack.people import readable
from adapters.slack.platform import SlackPlatform
from adapters.slack.render import escape, spend_blocks
from bot.app import App
from bot.intake import SORRY, Claim, ErrorReply, Intake
from bot.types import ChannelRef, ChatMessage, Command, Mention, MessageRef

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
DEFAULT_API_URL = "https://slack.com/api/"
# Slack re-delivers an event up to 3 times over about an hour (https://docs.slack.dev/apis/events-api/#retries):
# a claim must outlive the last retry.
CLAIM_TTL_S = 3600.0
SHORTCUT_CALLBACK_ID = "summarize_thread"
# Slack's notice that it dropped this app's events for a minute (https://docs.slack.dev/apis/events-api/#rate-limiting)
RATE_LIMITED = "app_rate_limited"
# Message subtypes that are something a person said (https://docs.slack.dev/reference/events/message).
SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})

NOT_IN_CHANNEL = "I can't post in this channel. Invite me with `/invite @supportbot`, then try again."
SHORTCUT_OUTSIDE_CHANNEL = "Use “Summarize thread” on a message in a channel I am in."
COMMAND_OUTSIDE_CHANNEL = "Run this command in a channel I am in."


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
        # Pacing knobs from settings (the stream methods' tier is a guess: see slack_pacing); tests pass their own
        # so a "minute" is short.
        self._history_per_minute = history_per_minute or settings.slack_history_per_minute
        self._history_page_limit = history_page_limit or settings.slack_history_page_limit
        self._restricted_per_minute = restricted_history_per_minute  # None: the tier's documented 1 per minute
        self._edits_per_minute = edits_per_minute or settings.slack_edits_per_minute
        self._edit_burst = edit_burst or settings.slack_edit_burst
        stream_calls_per_minute = stream_calls_per_minute or settings.slack_stream_calls_per_minute
        self.allow_bots = settings.slack_allow_bots if allow_bots is None else allow_bots
        self._platforms: dict[str, SlackPlatform] = {}
        self.intake = Intake(app, platform="slack")
        # Slack's limits are per workspace (and per channel for posts), not per process: the buckets live in the
        # store, so N replicas on one Redis together stay within one workspace's tier. On SQLite they serve one
        # process (or several on one host) the same way.
        budgets, kv = app.store.budgets, app.store.kv
        # Each budget starts at the documented tier and learns the workspace's real rate from Slack's answers; the
        # learned rates and facts (restricted history tier, streaming refused) are kept in the store for all.
        self._edit_budget = LearnedBudget(
            budgets, name="chat.update", start_per_minute=self._edits_per_minute, burst=self._edit_burst, kv=kv,
        )  # fmt: skip
        # The same tier per channel: where probes find a workspace's limit is per channel, no channel gets more.
        self._channel_edit_budget = LearnedBudget(
            budgets, name="chat.update", start_per_minute=self._edits_per_minute, burst=self._edit_burst, kv=kv,
        )  # fmt: skip
        self._post_budget = StoreBudget(
            budgets, name="chat.postMessage", per_minute=POST_PER_CHANNEL_PER_MINUTE, burst=POST_PER_CHANNEL_BURST
        )
        self._history_budget = LearnedBudget(
            budgets, name="conversations.replies", start_per_minute=self._history_per_minute,
            burst=HISTORY_BURST, kv=kv,
        )  # fmt: skip
        self._stream_budgets = StreamBudgets(
            *(LearnedBudget(budgets, name=method, start_per_minute=stream_calls_per_minute,
                            burst=STREAM_CALLS_BURST, kv=kv)
              for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"))
        )  # fmt: skip
        self._facts = WorkspaceFacts(kv)
        self.identity = BotIdentity(self.client)
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
        secret = settings.secret("slack_signing_secret")
        self._verifier = SignatureVerifier(secret) if secret else None
        self.conversation = DirectConversation(app, self.intake, platform_for=self.platform)
        self.talk = ConversationListeners(self)
        self._register()
        if app.janitor is not None:
            app.janitor.serve("slack", self.platform)

    # ---- platforms per workspace ----------------------------------------------------------------------------

    def platform(self, team_id: str) -> SlackPlatform:
        found = self._platforms.get(team_id)
        if found is None:
            found = self._platforms[team_id] = SlackPlatform(
                self.client,
                team_id=team_id,
                log_store=self.app.store.messages,
                native_streaming=self.app.settings.slack_native_streaming,
                edit_budget=self._edit_budget,
                channel_edit_budget=self._channel_edit_budget,
                post_budget=self._post_budget,
                history_budget=self._history_budget,
                stream_budgets=self._stream_budgets,
                facts=self._facts,
                history_page_limit=self._history_page_limit,
                restricted_per_minute=self._restricted_per_minute or RESTRICTED_PER_MINUTE,
            )
        return found

    # ---- requests -------------------------------------------------------------------------------------------

    async def idle(self) -> None:
        await self.intake.idle()

    def claims(self, body: dict[str, Any], workspace: str, channel: str, ts: str) -> list[Claim]:
        """What makes a request to the bot answered once: the delivery's event id (a retry, here or on another
        replica, stops) and the asking message itself (Slack re-delivers an edited mention as a new app_mention
        with a new event id and the same ts, and one message may arrive both as a mention and in a DM)."""
        event_id = body.get("event_id")
        claims = [Claim(f"slack:{workspace}:{event_id}", CLAIM_TTL_S)] if isinstance(event_id, str) and event_id else []
        # As long as messages are kept: Slack lets people edit a message days later, and the edit is re-delivered.
        ttl_s = max(CLAIM_TTL_S, self.app.settings.retention_days * 86400.0)
        return [*claims, Claim(f"slack:{workspace}:asked:{channel}:{ts}", ttl_s)]

    def request(self, body: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
        """The request id of one event delivery, from the listener to the reply's final edit."""
        return self.intake.request(str(body.get("event_id") or ""))

    def duplicate(self, detail: str) -> Callable[[], None]:
        return lambda: self._ignored("duplicate", detail)

    def _ignored(self, reason: str, detail: str) -> None:
        log.info("ignored a Slack event (%s): %s", reason, detail[:200])
        self.app.metrics.platform_event("slack", f"ignored_{reason}")

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
        bolt.command("/faq")(self._on_faq)
        bolt.command("/llmcost")(self._on_llmcost)
        bolt.shortcut(SHORTCUT_CALLBACK_ID)(self._on_shortcut)
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
            checked = self._checked(body, event)
            if checked is None or checked.message is None:
                return
            said = checked.message
            if said.is_bot and not self.allow_bots:
                # Another bot's mention: answering bots is how bot-to-bot loops start (and spend).
                self._ignored("bot", f"mention from bot {said.bot_id} in {checked.channel}")
                return
            workspace = installation(body, context, self.identity)
            channel = ChannelRef("slack", workspace, checked.channel)
            self.intake.take(
                self._mentioned(channel, said), name=f"summary-{said.ts}",
                claims=self.claims(body, workspace, checked.channel, said.ts),
                duplicate=self.duplicate(f"mention {checked.channel}/{said.ts} (edited: {said.edited})"),
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
            checked = self._checked(body, event)
            if checked is None:
                return
            workspace = installation(body, context, self.identity)
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

    # ---- slash commands and the shortcut --------------------------------------------------------------------

    def _command(self, command: dict[str, Any], name: str, workspace: str) -> Command:
        channel = ChannelRef("slack", workspace, str(command.get("channel_id") or ""))
        user = str(command.get("user_id", ""))
        return self.intake.command(name, str(command.get("text") or ""), channel, user,
                                   user_name=str(command.get("user_name") or ""))  # fmt: skip

    async def _on_faq(
        self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()
        cmd = self._command(command, "faq", installation(command, context, self.identity))
        self.intake.take(self._faq(cmd, respond), name=f"faq-{cmd.channel.channel}", command="/faq",
                         reply_error=_responder(respond))  # fmt: skip

    async def _faq(self, cmd: Command, respond: Any) -> None:
        if not cmd.channel.channel:
            await _safe_respond(respond, COMMAND_OUTSIDE_CHANNEL)
            return
        outcome = await self.assistant.faq(cmd, self.platform(cmd.channel.workspace))
        if not outcome.refs:
            await respond(text=NOT_IN_CHANNEL, response_type="ephemeral")

    async def _on_llmcost(
        self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()
        cmd = self._command(command, "llmcost", installation(command, context, self.identity))
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

    async def _on_shortcut(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Any, context: AsyncBoltContext
    ) -> None:
        await ack()  # before anything that calls Slack: users.info on a slow Web API once took the ack past 3 s
        self.intake.take(self._shortcut(body, installation(body, context, self.identity), respond), name="shortcut",
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

    def _checked(self, body: dict[str, Any], event: dict[str, Any]) -> SlackEvent | None:
        """The event's typed view, or None (one warning) when the delivery lacks the shape Slack documents: ignored
        (and acknowledged), not crashed on."""
        try:
            return read_delivery(body)
        except Malformed as why:
            log.warning("ignored a malformed Slack %s event %s: %s", str(event.get("type"))[:40],
                        str(body.get("event_id"))[:40], why)  # fmt: skip
            self.app.metrics.platform_event("slack", "ignored_malformed")
            return None

    # ---- serving --------------------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._handle_http)
        web_app.router.add_get(HEALTH_PATH, self._healthz)
        return web_app

    async def _handle_http(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self._verifier is not None and not self._verifier.is_valid_request(raw, dict(request.headers)):
            return web.Response(status=401, text="invalid request")  # what Bolt answers; checked first (below)
        # Signed by Slack from here on. A delivery that Bolt cannot read (it looks for ids in the body before it
        # checks anything: a string "event" or a boolean "user" raises) or that fails in a listener is still
        # acknowledged: Slack retries failed deliveries and disables the subscription of an app that keeps failing.
        try:
            bolt_response = await self.bolt.async_dispatch(await to_bolt_request(request))
        except Exception as exc:
            self._ignored("malformed", f"Bolt could not read a signed request: {exc!r}")
            return web.Response(status=200, text="")
        if bolt_response.status >= 500 and _is_event_delivery(raw):
            self._ignored("failed", "an event delivery failed in a listener; acknowledged so Slack does not retry")
            return web.Response(status=200, text="")
        if bolt_response.status == 404 and _is_event_delivery(raw):
            # Signed JSON that no listener took (an envelope type Bolt does not know): still a delivery.
            self._ignored("unhandled", f"{raw[:120]!r}")
            return web.Response(status=200, text="")
        return await to_aiohttp_response(bolt_response)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "platform": "slack", "busy": len(self.intake)})

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
        return await self.intake.drain(grace_s=grace_s)


async def run_slack(app: App, *, port: int, host: str = "0.0.0.0", stop: asyncio.Event | None = None) -> None:
    """`supportbot run --platform slack`: Socket Mode with SLACK_APP_TOKEN, else HTTP on ``port``. Until ``stop``
    (SIGTERM): then no new events are taken (the listener closes; the load balancer sends them elsewhere, and Slack
    retries what got no answer), and replies in flight get settings.shutdown_grace_s to finish."""
    adapter = SlackAdapter(app)
    stop = stop or asyncio.Event()
    app_token = app.settings.secret("slack_app_token")
    try:
        if app_token:
            handler = AsyncSocketModeHandler(adapter.bolt, app_token=app_token)
            log.info("slack: Socket Mode")
            try:
                await handler.connect_async()
                await stop.wait()
            finally:
                await handler.close_async()
        else:
            if app.settings.slack_signing_secret is None:
                # Without it nobody can tell Slack's requests from forged ones: refuse to serve rather than trust.
                raise SystemExit("supportbot: SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN)")
            runner = await adapter.serve_http(host=host, port=port)
            log.info("slack: serving %s on %s:%d", EVENTS_PATH, host, port)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()
    finally:
        await adapter.drain(grace_s=app.settings.shutdown_grace_s)


def _is_event_delivery(raw: bytes) -> bool:
    """An Events API delivery (JSON; commands and interactivity arrive form-encoded)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and ("event" in body or body.get("type") in ("event_callback", RATE_LIMITED))


def _field(value: object, key: str) -> str:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""


def _is_from(message: SlackMessage, ours: set[str]) -> bool:
    return bool(ours) and (message.user in ours or message.bot_id in ours)


def _responder(respond: Any) -> ErrorReply:
    """The intake's error reply for a command or shortcut: through its response_url, to the person only."""
    return lambda text: _safe_respond(respond, text)


async def _safe_respond(respond: Any, text: str) -> None:
    try:
        await respond(text=text, response_type="ephemeral")
    except Exception:
        log.exception("could not answer through response_url")
