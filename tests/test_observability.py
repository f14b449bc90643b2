"""Metrics, health endpoints and logs: the real router against the fake provider server, real HTTP, real handlers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.console import ConsolePlatform
from bot.app import App, build_app
from bot.assistant import Assistant
from bot.cli import _parser, _serve_health
from bot.health import NO_PROVIDER, check_ready, serve_health
from bot.logs import REDACTED, SecretRedactor, configure_logging, configured_secrets, log_handler
from bot.metrics import Metrics
from bot.requestids import current_request, new_request_id, request_context
from bot.settings import Settings, load_settings
from bot.telemetry import NullTelemetry
from bot.types import ChannelRef, ChatMessage, Mention, MessageRef
from llm.types import Attribution, LedgerRecord, Outcome, Request, Task
from tests.fakes.llm_server import FakeLLMServer

# Long enough (~1,600 tokens) for Anthropic prompt caching on Sonnet (minimum 1,024).
SYSTEM = "You summarize support threads for the team. " * 200


async def make_app(tmp_path: Path, server: FakeLLMServer | None, **overrides: Any) -> App:
    keys: dict[str, Any] = {}
    if server is not None:
        # The fake server stands in for OpenAI itself: list prices apply, as through a gateway.
        keys = {"openai_api_key": "sk-test", "openai_base_url": server.openai_base_url, "base_url_is_provider": True}
    settings = load_settings(**{"db": str(tmp_path / "bot.db"), "redis_url": None, **keys, **overrides})
    return await build_app(settings)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def total(metrics: Metrics, name: str, **match: str) -> float:
    """Sum of a metric's samples over every label set that contains ``match``."""
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    )


async def ledger(app: App) -> list[LedgerRecord]:
    return await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


async def stream_text(app: App, user: str) -> str:
    bill_to = Attribution("slack", "T1", "C1", "U1", "summary")
    parts = [c.text async for c in app.llm.stream(Task.SUMMARIZE, Request.of(SYSTEM, user), bill_to=bill_to)]
    return "".join(parts)


# ---- metrics from the router ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streamed_calls_show_calls_tokens_and_cost_consistent_with_the_ledger(
    tmp_path, server, provider
) -> None:
    overrides: dict[str, Any] = {}
    if provider == "anthropic":
        overrides = {
            "openai_api_key": None,
            "anthropic_api_key": "sk-ant-test",
            "anthropic_base_url": server.anthropic_base_url,
            "routes": {"summarize": ["anthropic:claude-sonnet-4-5"]},
        }
    app = await make_app(tmp_path, server, **overrides)
    m = app.metrics
    try:
        assert await stream_text(app, "Thread one: the VPN drops every hour.")
        assert await stream_text(app, "Thread two: printers in room 4 are offline.")
        assert await stream_text(app, "Thread one: the VPN drops every hour.")  # same prompt: response cache
        records = await ledger(app)
    finally:
        await app.close()
    calls = [r for r in records if r.outcome is Outcome.OK]
    assert len(calls) == 2 and len(server.served) == 2
    [model] = {r.model for r in calls}
    assert (
        value(
            m, "supportbot_model_calls_total", provider=provider, model=model, task="summarize", outcome="ok"
        )
        == 2
    )
    assert value(m, "supportbot_response_cache_hits_total", task="summarize") == 1
    for cls in ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output"):
        expected = sum(getattr(r.usage, cls) for r in records)
        assert (
            value(m, "supportbot_model_tokens_total", provider=provider, model=model, **{"class": cls})
            == expected
        )
    assert (
        value(m, "supportbot_model_tokens_total", provider=provider, model=model, **{"class": "output"}) > 0
    )
    if provider == "anthropic":  # the second call read the system prompt the first one wrote
        assert (
            value(
                m, "supportbot_model_tokens_total", provider=provider, model=model, **{"class": "cache_read"}
            )
            > 0
        )
    cost = value(m, "supportbot_model_cost_usd_total", provider=provider, model=model, task="summarize")
    assert cost == pytest.approx(float(sum(r.cost_usd for r in records)), rel=1e-9) and cost > 0
    ttft = value(m, "supportbot_model_time_to_first_token_seconds_count", provider=provider, model=model)
    assert ttft == 2
    assert value(m, "supportbot_ledger_write_failures_total") == 0


