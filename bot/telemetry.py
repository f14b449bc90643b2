"""What bot/ tells operators: the Telemetry port, and a null one for tests and tools that show no metrics.

The use cases call it unconditionally; the composition root (bot/app.py) hands them the Prometheus
implementation (bot/metrics.py), so nothing in the core imports prometheus_client. Every method is a report, never
a question: an implementation must not raise into the call path it observes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: this module stays importable without the live-reply machinery
    from bot.budgets import BudgetState
    from bot.live_reply import ReplyStats
    from bot.types import ChannelRef
    from llm.types import LedgerRecord


class Telemetry(Protocol):
    def observe_call(self, record: LedgerRecord) -> None:
        """One model call or response-cache hit, as the router wrote it to the ledger (a router observer)."""
        ...

    def observe_reply(
        self, stats: ReplyStats, *, platform: str, feature: str, ok: bool, started_at: float
    ) -> None:
        """A finished live reply: time to placeholder and to first text, edits, 429s, and how it ended."""
        ...

    def observe_budget(self, channel: ChannelRef, state: BudgetState, *, own_budget: bool) -> None:
        """The month's spend against a channel's budget, each time it was checked."""
        ...

    def refused(self, platform: str, reason: str) -> None:
        """A request turned away before any model call (reason: budget, user_rate)."""
        ...

    def platform_event(self, platform: str, kind: str) -> None:
        """For adapters: a delivery answered without a reply (kinds are a fixed set per adapter, never ids)."""
        ...

    def platform_rate_limited(self, platform: str, call: str, n: int = 1) -> None:
        """For adapters: 429s outside live replies (those are counted from ReplyStats)."""
        ...


class NullTelemetry:
    """Telemetry that goes nowhere: the default of a use case built without a metrics registry."""

    def observe_call(self, record: LedgerRecord) -> None:
        return None

    def observe_reply(
        self, stats: ReplyStats, *, platform: str, feature: str, ok: bool, started_at: float
    ) -> None:
        return None

    def observe_budget(self, channel: ChannelRef, state: BudgetState, *, own_budget: bool) -> None:
        return None

    def refused(self, platform: str, reason: str) -> None:
        return None

    def platform_event(self, platform: str, kind: str) -> None:
        return None

    def platform_rate_limited(self, platform: str, call: str, n: int = 1) -> None:
        return None
