"""Delivers signed Slack requests (Events API, slash commands, interactivity) to an app over HTTP.

Signing: https://docs.slack.dev/authentication/verifying-requests-from-slack —
x-slack-signature = "v0=" + hex(HMAC-SHA256(signing_secret, f"v0:{timestamp}:{body}")), and apps must
refuse timestamps more than 5 minutes old. Retried deliveries carry x-slack-retry-num and
x-slack-retry-reason (https://docs.slack.dev/apis/events-api/#retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

# Slack's replay window; a "stale" delivery is older than this.
SIGNATURE_MAX_AGE_SECONDS = 5 * 60


def sign(secret: str, timestamp: int, body: bytes) -> str:
    basestring = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryResult:
    status: int
    body: str
    headers: dict[str, str]
    ack_seconds: float  # request sent → response headers received (what Slack's 3 s deadline measures)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackDelivery:
    """Posts signed requests to `app_url` (e.g. "http://127.0.0.1:3000/slack/events").

    Options on every send: retry_num (adds x-slack-retry-num / x-slack-retry-reason), forged (a
    signature made with the wrong secret), stale (a timestamp older than 5 minutes, correctly signed).
    """

    def __init__(self, app_url: str, signing_secret: str, *, timeout: float = 10.0) -> None:
        self.app_url = app_url
        self.signing_secret = signing_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SlackDelivery:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_event(
        self,
        body: dict[str, Any],
        *,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        forged: bool = False,
        stale: bool = False,
    ) -> DeliveryResult:
        """Deliver an Events API body (see slack_payloads.event_callback) as JSON."""
        raw = json.dumps(body).encode()
        return await self.send_raw(
            raw,
            content_type="application/json",
            retry_num=retry_num,
            retry_reason=retry_reason,
            forged=forged,
            stale=stale,
        )

    async def send_slash_command(
        self, form: dict[str, str], *, forged: bool = False, stale: bool = False
    ) -> DeliveryResult:
        raw = urllib.parse.urlencode(form).encode()
        return await self.send_raw(
            raw, content_type="application/x-www-form-urlencoded", forged=forged, stale=stale
        )

    async def send_interactive(
        self, payload: dict[str, Any], *, forged: bool = False, stale: bool = False
    ) -> DeliveryResult:
        """Shortcuts and block actions arrive as a form with one field, payload=<json>."""
        raw = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send_raw(
            raw, content_type="application/x-www-form-urlencoded", forged=forged, stale=stale
        )

    async def send_raw(
        self,
        raw: bytes,
        *,
        content_type: str,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        forged: bool = False,
        stale: bool = False,
    ) -> DeliveryResult:
        timestamp = int(time.time())
        if stale:
            timestamp -= SIGNATURE_MAX_AGE_SECONDS + 60
        secret = self.signing_secret + "-forged" if forged else self.signing_secret
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": sign(secret, timestamp, raw),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        started = time.monotonic()
        async with self._session.post(self.app_url, data=raw, headers=headers) as response:
            acked = time.monotonic() - started
            text = await response.text()
            return DeliveryResult(
                status=response.status, body=text, headers=dict(response.headers), ack_seconds=acked
            )
