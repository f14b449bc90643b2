"""What operators see of a running bot: Prometheus metrics, /healthz and /readyz, and log lines that carry a
request id and never a secret.

Metrics come from two places: every ledger record the model router writes (calls, tokens by class, cost, time to
first token, response-cache hits) and every finished live reply (time to first visible text, edits, 429s). Label
values are bounded by configuration (provider, model, task, platform, feature), never by users or channels —
except the budget gauges, which exist only for channels given their own budget in SUPPORTBOT_CHANNEL_BUDGETS_USD.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
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
from pydantic import SecretStr

from bot.budgets import BudgetState
from bot.live_reply import ReplyStats
from bot.settings import Settings
from bot.types import ChannelRef
from llm.types import LedgerRecord, Outcome

log = logging.getLogger(__name__)

# ---- request ids ------------------------------------------------------------------------------------------------


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


# ---- metrics ----------------------------------------------------------------------------------------------------

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
    """One registry per running bot (tests build many apps in one process; a global registry would mix them)."""

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
        return generate_latest(self.registry)


# ---- health and metrics over HTTP --------------------------------------------------------------------------------

# kubelet probes time out after timeoutSeconds (1 s by default; 3 s in deploy/k8s): answer before that.
STORE_PING_TIMEOUT_S = 2.0
NO_PROVIDER = "no model provider configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"


class Pingable(Protocol):
    async def ping(self) -> None: ...  # bot.stores.base.Store has it


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...] = ()


async def check_ready(
    *, store: Pingable, settings: Settings, redact: Callable[[str], str] = lambda s: s
) -> Readiness:
    """Ready when the store answers a ping and at least one model provider is configured."""
    reasons = []
    if not settings.providers:
        reasons.append(NO_PROVIDER)
    try:
        async with asyncio.timeout(STORE_PING_TIMEOUT_S):
            await store.ping()
    except Exception as exc:
        detail = redact(str(exc))[:200]
        reasons.append(f"store ping failed: {type(exc).__name__}" + (f": {detail}" if detail else ""))
    return Readiness(not reasons, tuple(reasons))


def health_app(*, metrics: Metrics, ready: Callable[[], Awaitable[Readiness]]) -> web.Application:
    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        # Alive means the event loop answers; dependencies belong to /readyz (a Redis outage must not make
        # Kubernetes restart every replica).
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        state = await ready()
        body = {"status": "ready" if state.ready else "not ready", "reasons": list(state.reasons)}
        return web.json_response(body, status=200 if state.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_health(
    *, metrics: Metrics, ready: Callable[[], Awaitable[Readiness]], host: str, port: int
) -> web.AppRunner:
    """Start /metrics, /healthz and /readyz; the caller cleans the runner up. ``port`` 0 picks a free one
    (``runner.addresses`` tells which)."""
    runner = web.AppRunner(health_app(metrics=metrics, ready=ready), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# ---- logs ---------------------------------------------------------------------------------------------------

REDACTED = "[redacted]"
# Configured secrets shorter than this are not searched for: a one-letter test key would garble every line.
MIN_SECRET_CHARS = 6
TOKEN_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\w-])sk-[\w-]{16,}"), REDACTED),  # OpenAI sk-/sk-proj-, Anthropic sk-ant-
    (re.compile(r"(?<![\w-])xox[abeoprs]-[\w-]{8,}"), REDACTED),  # Slack bot/user tokens
    (re.compile(r"(?<![\w-])xapp-[\w-]{8,}"), REDACTED),  # Slack app-level (Socket Mode) token
    (re.compile(r"\b(Bot|Bearer) [\w.~+/=-]{16,}"), rf"\1 {REDACTED}"),  # Authorization header values
    (re.compile(r"(?<![\w.-])[\w-]{24,}\.[\w-]{6}\.[\w-]{27,}"), REDACTED),  # Discord bot token
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),  # password in a URL
)
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "request_tag",
}


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret setting's value, and the password inside any that is a URL (REDIS_URL)."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            secret = value.get_secret_value()
            found.append(secret)
            with contextlib.suppress(ValueError):
                if password := urlsplit(secret).password:
                    found.append(password)
    return found


class SecretRedactor(logging.Filter):
    """A handler filter that rewrites each record: configured secret values and common token shapes become
    "[redacted]" in the message, the traceback, the stack and every extra field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in TOKEN_SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string still gets logged, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS or value is None or isinstance(value, bool | int | float):
                continue
            setattr(record, key, self.redact(value if isinstance(value, str) else str(value)))
        return True


_PLAIN = logging.Formatter()


class RequestContextFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request) and the request's fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_request()
        record.request_id = ctx.request_id if ctx else None
        record.request_tag = f" [{ctx.request_id}]" if ctx else ""
        if ctx:
            for key, value in ctx.fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For humans: the classic line, with the request id in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_tag"):
            record.request_tag = ""
        return super().format(record)


def log_handler(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """A handler in the configured format (SUPPORTBOT_LOG_FORMAT) that stamps request ids and redacts secrets."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(SecretRedactor(configured_secrets(settings)))
    return handler


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with ``log_handler(settings)``. Filters sit on the handler, not on a
    logger: a logger's filters never see records propagated from its children (httpx, discord, slack_bolt)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = log_handler(settings, stream=stream)
    root.addHandler(handler)
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    root.setLevel(level)
    # The HTTP clients log every request at INFO: one line per model call and per Slack call buried what the bot
    # itself said (doctor's checks among them). Kept at DEBUG, where someone tracing calls wants them.
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


CHATTY_LOGGERS = ("httpx", "httpx2")
