"""One Slack Web API call as the core sees it: Slack's error answers become the core's exceptions.

A 429 (or ``ratelimited``) becomes ``PlatformRateLimited`` with Slack's Retry-After, ``msg_too_long`` becomes
``MessageTooLong``, a message, thread or channel that is gone becomes ``MessageGone``; any other Slack error is
raised as slack_sdk's ``SlackApiError`` for the caller to read. Every part of the Slack adapter calls through one
``SlackCalls``, which also counts the 429s met.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.types import MessageGone, MessageTooLong, PlatformRateLimited

GONE_ERRORS = frozenset(
    {"message_not_found", "channel_not_found", "not_in_channel", "is_archived", "thread_not_found", "cant_update_message"}
)


def retry_after(response: AsyncSlackResponse | Any) -> float:
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0  # Slack always sends Retry-After with a 429; a second is a sane guess if a proxy dropped it


def translate(exc: SlackApiError) -> Exception:
    """Slack's answer → the core's exception; anything else comes back unchanged for the caller to raise."""
    response = exc.response
    error = str(response.get("error", "")) if response is not None else ""
    if response is not None and (getattr(response, "status_code", 200) == 429 or error == "ratelimited"):
        return PlatformRateLimited(retry_after(response))
    if error == "msg_too_long":
        return MessageTooLong(error)
    if error in GONE_ERRORS:
        return MessageGone(error)
    return exc


class SlackCalls:
    """Makes Web API calls with Slack's errors translated (``translate``), counting the 429s met."""

    def __init__(self) -> None:
        self.rate_limited = 0  # 429s met (for the benches and logs)

    async def __call__(
        self, method: Callable[..., Awaitable[AsyncSlackResponse | None]], **params: Any
    ) -> AsyncSlackResponse:
        try:
            response = await method(**params)
        except SlackApiError as exc:
            translated = translate(exc)
            if isinstance(translated, PlatformRateLimited):
                self.rate_limited += 1
            if translated is exc:
                raise
            raise translated from exc
        assert response is not None  # the stream helper returns None only while buffering; we never buffer
        return response
