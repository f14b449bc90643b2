"""Scripted faults (and verbatim replays) for the fake LLM server, consumed one per request, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Api = Literal["openai", "anthropic"]
FaultKind = Literal["http_error", "stall", "disconnect", "stream_error", "malformed"]


@dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong with one request. Build with the class methods; ``api`` None matches either API.

    Stream faults act after ``after_pieces`` content pieces (0: before the first token, after the preamble:
    OpenAI's role chunk, Anthropic's message_start/content_block_start/ping). On a non-streamed request a stall
    delays the answer, a disconnect drops the connection without a response, malformed truncates the JSON body
    and stream_error becomes the HTTP error itself (529 Anthropic, 500 OpenAI).
    """

    kind: FaultKind
    api: Api | None = None
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    error_type: str | None = None  # overrides the body's error.type
    message: str = ""
    after_pieces: int = 0
    stall_s: float = 0.0
    hang: bool = False  # stall until the server stops, then drop the connection
    before_headers: bool = False  # stall before the response starts (the SDK is still awaiting the request)
    malformed: Literal["invalid_json", "garbage"] = "invalid_json"

    @classmethod
    def http_error(cls, status: int, *, error_type: str | None = None, message: str = "",
                   headers: dict[str, str] | None = None, api: Api | None = None) -> Fault:
        """An error response with the provider's error body shape (see llm_wire.*_error_body)."""
        return cls("http_error", api, status, tuple((headers or {}).items()), error_type, message)

    @classmethod
    def rate_limited(cls, *, retry_after: float | None = None, retry_after_ms: int | None = None,
                     api: Api | None = None) -> Fault:
        """429; ``retry-after`` in seconds and/or ``retry-after-ms`` (both SDKs prefer -ms), or no header."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls.http_error(429, headers=headers, api=api)

    @classmethod
    def overloaded(cls, *, api: Api | None = None) -> Fault:
        """529 ``overloaded_error`` (Anthropic's overload status; on OpenAI an OpenAI-shaped 529 body)."""
        return cls.http_error(529, error_type="overloaded_error" , message="Overloaded", api=api)

    @classmethod
    def server_error(cls, status: int = 500, *, api: Api | None = None) -> Fault:
        return cls.http_error(status, api=api)

    @classmethod
    def unauthorized(cls, *, api: Api | None = None) -> Fault:
        return cls.http_error(401, message="invalid x-api-key", api=api)

    @classmethod
    def bad_request(cls, message: str = "bad request (fake)", *, api: Api | None = None) -> Fault:
        return cls.http_error(400, message=message, api=api)

    @classmethod
    def stall(cls, seconds: float = 0.0, *, after_pieces: int = 0, hang: bool = False,
              before_headers: bool = False, api: Api | None = None) -> Fault:
        return cls("stall", api, after_pieces=after_pieces, stall_s=seconds, hang=hang,
                   before_headers=before_headers)

    @classmethod
    def disconnect(cls, *, after_pieces: int = 0, api: Api | None = None) -> Fault:
        """Abort the socket after k pieces: no closing chunk, no usage chunk, no [DONE] / message_stop."""
        return cls("disconnect", api, after_pieces=after_pieces)

    @classmethod
    def stream_error(cls, *, after_pieces: int = 0, error_type: str = "overloaded_error",
                     message: str = "Overloaded", api: Api | None = None) -> Fault:
        """Mid-stream error: Anthropic ``event: error``; OpenAI a ``data: {"error": ...}`` line. Then the stream ends."""
        return cls("stream_error", api, error_type=error_type, message=message, after_pieces=after_pieces)

    @classmethod
    def malformed_sse(cls, *, after_pieces: int = 0, kind: Literal["invalid_json", "garbage"] = "invalid_json",
                      api: Api | None = None) -> Fault:
        """``invalid_json``: a data line whose JSON is cut short (the SDKs raise while parsing it).
        ``garbage``: a non-SSE line (an HTML error fragment), which SSE decoders ignore; the stream goes on."""
        return cls("malformed", api, after_pieces=after_pieces, malformed=kind)


@dataclass(frozen=True, slots=True)
class Replay:
    """A recorded response body served verbatim to the next matching request."""

    body: bytes
    api: Api | None = None
    status: int = 200
    content_type: str = "text/event-stream; charset=utf-8"