def test_failed_and_interrupted_calls_are_counted_by_outcome_and_an_observer_error_never_escapes() -> None:
    m = Metrics(process_collectors=False)
    at = datetime.now(UTC)
    base: dict[str, Any] = dict(
        at=at,
        provider="openai",
        model="gpt-4.1-mini",
        task="summarize",
        platform="slack",
        workspace="T",
        channel="C",
        user="U",
        feature="summary",
        latency_s=0.2,
        ttft_s=None,
    )
    from llm.types import Usage

    m.observe_call(LedgerRecord(**base, usage=Usage(), cost_usd=Decimal(0), outcome=Outcome.ERROR))
    m.observe_call(
        LedgerRecord(
            **base,
            usage=Usage(input=10, output=3, estimated=True),
            cost_usd=Decimal("0.00001"),
            outcome=Outcome.INTERRUPTED,
        )
    )
    labels = {"provider": "openai", "model": "gpt-4.1-mini", "task": "summarize"}
    assert value(m, "supportbot_model_calls_total", **labels, outcome="error") == 1
    assert value(m, "supportbot_model_calls_total", **labels, outcome="interrupted") == 1
    assert value(m, "supportbot_model_usage_estimated_total", provider="openai", model="gpt-4.1-mini") == 1
    m.observe_call(SimpleNamespace(model="broken"))  # type: ignore[arg-type]  # logged, not raised


def test_ledger_write_failures_are_read_from_the_router_at_scrape_time() -> None:
    m = Metrics(process_collectors=False)
    router = SimpleNamespace(unrecorded=0)
    m.watch_router(router)
    assert value(m, "supportbot_ledger_write_failures_total") == 0
    router.unrecorded = 3
    assert value(m, "supportbot_ledger_write_failures_total") == 3


# ---- metrics from live replies ------------------------------------------------------------------------------------


CHANNEL = ChannelRef("console", "local", "support")
THREAD = "t1"


async def mention(app: App, text: str = "@bot summarize") -> Mention:
    """A mention at the end of a short thread the bot has recorded."""
    now = datetime.now(UTC)
    said = [
        "The VPN drops every hour since Monday.",
        "Same here, on the Berlin office network.",
        "IT is on it.",
    ]
    for i, line in enumerate(said):
        ref = MessageRef(CHANNEL, f"m{i}", THREAD)
        await app.assistant.record(
            ChatMessage(ref, f"u{i}", f"user{i}", line, now - timedelta(minutes=5 - i))
        )
    return Mention(ChatMessage(MessageRef(CHANNEL, "m9", THREAD), "alice", "alice", text, now))


async def test_a_finished_summary_records_time_to_first_visible_text_and_edits(tmp_path, server) -> None:
    app = await make_app(tmp_path, server)
    try:
        with request_context(platform="console"):
            outcome = await app.assistant.summarize(await mention(app), ConsolePlatform(out=io.StringIO()))
    finally:
        await app.close()
    assert outcome.ok and len(server.received) == 1
    m = app.metrics
    assert value(m, "supportbot_replies_total", platform="console", feature="summary", result="ok") == 1
    assert value(m, "supportbot_reply_first_post_seconds_count", platform="console", feature="summary") == 1
    assert value(m, "supportbot_reply_first_text_seconds_count", platform="console", feature="summary") == 1
    first_text = value(m, "supportbot_reply_first_text_seconds_sum", platform="console", feature="summary")
    first_post = value(m, "supportbot_reply_first_post_seconds_sum", platform="console", feature="summary")
    assert first_text >= first_post > 0
    assert value(m, "supportbot_reply_edits_total", platform="console") >= 1


