"""What the fake Slack knows and remembers: workspaces, channels, users, messages with every version,
API calls, injected faults, Socket Mode acks and response_url posts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

VersionKind = Literal["post", "update", "stream_start", "stream_append", "stream_stop", "delete"]


@dataclass(frozen=True)
class Workspace:
    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    app_token: str
    name: str = "Fake Workspace"


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_private: bool = False
    is_im: bool = False
    team_id: str = ""


@dataclass
class User:
    id: str
    name: str
    display_name: str = ""
    real_name: str = ""
    is_bot: bool = False
    team_id: str = ""


@dataclass(frozen=True)
class MessageVersion:
    """One visible state of a message; `at` is time.monotonic() when the fake applied it."""

    text: str
    blocks: list[Any] | None
    at: float
    kind: VersionKind


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    bot_id: str | None = None
    blocks: list[Any] | None = None
    deleted: bool = False
    streaming: bool = False
    last_stream_activity: float = 0.0
    versions: list[MessageVersion] = field(default_factory=list)

    def as_api(self) -> dict[str, Any]:
        """The message as Slack's API shows it (conversations.*, chat.postMessage's `message`)."""
        body: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.bot_id:
            body["bot_id"] = self.bot_id
        if self.thread_ts:
            body["thread_ts"] = self.thread_ts
        if self.blocks is not None:
            body["blocks"] = self.blocks
        return body


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    status: int  # HTTP status the fake answered (200 even for ok=false, like Slack)
    ok: bool
    error: str | None
    team_id: str | None


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    message_ts: str
    at: float


@dataclass(frozen=True)
class ResponseUrlPost:
    url_id: str
    payload: dict[str, Any]
    response_type: str  # "ephemeral" (Slack's default) or "in_channel"
    at: float


@dataclass(frozen=True)
class SocketAck:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float


FaultKind = Literal["429", "http_error", "drop", "api_error", "delete_message"]


@dataclass(frozen=True)
class Fault:
    """A failure the fake plays instead of (or before) the next call(s) of a method.

    Build with the class methods; enqueue with `FakeSlack.inject(method, fault, times=N)`.
    """

    kind: FaultKind
    retry_after: float = 1.0
    status: int = 500
    error: str = ""

    @classmethod
    def rate_limited(cls, *, retry_after: float = 1.0) -> Fault:
        """HTTP 429 + Retry-After + {"ok": false, "error": "ratelimited"}."""
        return cls(kind="429", retry_after=retry_after)

    @classmethod
    def server_error(cls, *, status: int = 500) -> Fault:
        return cls(kind="http_error", status=status)

    @classmethod
    def connection_drop(cls) -> Fault:
        """The fake closes the socket without answering."""
        return cls(kind="drop")

    @classmethod
    def api_error(cls, error: str) -> Fault:
        """HTTP 200 with {"ok": false, "error": error}, e.g. "msg_too_long", "channel_not_found", "ratelimited"."""
        return cls(kind="api_error", error=error)

    @classmethod
    def delete_target(cls) -> Fault:
        """Delete the message named by the call's (channel, ts) first, then run the call as usual."""
        return cls(kind="delete_message")
