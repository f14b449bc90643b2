"""Request ids: one id per platform event, carried by every log line and every task spawned while handling it.

Only the standard library: an adapter that tags its work with a request id imports neither Prometheus nor the
health server (tests/test_observability.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    received_at: float  # time.monotonic() when the event arrived: where "time to first visible text" starts
    fields: dict[str, str] = field(default_factory=dict)  # e.g. platform, event_id: added to every log line


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "supportbot_request", default=None
)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def current_request() -> RequestContext | None:
    return _current.get()


@contextlib.contextmanager
def request_context(request_id: str | None = None, **fields: str) -> Iterator[RequestContext]:
    """Everything logged inside — and in every task created inside, since asyncio tasks copy the context when
    they are created — carries this request id. An adapter wraps the handling of one event (and the spawning of
    its background work) in it, so one mention's lines from event to final edit share one id."""
    ctx = RequestContext(request_id or new_request_id(), time.monotonic(), dict(fields))
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