async def test_a_channel_with_its_own_budget_gets_gauges_and_a_spent_budget_counts_refusals(
    tmp_path, server
) -> None:
    app = await make_app(tmp_path, server, channel_budgets_usd={"support": "0"}, monthly_budget_usd="5")
    try:
        outcome = await app.assistant.summarize(await mention(app), ConsolePlatform(out=io.StringIO()))
    finally:
        await app.close()
    assert not outcome.ok and server.received == []
    m = app.metrics
    assert value(m, "supportbot_refusals_total", platform="console", reason="budget") == 1
    assert value(m, "supportbot_budget_usd", platform="console", workspace="local", channel="support") == 0
    assert (
        value(m, "supportbot_budget_spent_usd", platform="console", workspace="local", channel="support") == 0
    )
    assert total(m, "supportbot_budget_usd") == 0  # only the one configured channel has a series


@pytest.mark.parametrize("budgets", [{}, {"support": "0"}], ids=["answered", "refused"])
async def test_the_use_cases_report_to_a_null_telemetry_when_built_without_metrics(
    tmp_path, server, budgets: dict[str, str]
) -> None:
    app = await make_app(tmp_path, server, channel_budgets_usd=budgets)
    bare = Assistant(settings=app.settings, store=app.store, llm=app.llm)  # no telemetry given
    try:
        outcome = await bare.summarize(await mention(app), ConsolePlatform(out=io.StringIO()))
    finally:
        await app.close()
    assert isinstance(bare.telemetry, NullTelemetry)
    assert outcome.ok == (not budgets) and len(server.received) == (0 if budgets else 1)
    # The app's registry heard only the router (its observer), nothing from the bare assistant's replies.
    assert total(app.metrics, "supportbot_replies_total") == total(app.metrics, "supportbot_refusals_total") == 0


