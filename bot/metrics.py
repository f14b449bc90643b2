"""The Prometheus implementation of the Telemetry port (bot/telemetry.py): what /metrics shows.

Metrics come from two places: every ledger record the model router writes (calls, tokens by class, cost, time to
first token, response-cache hits) and every finished live reply (time to first visible text, edits, 429s). Label
values are bounded by configuration (provider, model, task, platform, feature), never by users or channels —
except the budget gauges, which exist only for channels given their own budget in SUPPORTBOT_CHANNEL_BUDGETS_USD.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

from bot.budgets import BudgetState
from bot.live_reply import ReplyStats
from bot.requestids import current_request
from bot.types import ChannelRef
from llm.types import LedgerRecord, Outcome

log = logging.getLogger(__name__)

TOKEN_CLASSES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
# Seconds. Time to first token: providers answer in 0.3–5 s normally; the router gives up at 45 s by default.
TTFT_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0)
CALL_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Seconds from the event arriving to the placeholder / first model text showing: users of other bots gave up
# on a blank message after a few seconds, so the low buckets are fine-grained.
REPLY_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0)


class CountsUnrecorded(Protocol):
    unrecorded: int  # ModelRouter: ledger writes that raised


class _LedgerFailures:
    """A counter read from the routers at scrape time: the router already counts failed ledger writes."""

    def __init__(self) -> None:
        self.routers: list[CountsUnrecorded] = []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "supportbot_ledger_write_failures", "Ledger writes that failed (model calls missing from spend)"
        )
        family.add_metric([], float(sum(r.unrecorded for r in self.routers)))
        yield family


class Metrics:
    """Telemetry into Prometheus. One registry per running bot (tests build many apps in one process; a global
    registry would mix them)."""

    def __init__(self, *, process_collectors: bool = True) -> None:
        self.registry = r = CollectorRegistry()
        if process_collectors:  # memory, CPU seconds, open fds, GC: the numbers a load test compares
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        model = ["provider", "model"]
        self.model_calls = Counter(
            "supportbot_model_calls",
            "Model calls by outcome (ok, error, interrupted)",
            [*model, "task", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "supportbot_model_tokens", "Tokens by class as billed", [*model, "class"], registry=r
        )
        self.cost = Counter("supportbot_model_cost_usd", "Model spend in USD", [*model, "task"], registry=r)
        self.saved = Counter(
            "supportbot_saved_usd",
            "USD saved by prompt caching (source=prompt) or the response cache (response)",
            [*model, "source"],
            registry=r,
        )
        self.usage_estimated = Counter(
            "supportbot_model_usage_estimated",
            "Calls whose usage the provider did not report (counted locally)",
            model,
            registry=r,
        )
        self.tokens_estimated = Counter(
            "supportbot_model_tokens_estimated",
            "The part of supportbot_model_tokens that was counted locally, not reported by the provider",
            [*model, "class"],
            registry=r,
        )
        self.cost_estimated = Counter(
            "supportbot_model_cost_estimated_usd",
            "The part of supportbot_model_cost_usd that rests on locally counted tokens",
            [*model, "task"],
            registry=r,
        )
        self.unpriced_calls = Counter(
            "supportbot_model_unpriced_calls",
            "Calls to a model no price source knows: their cost is unknown, not in supportbot_model_cost_usd",
            model,
            registry=r,
        )
        self.unpriced_tokens = Counter(
            "supportbot_model_unpriced_tokens", "Tokens of unpriced calls", model, registry=r
        )
        self.ttft = Histogram(
            "supportbot_model_time_to_first_token_seconds",
            "Request start to first text from the model",
            model,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.call_seconds = Histogram(
            "supportbot_model_call_seconds",
            "Whole model call duration",
            model,
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "supportbot_response_cache_hits", "Answers served from the response cache", ["task"], registry=r
        )
        self.replies = Counter(
            "supportbot_replies",
            "Live replies by result (ok, failed: error shown; lost: final text not landed)",
            ["platform", "feature", "result"],
            registry=r,
        )
        self.first_post = Histogram(
            "supportbot_reply_first_post_seconds",
            "Event to placeholder posted",
            ["platform", "feature"],
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.first_text = Histogram(
            "supportbot_reply_first_text_seconds",
            "Event to first model text visible on the platform",
            ["platform", "feature"],
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.edits = Counter("supportbot_reply_edits", "Successful message edits", ["platform"], registry=r)
        self.platform_429 = Counter(
            "supportbot_platform_rate_limited",
            "HTTP 429s from a chat platform, by call (reply: live replies)",
            ["platform", "call"],
            registry=r,
        )
        self.refusals = Counter(
            "supportbot_refusals",
            "Requests refused before any model call (budget, user_rate)",
            ["platform", "reason"],
            registry=r,
        )
        channel = ["platform", "workspace", "channel"]
        self.budget_spent = Gauge(
            "supportbot_budget_spent_usd",
            "Month-to-date spend of channels with their own budget",
            channel,
            registry=r,
        )
        self.budget = Gauge(
            "supportbot_budget_usd", "Monthly budget of channels with their own budget", channel, registry=r
        )
        self._ledger_failures = _LedgerFailures()
        r.register(self._ledger_failures)
        self.platform_events = Counter(
            "supportbot_platform_events",
            "Platform deliveries acknowledged without a reply (app_rate_limited, ignored_duplicate, ignored_bot, …)",
            ["platform", "kind"],
            registry=r,
        )

    # ---- model calls ---------------------------------------------------------------------------------------------

    def watch_router(self, router: CountsUnrecorded) -> None:
        self._ledger_failures.routers.append(router)

    def observe_call(self, record: LedgerRecord) -> None:
        """A ModelRouter observer: runs inside the router's call path, so it never raises."""
        try:
            self._observe_call(record)
        except Exception:
            log.exception("metrics: could not record a %s call", record.model)

    def _observe_call(self, record: LedgerRecord) -> None:
        model = (record.provider, record.model)
        if record.outcome is Outcome.CACHED:
            self.cache_hits.labels(record.task).inc()
            if record.saved_usd > 0:
                self.saved.labels(*model, "response").inc(float(record.saved_usd))
            return
        self.model_calls.labels(*model, record.task, record.outcome.value).inc()
        usage = record.usage
        for cls in TOKEN_CLASSES:
            if n := getattr(usage, cls):
                self.tokens.labels(*model, cls).inc(n)
        if record.cost_usd > 0:
            self.cost.labels(*model, record.task).inc(float(record.cost_usd))
        if record.saved_usd > 0:
            self.saved.labels(*model, "prompt").inc(float(record.saved_usd))
        if usage.estimated:
            self.usage_estimated.labels(*model).inc()
            for cls in TOKEN_CLASSES:
                if n := getattr(usage, cls):
                    self.tokens_estimated.labels(*model, cls).inc(n)
            if record.cost_usd > 0:
                self.cost_estimated.labels(*model, record.task).inc(float(record.cost_usd))
        if record.unpriced:
            self.unpriced_calls.labels(*model).inc()
            self.unpriced_tokens.labels(*model).inc(usage.total_input + usage.output)
        if record.ttft_s is not None:
            self.ttft.labels(*model).observe(record.ttft_s)
        self.call_seconds.labels(*model).observe(record.latency_s)

    # ---- replies, platforms, budgets -----------------------------------------------------------------------------

    def observe_reply(
        self, stats: ReplyStats, *, platform: str, feature: str, ok: bool, started_at: float
    ) -> None:
        """A finished LiveReply. Times count from the event's arrival when an adapter opened a request_context,
        else from ``started_at`` (monotonic, when the use case began)."""
        ctx = current_request()
        origin = ctx.received_at if ctx is not None else started_at
        if stats.posted_at is not None:
            self.first_post.labels(platform, feature).observe(max(0.0, stats.posted_at - origin))
        if stats.first_text_at is not None:
            self.first_text.labels(platform, feature).observe(max(0.0, stats.first_text_at - origin))
        if stats.edits:
            self.edits.labels(platform).inc(stats.edits)
        if stats.rate_limited:
            self.platform_429.labels(platform, "reply").inc(stats.rate_limited)
        result = "lost" if not stats.completed else "ok" if ok else "failed"
        self.replies.labels(platform, feature, result).inc()

    def platform_rate_limited(self, platform: str, call: str, n: int = 1) -> None:
        """For adapters: 429s outside live replies (history fetches, SDK-level retries). Live replies' own posts
        and edits are counted from ReplyStats under call="reply"; don't count those twice."""
        self.platform_429.labels(platform, call).inc(n)

    def refused(self, platform: str, reason: str) -> None:
        self.refusals.labels(platform, reason).inc()

    def platform_event(self, platform: str, kind: str) -> None:
        """For adapters: a delivery answered without a reply (kinds are a fixed set per adapter, never ids)."""
        self.platform_events.labels(platform, kind).inc()

    def observe_budget(self, channel: ChannelRef, state: BudgetState, *, own_budget: bool) -> None:
        # A default budget applies to every channel: a gauge each would grow with every channel the bot is ever
        # in (thousands on Discord). Channels named in SUPPORTBOT_CHANNEL_BUDGETS_USD are bounded by config.
        if not own_budget or state.budget_usd is None:
            return
        labels = (channel.platform, channel.workspace, channel.channel)
        self.budget_spent.labels(*labels).set(float(state.spent_usd))
        self.budget.labels(*labels).set(float(state.budget_usd))

    def exposition(self) -> bytes:
        """The /metrics page (bot/health.py serves it)."""
        return generate_latest(self.registry)
