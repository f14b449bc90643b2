"""The fake Discord's REST API (aiohttp), mounted under /api/v10 by `FakeDiscord`.

Every request is recorded, rate limited (see discord_ratelimit.py) and answered with payloads shaped like
Discord's. Routes are the ones discord.py 2.7 calls for login, messaging, history, application commands and
interaction responses; anything else answers 404 and is still recorded, so a test can see what was asked.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_payloads import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    Json,
    embeds_total_chars,
    now_iso,
)

if TYPE_CHECKING:
    from tests.fakes.discord_api import FakeDiscord, FakeInteraction

API_PREFIX = "/api/v10"

# Message limits, https://discord.com/developers/docs/resources/message#create-message-jsonform-params and
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits
MAX_CONTENT_CHARS = 2000
MAX_EMBED_DESCRIPTION_CHARS = 4096
MAX_EMBEDS_TOTAL_CHARS = 6000
# History pages at most 100 messages, https://discord.com/developers/docs/resources/message#get-channel-messages
MAX_HISTORY_LIMIT = 100

# Interaction callback types, https://discord.com/developers/docs/interactions/receiving-and-responding
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5

# JSON error codes, https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
INVALID_FORM_BODY = 50035
EMPTY_MESSAGE = 50006
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_INTERACTION = 10062
MISSING_ACCESS = 50001
ALREADY_ACKNOWLEDGED = 40060

Handler = Callable[[web.Request, Json], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    route: str  # e.g. "PATCH /channels/{channel_id}/messages/{message_id}"
    path: str
    query: dict[str, str]
    body: Json | list[Any] | None
    status: int


class DiscordApiError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        body: Json = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, status=self.status)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with the bare `application/json` content type Discord sends.

    discord.py's `json_or_text` compares the header for equality, so aiohttp's default
    `application/json; charset=utf-8` would make it treat every body as text.
    """
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def _too_long(max_chars: int) -> Json:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {max_chars} or fewer in length."}]}


