"""One attempt against one route entry: what the provider's stream produced so far, and what its end means.

The router's retry loop makes an ``Attempt`` per try; the stream timeouts (llm/stream_timeouts.py) read it to know
whether text arrived, and the ledger (llm/ledger.py) records it — failed and interrupted attempts included."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llm.provider import ErrorInfo
from llm.routes import RouteEntry
from llm.types import Outcome, Usage


@dataclass
class Attempt:
    """What one attempt against one route entry produced so far."""

    entry: RouteEntry
    started: float = field(default_factory=time.monotonic)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ttft: float | None = None
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    final_usage: bool = False
    finish: str | None = None
    siblings: int = 0  # most other calls to the same server seen in flight during this one

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def failed_outcome(self) -> Outcome:
        """How the attempt counts when it broke: interrupted once text arrived (the user may have seen it)."""
        return Outcome.INTERRUPTED if self.parts else Outcome.ERROR

    @property
    def answered(self) -> bool:
        """The stream ended as a finished answer: a finish reason and some text."""
        return self.finish is not None and bool(self.parts)

    def ending(self) -> ErrorInfo:
        """What a stream that ended without an error but without a finished answer means."""
        if not self.parts:
            # Nothing at all (llama.cpp streams back nothing for a prompt past its context).
            return ErrorInfo("empty", True, message="the stream ended with no answer")
        # Text, then a normal end without a finish reason: the server stopped generating (llama.cpp does when the
        # next request arrives). Never an answer to keep, cache or record as ok.
        return ErrorInfo("interrupted", True, message="the stream ended without a finish reason")


class Ended(Exception):
    """A stream that ended without error but not as a finished answer (no finish reason, or nothing at all)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info
