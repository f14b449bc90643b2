"""The small interface each provider module implements. Only llm/openai_provider.py imports openai and only
llm/anthropic_provider.py imports anthropic; everything above them sees Deltas and ErrorInfo."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2

from llm.routes import RouteEntry
from llm.servers import StructuredMode
from llm.types import Request, Usage

# Normalised finish reasons: OpenAI's "length" and Anthropic's "max_tokens" both mean the answer was cut short.
FINISH_LENGTH = "length"


@dataclass(slots=True)  # not frozen: one is built per streamed token, and frozen __init__ costs more
class Delta:
    text: str = ""  # answer text, or the JSON text of a structured answer
    usage: Usage | None = None  # latest usage figures seen so far
    final_usage: bool = False  # True when ``usage`` is the provider's final, complete count
    finish: str | None = None  # the finish reason, when the stream says it ended (FINISH_LENGTH: cut short)
    accepted: bool = False  # the server accepted the work (response headers arrived): first-token clock starts


@dataclass(frozen=True, slots=True)
class StructuredSpec:
    name: str
    json_schema: dict[str, Any]
    mode: StructuredMode = StructuredMode.JSON_SCHEMA  # how this call asks for it (llm/servers.py)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    # rate_limited, overloaded, server, timeout, connection, auth, bad_request, stream, model_not_found,
    # context_length_exceeded, interrupted (ended without a finish reason), empty (ended with no answer at all)
    kind: str
    retryable: bool
    retry_after_s: float | None = None
    status: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 10.0
    first_token_s: float = 45.0  # from the server accepting the request (headers received) to the first text
    idle_s: float = 30.0  # longest silence between two pieces of a stream
    # From sending the request to the server accepting it (response headers): a busy self-hosted server may
    # queue the request first, and that wait must not eat into the first-token timeout.
    accept_s: float = 120.0
    # First-token timeout of self-hosted servers (base URL not the provider's own); None: ``first_token_s``.
    self_hosted_first_token_s: float | None = None


class Provider(Protocol):
    name: str
    base_url: str  # where the server is ("" for the provider's own API)
    self_hosted: bool  # base_url is not the provider's own API
    default_structured_mode: StructuredMode

    def stream(
        self,
        entry: RouteEntry,
        request: Request,
        *,
        structured: StructuredSpec | None = None,
        streamed: bool = True,
    ) -> AsyncGenerator[Delta, None]:
        """Deltas of the answer. The first one has ``accepted`` once the server answered with headers; the last
        one carries the finish reason if the server sent one. ``streamed=False`` asks for the whole answer at once
        (one Delta): servers answer errors there that a stream hides (llama.cpp's context overflow)."""
        ...

    async def context_window(self, entry: RouteEntry) -> int | None:
        """The context window the server reports for ``entry`` (self-hosted servers), or None."""
        ...

    def classify(self, exc: BaseException) -> ErrorInfo | None:
        """What an exception raised by ``stream`` means; None when it is not a provider error."""
        ...

    async def list_models(self) -> list[str]:
        """Model ids the server offers (its ``models.list``)."""
        ...

    async def close(self) -> None: ...


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retry_after_from_headers(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait, as the SDKs read it: ``retry-after-ms`` first, then ``retry-after`` as seconds or as an
    HTTP date (RFC 9110 §10.2.3; openai-python ``_parse_retry_after_header``). None when absent or unparsable."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:  # an HTTP date is always GMT; be lenient about how it was written
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - (time.time() if now is None else now)
            return max(seconds, 0.0)
        if seconds >= 0:
            return seconds
    return None


def should_retry(status: int, headers: Any) -> bool:
    """The server's own word first: ``x-should-retry: true|false`` overrides the status (both SDKs'
    ``_should_retry``); otherwise the statuses the SDKs retry."""
    flag = headers.get("x-should-retry") if headers is not None else None
    if flag == "true":
        return True
    if flag == "false":
        return False
    return status in RETRYABLE_STATUS


def status_error(status: int, headers: Any, message: str, *, model_missing: bool = False) -> ErrorInfo:
    """ErrorInfo for an HTTP error answer: kind, whether and when to retry (headers first)."""
    kind = "model_not_found" if model_missing else status_kind(status)
    return ErrorInfo(kind, should_retry(status, headers), retry_after_from_headers(headers), status, message)


def status_kind(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status in (401, 403):
        return "auth"
    if status in (408,):
        return "timeout"
    if status >= 500:
        return "server"
    return "bad_request"


DEFAULT_TIMEOUTS = Timeouts()
# A self-hosted server on a CPU reads a long prompt slowly before its first token: llama-cpp-python took 63 s for a
# 4,231-token prompt on 2 busy cores (measured). The app gives self-hosted servers at least this long unless a
# route sets its own first-token timeout; cloud APIs keep the tighter default.
SELF_HOSTED_FIRST_TOKEN_S = 300.0


def self_hosted_timeouts(timeouts: Timeouts) -> Timeouts:
    if timeouts.self_hosted_first_token_s is None:
        return timeouts
    return replace(timeouts, first_token_s=max(timeouts.first_token_s, timeouts.self_hosted_first_token_s))


def http_timeout(timeouts: Timeouts) -> httpx2.Timeout:
    """The SDK client's timeouts: per socket operation, never a whole-request cap that would cut off a long
    answer still arriving. The read timeout is only a backstop behind the router's idle watchdog."""
    # Reading the headers is a read, and so is waiting for a whole (non-streamed) answer.
    read = max(timeouts.idle_s * 2, timeouts.accept_s + timeouts.connect_s, timeouts.first_token_s)
    return httpx2.Timeout(connect=timeouts.connect_s, read=read, write=timeouts.idle_s, pool=timeouts.connect_s)


def wire_error(exc: BaseException) -> ErrorInfo | None:
    """Errors both SDKs let through bare while a stream is being read (not wrapped in their own classes)."""
    if isinstance(exc, json.JSONDecodeError):  # a malformed SSE data line
        return ErrorInfo("stream", True, message="malformed stream data")
    if isinstance(exc, httpx2.TimeoutException):
        return ErrorInfo("timeout", True, message=type(exc).__name__)
    if isinstance(exc, (httpx2.TransportError, httpx2.StreamError)):
        return ErrorInfo("connection", True, message=type(exc).__name__)
    return None


# The providers' own API hosts (their SDKs' default base URLs). Any other base URL is a server of the user's own.
PROVIDER_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}


def is_self_hosted(provider: str, base_url: str | None) -> bool:
    """True when ``base_url`` points somewhere other than the provider itself (Ollama, vLLM, llama.cpp, …)."""
    if not base_url:
        return False
    return (urlsplit(base_url).hostname or "").lower() != PROVIDER_HOSTS.get(provider)
