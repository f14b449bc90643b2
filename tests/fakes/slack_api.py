"""A fake Slack (Web API, response_url and Socket Mode) served by aiohttp on 127.0.0.1.

The real `slack_sdk.web.async_client.AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)` and
slack-bolt's `AsyncApp` talk to it over real sockets. It answers the way Slack does: an
{"ok": ..., "error": ...} envelope with HTTP 200 for API errors, HTTP 429 + Retry-After from token
buckets (see slack_rates.py), and it records every call and every version of every message.

    async with FakeSlack(time_scale=0.01) as fake:
        fake.add_channel("C1", name="support")
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        ...
        fake.versions("C1", ts)   # every text the message showed, with time.monotonic() stamps
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.slack_directory import DIRECTORY_METHODS
from tests.fakes.slack_methods import APP_TOKEN_METHODS, METHODS, Refusal
from tests.fakes.slack_rates import (
    DEFAULT_RATES,
    POST_PER_CHANNEL,
    RESTRICTED_HISTORY,
    RESTRICTED_HISTORY_PAGE_MAX,
    Rate,
    RateLimiter,
    retry_after_header,
)
from tests.fakes.slack_records import (
    ApiCall,
    Channel,
    Ephemeral,
    FakeMessage,
    Fault,
    MessageVersion,
    ResponseUrlPost,
    SocketAck,
    User,
    VersionKind,
    Workspace,
)
from tests.fakes.slack_socket import SOCKET_PATH, SocketModeHub

# "Text over ~4,000 chars fails with msg_too_long in practice" (FACTS.md; the documented truncation is 40,000).
MAX_TEXT_CHARS = 4000
# markdown_text per chat.*Stream call: https://docs.slack.dev/reference/methods/chat.appendStream
MAX_MARKDOWN_CHARS = 12000
# Total length of a streamed message: undocumented; the message truncation limit stands in.
MAX_STREAM_CHARS = 40000
# Largest page conversations.history/replies return: https://docs.slack.dev/reference/methods/conversations.history
HISTORY_PAGE_MAX = 1000
# How long a stream may stay idle before Slack stops it: undocumented (FACTS.md); tests set their own.
STREAM_IDLE_TIMEOUT = 60.0
# The bot scopes a fresh install grants: deploy/slack-manifest.yaml's. Slack names them in the x-oauth-scopes header
# of every Web API response to a bot token (https://docs.slack.dev/authentication/tokens/).
GRANTED_SCOPES = (
    "app_mentions:read", "chat:write", "channels:history", "groups:history", "im:history", "mpim:history",
    "users:read", "commands", "channels:read", "groups:read", "im:read", "mpim:read", "assistant:write",
    "canvases:write",
)  # fmt: skip

RESPONSE_URL_PATH = "/response_url"


class FakeSlack:
    """One fake Slack server. Configure with keyword options; every option is also a mutable attribute."""

    def __init__(
        self,
        *,
        team_id: str = "T0FAKE",
        bot_token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-fake-app-token",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "AFAKE",
        rates: Mapping[str, Rate] | None = None,
        post_per_channel: Rate = POST_PER_CHANNEL,
        time_scale: float = 1.0,
        rate_limits: bool = True,
        fractional_retry_after: bool = False,
        restricted_history: bool = False,
        history_page_max: int | None = None,
        max_text_chars: int = MAX_TEXT_CHARS,
        max_markdown_chars: int = MAX_MARKDOWN_CHARS,
        max_stream_chars: int = MAX_STREAM_CHARS,
        stream_idle_timeout: float = STREAM_IDLE_TIMEOUT,
    ) -> None:
        merged = dict(DEFAULT_RATES)
        if restricted_history:
            merged["conversations.replies"] = merged["conversations.history"] = RESTRICTED_HISTORY
        merged.update(rates or {})
        self.limiter = RateLimiter(rates=merged, post_per_channel=post_per_channel, time_scale=time_scale)
        self.limiter.enabled = rate_limits
        self.fractional_retry_after = fractional_retry_after
        if history_page_max is None:
            history_page_max = RESTRICTED_HISTORY_PAGE_MAX if restricted_history else HISTORY_PAGE_MAX
        self.history_page_max = history_page_max
        self.max_text_chars = max_text_chars
        self.max_markdown_chars = max_markdown_chars
        self.max_stream_chars = max_stream_chars
        self.stream_idle_timeout = stream_idle_timeout

        self.workspaces: dict[str, Workspace] = {}
        self._tokens: dict[str, tuple[Workspace, str]] = {}
        self.workspace = self.add_workspace(
            team_id, bot_token=bot_token, app_token=app_token, bot_user_id=bot_user_id, bot_id=bot_id
        )
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, User] = {}
        self.members: dict[str, set[str]] = {}  # channel id → user ids (conversations.members)
        # Enterprise Grid: set enterprise_id (and enterprise_install for an org-wide install) before start().
        self.enterprise_id: str | None = None
        self.enterprise_install = False
        self.assistant_statuses: dict[tuple[str, str], list[str]] = {}  # (channel, thread_ts) → every status set
        self.suggested_prompts: dict[tuple[str, str], list[Any]] = {}
        self.delays: dict[str, float] = {}  # method → seconds the fake waits before answering (a slow Web API)
        self.messages: dict[tuple[str, str], FakeMessage] = {}
        self.ephemerals: list[Ephemeral] = []
        self.response_url_posts: list[ResponseUrlPost] = []
        self.calls: list[ApiCall] = []
        self.rate_limited: Counter[str] = Counter()
        self._faults: dict[str, list[Fault]] = {}
        self._response_urls: dict[str, tuple[str, str]] = {}
        self._last_ts_us = 0
        self.socket = SocketModeHub(app_id=app_id)
        self.app_id = app_id
        self.scopes: list[str] = list(GRANTED_SCOPES)  # what x-oauth-scopes says to the bot token

        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post(RESPONSE_URL_PATH + "/{url_id}", self._handle_response_url)
        app.router.add_get(SOCKET_PATH, self.socket.handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        await self.socket.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What to pass as AsyncWebClient(base_url=...): ends with a slash like https://slack.com/api/."""
        return f"{self.base_url}/api/"

    @property
    def bot_token(self) -> str:
        return self.workspace.bot_token

    @property
    def app_token(self) -> str:
        return self.workspace.app_token

    @property
    def team_id(self) -> str:
        return self.workspace.team_id

    @property
    def bot_user_id(self) -> str:
        return self.workspace.bot_user_id

    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{SOCKET_PATH}?ticket={uuid.uuid4()}"

    # ---- seeding ---------------------------------------------------------------------------------

    def add_workspace(
        self, team_id: str, *, bot_token: str, app_token: str, bot_user_id: str, bot_id: str
    ) -> Workspace:
        """Rate buckets are per workspace: a second workspace has its own."""
        ws = Workspace(
            team_id=team_id, bot_token=bot_token, bot_user_id=bot_user_id, bot_id=bot_id, app_token=app_token
        )
        self.workspaces[team_id] = ws
        self._tokens[bot_token] = (ws, "bot")
        self._tokens[app_token] = (ws, "app")
        return ws

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str = "",
        is_member: bool = True,
        is_private: bool = False,
        is_im: bool = False,
        members: tuple[str, ...] = (),
    ) -> Channel:
        """A channel; ``members`` are the people in it (conversations.members), ``is_member`` says if the bot is."""
        self.members.setdefault(channel_id, set()).update(members)
        channel = Channel(
            id=channel_id,
            name=name or channel_id.lower(),
            is_member=is_member,
            is_private=is_private,
            is_im=is_im,
        )
        self.channels[channel_id] = channel
        return channel

    def add_user(
        self,
        user_id: str,
        *,
        name: str = "",
        display_name: str = "",
        real_name: str = "",
        is_bot: bool = False,
    ) -> User:
        user = User(
            id=user_id,
            name=name or user_id.lower(),
            display_name=display_name,
            real_name=real_name or display_name,
            is_bot=is_bot,
        )
        self.users[user_id] = user
        return user

    def seed_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "UHUMAN",
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> FakeMessage:
        """A message someone else wrote before the test starts (for conversations.history/replies)."""
        if channel not in self.channels:
            self.add_channel(channel)
        if user not in self.users:  # so users.info can name every author the fake knows
            self.add_user(user, is_bot=bot_id is not None)
        return self.add_message(channel, text=text, user=user, thread_ts=thread_ts, bot_id=bot_id)

    def seed_thread(
        self, channel: str, *, replies: int, user: str = "UHUMAN", text: str = "message {i}"
    ) -> FakeMessage:
        """A parent plus `replies` replies; `text` is formatted with i = 0 (parent) .. replies. Returns the parent."""
        parent = self.seed_message(channel, text.format(i=0), user=user)
        for i in range(1, replies + 1):
            self.seed_message(channel, text.format(i=i), user=user, thread_ts=parent.ts)
        return parent

    def new_response_url(self, *, channel: str, user: str) -> str:
        """A response_url for a slash command or shortcut invoked by `user` in `channel`."""
        url_id = uuid.uuid4().hex
        self._response_urls[url_id] = (channel, user)
        return f"{self.base_url}{RESPONSE_URL_PATH}/{url_id}"

    # ---- faults and rates ------------------------------------------------------------------------

    def inject(self, method: str, fault: Fault, *, times: int = 1) -> None:
        """Play `fault` on the next `times` calls of `method` (queued after faults already injected)."""
        self._faults.setdefault(method, []).extend([fault] * times)

    def set_rate(self, method: str, rate: Rate) -> None:
        self.limiter.rates[method] = rate

    # ---- queries ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def count_429(self, method: str | None = None) -> int:
        return self.rate_limited[method] if method else sum(self.rate_limited.values())

    def message(self, channel: str, ts: str) -> FakeMessage:
        return self.messages[(channel, ts)]

    def versions(self, channel: str, ts: str) -> list[MessageVersion]:
        return list(self.messages[(channel, ts)].versions)

    def messages_in(self, channel: str, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Every message of a channel (threads included), oldest first."""
        found = [
            m for (c, _), m in self.messages.items() if c == channel and (include_deleted or not m.deleted)
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def thread(self, channel: str, thread_ts: str) -> list[FakeMessage]:
        """Parent and replies, oldest first."""
        return [m for m in self.messages_in(channel) if m.ts == thread_ts or m.thread_ts == thread_ts]

    def bot_messages(self, channel: str) -> list[FakeMessage]:
        return [m for m in self.messages_in(channel) if m.bot_id is not None]

    # ---- Socket Mode conveniences ----------------------------------------------------------------

    async def push_events_api(
        self, body: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Push an event_callback body (see slack_payloads.event_callback); returns the envelope_id."""
        return await self.socket.push(
            type="events_api",
            payload=body,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    async def push_slash_command(self, form: dict[str, str]) -> str:
        return await self.socket.push(type="slash_commands", payload=form, accepts_response_payload=True)

    async def push_interactive(self, payload: dict[str, Any]) -> str:
        return await self.socket.push(type="interactive", payload=payload, accepts_response_payload=False)

    async def wait_for_ack(self, envelope_id: str) -> SocketAck:
        """The app's ack for one envelope (fails after slack_socket.WAIT_LIMIT_SECONDS)."""
        return await self.socket.wait_for_ack(envelope_id)

    # ---- state changes used by the method handlers -----------------------------------------------

    def new_ts(self) -> str:
        """Slack-style ts ("seconds.microseconds"), unique and increasing across the whole fake."""
        self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def version_of(self, message: FakeMessage, kind: VersionKind) -> MessageVersion:
        blocks = list(message.blocks) if message.blocks is not None else None
        return MessageVersion(text=message.text, blocks=blocks, at=self.now(), kind=kind)

    def add_message(
        self,
        channel: str,
        *,
        text: str,
        user: str,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        blocks: list[Any] | None = None,
        kind: VersionKind = "post",
    ) -> FakeMessage:
        message = FakeMessage(
            channel=channel,
            ts=self.new_ts(),
            text=text,
            user=user,
            thread_ts=thread_ts,
            bot_id=bot_id,
            blocks=blocks,
        )
        message.versions.append(self.version_of(message, kind))
        self.messages[(channel, message.ts)] = message
        return message

    def delete_message(self, channel: str, ts: str) -> None:
        message = self.messages[(channel, ts)]
        message.deleted = True
        message.streaming = False
        message.versions.append(self.version_of(message, "delete"))

    def add_ephemeral(
        self, channel: str, *, user: str, text: str, blocks: list[Any] | None, thread_ts: str | None
    ) -> Ephemeral:
        ephemeral = Ephemeral(
            channel=channel,
            user=user,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            message_ts=self.new_ts(),
            at=self.now(),
        )
        self.ephemerals.append(ephemeral)
        return ephemeral

    # ---- HTTP plumbing ---------------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return params

    def _authenticate(self, request: web.Request, params: dict[str, Any], method: str) -> Workspace:
        header = request.headers.get("Authorization", "")
        token = (
            header.removeprefix("Bearer ").strip()
            if header.startswith("Bearer ")
            else str(params.get("token", ""))
        )
        if not token:
            raise Refusal("not_authed")
        found = self._tokens.get(token)
        if found is None:
            raise Refusal("invalid_auth")
        ws, kind = found
        if (kind == "app") != (method in APP_TOKEN_METHODS):
            raise Refusal("not_allowed_token_type")
        return ws

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._read_params(request)
        recorded = {k: v for k, v in params.items() if k != "token"}
        team: str | None = None
        granted: dict[str, str] = {}

        def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
            self.calls.append(
                ApiCall(
                    method=method,
                    params=recorded,
                    at=self.now(),
                    status=status,
                    ok=bool(body.get("ok")),
                    error=body.get("error"),
                    team_id=team,
                )
            )
            if status == 429:
                self.rate_limited[method] += 1
            return web.json_response(body, status=status, headers={**granted, **(headers or {})})

        try:
            ws = self._authenticate(request, params, method)
        except Refusal as refusal:
            return answer(200, {"ok": False, "error": refusal.error})
        team = ws.team_id
        if method not in APP_TOKEN_METHODS:
            granted["x-oauth-scopes"] = ",".join(self.scopes)
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])

        queued = self._faults.get(method)
        if queued:
            fault = queued.pop(0)
            if fault.kind == "429":
                header = retry_after_header(fault.retry_after, fractional=self.fractional_retry_after)
                return answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": header})
            if fault.kind == "http_error":
                return answer(fault.status, {"ok": False, "error": "fatal_error"})
            if fault.kind == "api_error":
                return answer(200, {"ok": False, "error": fault.error})
            if fault.kind == "drop":
                self.calls.append(
                    ApiCall(
                        method=method,
                        params=recorded,
                        at=self.now(),
                        status=0,
                        ok=False,
                        error="dropped",
                        team_id=team,
                    )
                )
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError  # nothing more to say on a closed socket
            if fault.kind == "delete_message":
                key = (str(params.get("channel")), str(params.get("ts")))
                if key in self.messages:
                    self.delete_message(*key)

        wait = self.limiter.take(team=ws.team_id, method=method, channel=params.get("channel"))
        if wait > 0:
            header = retry_after_header(wait, fractional=self.fractional_retry_after)
            return answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": header})

        handler = DIRECTORY_METHODS.get(method) or METHODS.get(method)
        if handler is None:
            return answer(200, {"ok": False, "error": "unknown_method"})
        try:
            result = handler(self, ws, params)
        except Refusal as refusal:
            return answer(200, {"ok": False, "error": refusal.error, **refusal.extra})
        return answer(200, {"ok": True, **result})

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        url_id = request.match_info["url_id"]
        target = self._response_urls.get(url_id)
        if target is None:
            return web.Response(status=404, text="no_such_response_url")
        try:
            payload = json.loads(await request.text())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        response_type = str(payload.get("response_type") or "ephemeral")  # Slack's default is ephemeral
        self.response_url_posts.append(
            ResponseUrlPost(url_id=url_id, payload=payload, response_type=response_type, at=self.now())
        )
        channel, user = target
        text = str(payload.get("text") or "")
        blocks = payload.get("blocks")
        if response_type == "in_channel":
            if channel not in self.channels:
                self.add_channel(channel)
            self.add_message(
                channel, text=text, user=self.bot_user_id, bot_id=self.workspace.bot_id, blocks=blocks
            )
        else:
            self.add_ephemeral(channel, user=user, text=text, blocks=blocks, thread_ts=None)
        return web.json_response({"ok": True})
