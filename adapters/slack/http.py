"""The signed-HTTP front: Slack's requests at /slack/events (and GET /healthz for load balancers).

Signatures are checked first (``v0:{timestamp}:{body}`` HMAC-SHA256 with the signing secret, FACTS.md); a bad or
stale one gets the 401 Bolt would answer. From there on every signed event delivery gets a 200 — one Bolt cannot
read, one that fails in a listener, one no listener takes — because Slack retries failed deliveries and disables the
event subscription of an app whose deliveries keep failing. Commands and interactivity get Bolt's own answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
# Slack's notice that it dropped this app's events for a minute (https://docs.slack.dev/apis/events-api/#rate-limiting)
RATE_LIMITED = "app_rate_limited"


class HttpFront:
    """Serves one Bolt app over aiohttp, signature checked first, every signed event delivery acknowledged."""

    def __init__(
        self,
        bolt: AsyncApp,
        *,
        signing_secret: str | None,
        ignored: Callable[[str, str], None],
        busy: Callable[[], int],
    ) -> None:
        self._bolt = bolt
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._ignored = ignored
        self._busy = busy

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
            bolt_response = await self._bolt.async_dispatch(await to_bolt_request(request))
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
        return web.json_response({"ok": True, "platform": "slack", "busy": self._busy()})


def _is_event_delivery(raw: bytes) -> bool:
    """An Events API delivery (JSON; commands and interactivity arrive form-encoded)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and ("event" in body or body.get("type") in ("event_callback", RATE_LIMITED))