def modules_after_import(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``module`` alone."""
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("module", ["bot.requestids", "bot.logs", "bot.assistant"])
def test_request_ids_logs_and_the_use_cases_import_neither_prometheus_nor_the_health_server(module: str) -> None:
    loaded = modules_after_import(module)
    assert module in loaded
    assert not {m for m in loaded if m.split(".")[0] == "prometheus_client" or m.startswith("aiohttp.web")}


def test_request_ids_need_only_the_standard_library() -> None:
    loaded = modules_after_import("bot.requestids")
    assert not {m for m in loaded if m.split(".")[0] in ("pydantic", "aiohttp", "prometheus_client", "llm")}


# ---- HTTP: /metrics, /healthz, /readyz ----------------------------------------------------------------------------


class DeadStore:
    def __init__(self, message: str) -> None:
        self.message = message

    async def ping(self) -> None:
        raise ConnectionError(self.message)


async def get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, resp.headers["Content-Type"], await resp.text()


def port_of(runner: Any) -> int:
    return int(runner.addresses[0][1])


async def test_metrics_healthz_and_readyz_over_http(tmp_path, server) -> None:
    app = await make_app(tmp_path, server, metrics_host="127.0.0.1", metrics_port=0)
    runner = await _serve_health(app, None)  # what `supportbot run` does when SUPPORTBOT_METRICS_PORT is set
    assert runner is not None
    try:
        port = port_of(runner)
        await stream_text(app, "Thread: disk full on build agents.")
        status, ctype, body = await get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body)}
        [sample] = [s for s in families["supportbot_model_calls"].samples if s.name.endswith("_total")]
        assert sample.value == 1 and sample.labels["outcome"] == "ok"
        assert "process_resident_memory_bytes" in families
        status, _, body = await get(port, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, _, body = await get(port, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
    finally:
        await runner.cleanup()
        await app.close()


async def test_readyz_is_503_with_reasons_without_a_provider_or_a_store(tmp_path) -> None:
    app = await make_app(tmp_path, None)
    secret_url = "redis://:hunter2-redis-pass@127.0.0.1:1/0"
    settings = load_settings(db=str(tmp_path / "x.db"), redis_url=secret_url)
    redactor = SecretRedactor(configured_secrets(settings))

    async def ready() -> Any:
        return await check_ready(
            store=DeadStore(f"cannot reach {secret_url}"),
            settings=settings,
            redact=redactor.redact,
        )

    runner = await serve_health(metrics=app.metrics, ready=ready, host="127.0.0.1", port=0)
    try:
        status, ctype, body = await get(port_of(runner), "/readyz")
        assert status == 503 and ctype.startswith("application/json")
        reasons = json.loads(body)["reasons"]
        assert reasons[0] == NO_PROVIDER
        assert reasons[1].startswith("store ping failed: ConnectionError") and "hunter2" not in body
        assert (await get(port_of(runner), "/healthz"))[0] == 200  # alive, just not ready
        assert (await check_ready(store=app.store, settings=app.settings)).reasons == (NO_PROVIDER,)
    finally:
        await runner.cleanup()
        await app.close()


async def test_metrics_port_flag_and_setting(tmp_path) -> None:
    assert _parser().parse_args(["run", "--metrics-port", "9102"]).metrics_port == 9102
    assert _parser().parse_args(["run"]).metrics_port is None
    app = await make_app(tmp_path, None)
    try:
        assert app.settings.metrics_port is None and await _serve_health(app, None) is None  # off by default
    finally:
        await app.close()


# ---- logs ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[Settings, io.StringIO]]:
    """JSON logs of everything (root logger, DEBUG) into a buffer, with the secrets below configured."""
    settings = load_settings(
        log_format="json",
        openai_api_key="sk-proj-Zq8e1RkS0mE9vLw2Tq7YpX3cNbA4",
        anthropic_api_key="sk-ant-api03-Kd93jf-QQpl02mZ",
        slack_bot_token="xoxb-1111-2222-abcdEFGHijkl",
        slack_signing_secret="8f14e45fceea167a5a36dedd4bea2543",
        discord_token="MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123",
        redis_url="redis://default:pa55-w0rd-redis@127.0.0.1:6390/0",
    )
    out = io.StringIO()
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    handler = log_handler(settings, stream=out)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield settings, out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        assert root.handlers == old_handlers


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


SECRET_FIELDS = (
    "openai_api_key",
    "anthropic_api_key",
    "slack_bot_token",
    "slack_signing_secret",
    "discord_token",
    "redis_url",
)


async def test_json_lines_parse_and_carry_the_request_id_into_spawned_tasks(captured) -> None:
    _, out = captured
    log = logging.getLogger("supportbot.test")

    async def later() -> None:
        await asyncio.sleep(0)
        log.warning("edit landed", extra={"edits": 3})

    with request_context(platform="slack", event_id="Ev1") as ctx:
        log.info("event arrived in %s", "C1", extra={"channel": "C1"})
        task = asyncio.create_task(later())  # background work started inside the context keeps the id
    await task
    log.error("outside any request")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third, fourth = [line for line in lines(out) if line["logger"] == "supportbot.test"]
    assert first["request_id"] == second["request_id"] == ctx.request_id and len(ctx.request_id) == 16
    assert first["message"] == "event arrived in C1" and first["channel"] == "C1"
    assert first["level"] == "INFO" and first["logger"] == "supportbot.test"
    assert first["platform"] == "slack" and first["event_id"] == "Ev1"
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert second["edits"] == 3 and second["level"] == "WARNING"
    assert third["request_id"] is None and current_request() is None
    assert "ValueError: boom" in fourth["exc_info"]
    assert new_request_id() != new_request_id()


async def test_every_log_line_of_one_mention_carries_its_request_id(tmp_path, server, captured) -> None:
    _, out = captured
    app = await make_app(tmp_path, server)
    try:
        with request_context(platform="console") as ctx:
            outcome = await app.assistant.summarize(await mention(app), ConsolePlatform(out=io.StringIO()))
        during = lines(out)  # before close(): closing the SDK's connections happens outside the request
    finally:
        await app.close()
    assert outcome.ok and len(server.received) == 1
    assert any(line["logger"].startswith("openai") for line in during)  # the SDK logs each request at DEBUG
    assert {line["request_id"] for line in during} == {ctx.request_id}
    assert {line["platform"] for line in during} == {"console"}


async def test_a_configured_secret_never_reaches_the_logs_even_when_logged_deliberately(
    tmp_path, server, captured
) -> None:
    settings, out = captured
    log = logging.getLogger("supportbot.test")
    secrets = [settings.secret(f) or "" for f in SECRET_FIELDS] + ["pa55-w0rd-redis"]
    log.info("settings: %r", settings)
    log.info("settings: %s", settings.model_dump())
    for name in SECRET_FIELDS:
        log.warning("the %s is %s", name, settings.secret(name), extra={"value": settings.secret(name)})
    log.info("headers", extra={"headers": {"Authorization": f"Bearer {settings.secret('openai_api_key')}"}})
    try:
        raise RuntimeError(
            f"could not connect with {settings.secret('redis_url')} / {settings.secret('slack_bot_token')}"
        )
    except RuntimeError:
        log.exception("store failed")
    # A real call whose SDK debug logs carry request options and headers.
    app = await make_app(tmp_path, server, openai_api_key=settings.secret("openai_api_key"))
    try:
        await stream_text(app, "Thread: keys rotated?")
    finally:
        await app.close()
    text = out.getvalue()
    for secret in secrets:
        assert secret and secret not in text
    assert text.count(REDACTED) >= len(SECRET_FIELDS) * 2
    assert all(json.loads(line) for line in text.splitlines())


def test_token_shapes_are_redacted_even_when_not_configured() -> None:
    redact = SecretRedactor().redact
    assert redact("key sk-proj-abcdefghijklmnop1234 here") == f"key {REDACTED} here"
    assert redact("xoxb-123-456-abcdefgh and xapp-1-A0-123456789") == f"{REDACTED} and {REDACTED}"
    assert (
        redact("Authorization: Bot MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abc") == f"Authorization: Bot {REDACTED}"
    )
    assert redact("redis://user:secretpw@host:6379/0") == f"redis://user:{REDACTED}@host:6379/0"
    assert redact("task-summarize-thread and disk-full") == "task-summarize-thread and disk-full"
    assert SecretRedactor(["x"]).redact("x marks") == "x marks"  # too short to search for


def test_text_format_for_humans_shows_the_request_id(tmp_path) -> None:
    settings = load_settings(db=str(tmp_path / "b.db"), openai_api_key="sk-proj-AAAABBBBCCCCDDDDEEEE")
    out = io.StringIO()
    root = logging.getLogger()
    old_handlers, old_level = list(root.handlers), root.level
    try:
        configure_logging(settings, stream=out)
        assert len(root.handlers) == 1
        with request_context("req123"):
            logging.getLogger("bot.x").info("using %s", settings.secret("openai_api_key"))
        logging.getLogger("bot.x").info("no request")
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
    first, second = out.getvalue().splitlines()
    assert first.endswith(f"INFO bot.x [req123] using {REDACTED}")
    assert second.endswith("INFO bot.x no request")


@pytest.mark.parametrize(("level", "http_level"), [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG)])
def test_http_clients_log_each_request_only_when_debugging(level: str, http_level: int) -> None:
    settings = Settings(log_level=level)
    out = io.StringIO()
    root = logging.getLogger()
    old_handlers, old_level = list(root.handlers), root.level
    old_http = {name: logging.getLogger(name).level for name in ("httpx", "httpx2")}
    try:
        configure_logging(settings, stream=out)
        logging.getLogger("httpx2").info('HTTP Request: POST http://127.0.0.1/v1/chat/completions "200 OK"')
        logging.getLogger("bot.x").info("the bot's own line")
        assert logging.getLogger("httpx").level == http_level
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
        for name, was in old_http.items():
            logging.getLogger(name).setLevel(was)
    assert ("HTTP Request" in out.getvalue()) is (level == "DEBUG")
    assert "the bot's own line" in out.getvalue()