def validate_message_body(body: Json, *, require_something: bool) -> None:
    """Reject what Discord rejects with 50035 (too long) or 50006 (empty)."""
    errors: Json = {}
    content = body.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT_CHARS:
        errors["content"] = _too_long(MAX_CONTENT_CHARS)
    embeds = body.get("embeds") or []
    embed_errors = {
        str(i): {"description": _too_long(MAX_EMBED_DESCRIPTION_CHARS)}
        for i, embed in enumerate(embeds)
        if len(embed.get("description") or "") > MAX_EMBED_DESCRIPTION_CHARS
    }
    if embed_errors:
        errors["embeds"] = embed_errors
    elif embeds_total_chars(embeds) > MAX_EMBEDS_TOTAL_CHARS:
        message = f"Embed size exceeds maximum size of {MAX_EMBEDS_TOTAL_CHARS}"
        errors["embeds"] = {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": message}]}
    if errors:
        raise DiscordApiError(400, INVALID_FORM_BODY, "Invalid Form Body", errors)
    if require_something and not content and not embeds:
        raise DiscordApiError(400, EMPTY_MESSAGE, "Cannot send an empty message")


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    bucket: str
    handler: Handler
    authenticated: bool = True
    exempt_from_global: bool = False


class RestApi:
    """Route table and handlers; state lives in the `FakeDiscord` passed in."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.routes = [
            _Route("GET", "/users/@me", "users_me", self.get_me),
            _Route("GET", "/oauth2/applications/@me", "application", self.get_application),
            _Route("GET", "/applications/@me", "application", self.get_application),
            _Route("GET", "/gateway", "gateway", self.get_gateway, authenticated=False),
            _Route("GET", "/gateway/bot", "gateway", self.get_gateway),
            _Route("GET", "/channels/{channel_id}", "channel", self.get_channel),
            _Route("GET", "/channels/{channel_id}/messages", "history", self.get_history),
            _Route("POST", "/channels/{channel_id}/messages", "create_message", self.create_message),
            _Route("GET", "/channels/{channel_id}/messages/{message_id}", "get_message", self.get_message),
            _Route("PATCH", "/channels/{channel_id}/messages/{message_id}", "edit_message", self.edit_message),
            _Route("DELETE", "/channels/{channel_id}/messages/{message_id}", "delete_message", self.delete_message),
            _Route("POST", "/channels/{channel_id}/typing", "typing", self.typing),
            _Route("PUT", "/applications/{application_id}/commands", "commands", self.put_commands),
            _Route("GET", "/applications/{application_id}/commands", "commands", self.get_commands),
            _Route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", "commands", self.put_commands),
            _Route("GET", "/applications/{application_id}/guilds/{guild_id}/commands", "commands", self.get_commands),
            _Route("POST", "/interactions/{interaction_id}/{token}/callback", "interaction_callback",
                   self.interaction_callback, authenticated=False, exempt_from_global=True),
            _Route("POST", "/webhooks/{application_id}/{token}", "webhook", self.followup_create,
                   authenticated=False, exempt_from_global=True),
            _Route("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", "webhook",
                   self.followup_get, authenticated=False, exempt_from_global=True),
            _Route("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", "webhook",
                   self.followup_edit, authenticated=False, exempt_from_global=True),
            _Route("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", "webhook",
                   self.followup_delete, authenticated=False, exempt_from_global=True),
        ]

    def install(self, app: web.Application) -> None:
        from tests.fakes.discord_pins import pin_routes  # its own module; it imports this one

        self.routes.extend(pin_routes(self))
        for route in self.routes:
            app.router.add_route(route.method, API_PREFIX + route.template, self._wrap(route))
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown)

    def _wrap(self, route: _Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        key = f"{route.method} {route.template}"

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await _read_body(request)
            response = await self._answer(route, key, request, body)
            self.fake.requests.append(
                RecordedRequest(route.method, key, request.path, dict(request.query), body, response.status)
            )
            if response.status in (401, 403, 429):
                self.fake.invalid_requests += 1
            self.fake.notify()
            return response

        return handle

    async def _answer(self, route: _Route, key: str, request: web.Request, body: Any) -> web.StreamResponse:
        if route.authenticated and request.headers.get("Authorization") != f"Bot {self.fake.token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        info = request.match_info
        major = info.get("channel_id") or info.get("guild_id") or info.get("token") or ""
        verdict = self.fake.limiter.check(
            route=key, bucket=route.bucket, major=major, exempt_from_global=route.exempt_from_global
        )
        if verdict.status is not None:
            return json_response(verdict.body, status=verdict.status, headers=verdict.headers)
        try:
            response = await route.handler(request, body if isinstance(body, dict) else {"_list": body})
        except DiscordApiError as exc:
            response = exc.response()
        response.headers.update(verdict.headers)
        return response

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        body = await _read_body(request)
        self.fake.requests.append(RecordedRequest(request.method, "unknown", request.path, dict(request.query), body, 404))
        return json_response({"message": "404: Not Found", "code": 0}, status=404)

    # --- login and gateway -------------------------------------------------------------------------

    async def get_me(self, request: web.Request, body: Json) -> web.StreamResponse:
        me = {**self.fake.bot_user, "mfa_enabled": True, "verified": True, "email": None, "locale": "en-US",
              "premium_type": 0, "bio": "", "banner_color": None}
        return json_response(me)

    async def get_application(self, request: web.Request, body: Json) -> web.StreamResponse:
        return json_response(self.fake.application_payload())

    async def get_gateway(self, request: web.Request, body: Json) -> web.StreamResponse:
        payload: Json = {"url": str(self.fake.gateway_url)}
        if request.path.endswith("/bot"):
            payload["shards"] = self.fake.recommended_shards
            payload["session_start_limit"] = {"total": 1000, "remaining": 999, "reset_after": 86_400_000,
                                              "max_concurrency": 1}
        return json_response(payload)

    # --- channels and messages ---------------------------------------------------------------------

    async def get_channel(self, request: web.Request, body: Json) -> web.StreamResponse:
        return json_response(self.fake.require_access(int(request.match_info["channel_id"])))

    async def get_history(self, request: web.Request, body: Json) -> web.StreamResponse:
        channel_id = int(request.match_info["channel_id"])
        self.fake.require_access(channel_id)
        query = request.query
        limit = int(query.get("limit", "50"))
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise DiscordApiError(400, INVALID_FORM_BODY, "Invalid Form Body",
                                  {"limit": {"_errors": [{"code": "NUMBER_TYPE_MAX", "message": "limit 1..100"}]}})
        ids = sorted(self.fake.history.get(channel_id, []))
        if "after" in query:
            # The `limit` messages right after `after`, still answered newest first (discord.py reverses them).
            page = [i for i in ids if i > int(query["after"])][:limit]
        else:
            before = int(query["before"]) if "before" in query else None
            page = [i for i in ids if before is None or i < before][-limit:]
        return json_response([self.fake.messages[i] for i in reversed(page)])

    async def create_message(self, request: web.Request, body: Json) -> web.StreamResponse:
        channel_id = int(request.match_info["channel_id"])
        self.fake.require_access(channel_id)
        validate_message_body(body, require_something=True)
        reference = body.get("message_reference")
        message = self.fake.store_message(
            channel_id=channel_id,
            author_id=self.fake.bot_user_id,
            content=body.get("content") or "",
            embeds=body.get("embeds") or [],
            reference_id=int(reference["message_id"]) if reference else None,
            flags=int(body.get("flags") or 0),
        )
        self.fake.record_write("create", message, body)
        return json_response(message)

    async def get_message(self, request: web.Request, body: Json) -> web.StreamResponse:
        return json_response(self._message_in(request))

    async def edit_message(self, request: web.Request, body: Json) -> web.StreamResponse:
        message = self._message_in(request)
        validate_message_body(body, require_something=False)
        self._apply_edit(message, body)
        self.fake.record_write("edit", message, body)
        return json_response(message)

    async def delete_message(self, request: web.Request, body: Json) -> web.StreamResponse:
        message = self._message_in(request)
        self.fake.remove_message(int(message["id"]))
        self.fake.record_write("delete", message, body)
        return web.Response(status=204)

    async def typing(self, request: web.Request, body: Json) -> web.StreamResponse:
        channel_id = int(request.match_info["channel_id"])
        self.fake.require_access(channel_id)
        self.fake.typing.append(channel_id)
        return web.Response(status=204)

    def _message_in(self, request: web.Request) -> Json:
        channel_id = int(request.match_info["channel_id"])
        self.fake.require_access(channel_id)
        message = self.fake.messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel_id):
            raise DiscordApiError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return message

    @staticmethod
    def _apply_edit(message: Json, body: Json) -> None:
        for key in ("content", "embeds", "flags", "components"):
            if key in body and body[key] is not None:
                message[key] = body[key]
        message["edited_timestamp"] = now_iso()

    # --- application commands and interactions -----------------------------------------------------

    async def put_commands(self, request: web.Request, body: Json) -> web.StreamResponse:
        guild = request.match_info.get("guild_id")
        commands = self.fake.overwrite_commands(int(guild) if guild else None, body.get("_list") or [])
        return json_response(commands)

    async def get_commands(self, request: web.Request, body: Json) -> web.StreamResponse:
        guild = request.match_info.get("guild_id")
        return json_response(self.fake.commands.get(int(guild) if guild else None, []))

    async def interaction_callback(self, request: web.Request, body: Json) -> web.StreamResponse:
        interaction = self._interaction(request)
        if interaction.acknowledged:
            raise DiscordApiError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        interaction.acknowledged = True
        callback_type = int(body["type"])
        data = body.get("data") or {}
        self.fake.record_callback(interaction, callback_type, data)
        flags = int(data.get("flags") or 0)
        result: Json = {"interaction": {"id": str(interaction.id), "type": interaction.payload["type"]}}
        if callback_type in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE):
            loading = callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
            validate_message_body(data, require_something=not loading)
            original = self.fake.store_message(
                channel_id=interaction.home_channel_id, author_id=self.fake.bot_user_id,
                content=data.get("content") or "", embeds=data.get("embeds") or [],
                flags=flags | (FLAG_LOADING if loading else 0), webhook=True,
            )
            interaction.original_id = int(original["id"])
            result["interaction"].update(response_message_id=original["id"], response_message_loading=loading,
                                         response_message_ephemeral=bool(flags & FLAG_EPHEMERAL))
            result["resource"] = {"type": callback_type, "message": original}
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response(result)
        return web.Response(status=204)

    async def followup_create(self, request: web.Request, body: Json) -> web.StreamResponse:
        interaction = self._interaction(request)
        validate_message_body(body, require_something=True)
        message = self.fake.store_message(
            channel_id=interaction.home_channel_id, author_id=self.fake.bot_user_id,
            content=body.get("content") or "", embeds=body.get("embeds") or [],
            flags=int(body.get("flags") or 0), webhook=True,
        )
        self.fake.record_write("followup", message, body)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    async def followup_get(self, request: web.Request, body: Json) -> web.StreamResponse:
        return json_response(self._webhook_message(request))

    async def followup_edit(self, request: web.Request, body: Json) -> web.StreamResponse:
        message = self._webhook_message(request)
        validate_message_body(body, require_something=False)
        self._apply_edit(message, body)
        message["flags"] = int(message.get("flags") or 0) & ~FLAG_LOADING
        kind = "original_edit" if request.match_info["message_id"] == "@original" else "followup_edit"
        self.fake.record_write(kind, message, body)
        return json_response(message)

    async def followup_delete(self, request: web.Request, body: Json) -> web.StreamResponse:
        message = self._webhook_message(request)
        self.fake.remove_message(int(message["id"]))
        self.fake.record_write("followup_delete", message, body)
        return web.Response(status=204)

    def _interaction(self, request: web.Request) -> FakeInteraction:
        interaction = self.fake.interactions.get(request.match_info["token"])
        if interaction is None:
            raise DiscordApiError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        return interaction

    def _webhook_message(self, request: web.Request) -> Json:
        interaction = self._interaction(request)
        raw_id = request.match_info["message_id"]
        message_id = interaction.original_id if raw_id == "@original" else int(raw_id)
        message = self.fake.messages.get(message_id) if message_id is not None else None
        if message is None:
            raise DiscordApiError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return message


async def _read_body(request: web.Request) -> Any:
    """JSON bodies, or the `payload_json` part of a multipart upload (how discord.py sends files)."""
    if not request.can_read_body:
        return None
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        raw = form.get("payload_json")
        return json.loads(raw) if isinstance(raw, str) else None
    text = await request.text()
    return json.loads(text) if text else None
