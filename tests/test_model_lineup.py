"""Today's model lineup through the real SDKs against the fake provider server: every default-route model costs
exactly what genai-prices says, a retired model is survived and reported once a day, a self-hosted server is not
billed at list prices, and retries follow what the server says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest

from bot.app import App, build_app
from bot.model_alerts import model_missing_alert
from bot.settings import load_settings
from bot.stores.sqlite import SqliteStore
from llm import PriceTable, Timeouts, create_router
from llm.models import FILE_SOURCE, PRICE_SOURCE
from llm.router import ModelRouter
from llm.routes import Route, RouteEntry, build_routes, default_models
from llm.types import Attribution, LedgerRecord, LLMError, ModelMissing, Outcome, Request, Task
from tests.fakes.chat import FakeChatPlatform
from tests.fakes.llm_server import FakeLLMServer, Fault

WHO = Attribution("slack", "T1", "C1", "U1", "summary")
LONG_SYSTEM = "You are a careful support summarizer. " * 800  # ~6,000 tokens: above every cache minimum (4,096)
TOLERANCE = Decimal("1e-9")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def router_for(
    server: FakeLLMServer, store: SqliteStore, routes: dict[Task, Route], *, as_provider: bool = True,
    prices: PriceTable | None = None, cache_ttl: str = "5m", sleeps: Sleeps | None = None,
) -> ModelRouter:
    router = create_router(
        openai_api_key="sk-test", openai_base_url=server.openai_base_url,
        anthropic_api_key="sk-ant-test", anthropic_base_url=server.anthropic_base_url,
        routes=routes, prices=prices or PriceTable(), ledger=store.ledger, cache=None,
        timeouts=Timeouts(connect_s=2, first_token_s=5, idle_s=5), anthropic_cache_ttl=cache_ttl,
        base_url_is_provider=as_provider,
    )
    if sleeps is not None:
        router._sleep = sleeps  # test hook: see the retry delays without waiting them out
    return router


def route(*specs: str) -> dict[Task, Route]:
    entries = tuple(RouteEntry.parse(s, max_tokens=300, temperature=0.0) for s in specs)
    return {Task.SUMMARIZE: Route(Task.SUMMARIZE, entries, cache_ttl_s=0)}


async def records(store: SqliteStore) -> list[LedgerRecord]:
    return await store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


async def ask(router: ModelRouter, system: str, user: str) -> str:
    return "".join([c.text async for c in router.stream(Task.SUMMARIZE, Request.of(system, user), bill_to=WHO)])


def genai_figure(rec: LedgerRecord) -> Decimal:
    """genai-prices' own figure for a ledger record's usage, built here from its documented Usage fields."""
    u = rec.usage
    usage = genai_prices.Usage(
        input_tokens=u.input + u.cache_read + u.cache_write_5m + u.cache_write_1h,  # its input is TOTAL input
        cache_read_tokens=u.cache_read,
        cache_write_tokens=u.cache_write_5m + u.cache_write_1h,
        cache_write_1h_tokens=u.cache_write_1h,
        output_tokens=u.output,
    )
    return genai_prices.calc_price(usage, rec.model, provider_id=rec.provider, genai_request_timestamp=rec.at).total_price


CASES = [(p, m, "5m") for p, m in sorted(default_models())] + [
    (p, m, "1h") for p, m in sorted(default_models()) if p == "anthropic"
]


@pytest.mark.parametrize(("provider", "model", "ttl"), CASES)
async def test_ledger_cost_of_each_default_model_equals_genai_prices(server, store, provider, model, ttl) -> None:
    """Two calls sharing a long prefix: the first writes the prompt cache (Anthropic), the second reads it."""
    router = router_for(server, store, route(f"{provider}:{model}"), cache_ttl=ttl)
    for question in ("first thread: the build fails on arm64", "second thread: login loops"):
        assert await ask(router, LONG_SYSTEM, question)
    first, second = await records(store)
    assert second.usage.cache_read > 0  # the cache class is really exercised
    if provider == "anthropic":
        written = first.usage.cache_write_1h if ttl == "1h" else first.usage.cache_write_5m
        assert written > 0
    for rec in (first, second):
        assert rec.outcome is Outcome.OK and not rec.usage.estimated and not rec.unpriced
        assert rec.price_source == PRICE_SOURCE and not rec.self_hosted
        assert abs(rec.cost_usd - genai_figure(rec)) <= TOLERANCE and rec.cost_usd > 0
    await router.close()


async def test_self_hosted_server_is_not_billed_at_list_price(server, store, tmp_path: Path) -> None:
    """`openai:gpt-4.1-mini` on a server of your own: unpriced (marked), then priced only by the price file."""
    router = router_for(server, store, route("openai:gpt-4.1-mini"), as_provider=False)
    await ask(router, "Summarize.", "alice: the build fails")
    [rec] = await records(store)
    assert rec.self_hosted and rec.unpriced and rec.cost_usd == 0 and rec.price_source == ""
    await router.close()
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4.1-mini": {"input": "0.01", "cached_input": "0", "output": "0.02"}}', encoding="utf-8")
    router = router_for(server, store, route("openai:gpt-4.1-mini"), as_provider=False,
                        prices=PriceTable.load(str(prices)))
    await ask(router, "Summarize.", "bob: the login loops")
    rec = (await records(store))[-1]
    expected = (Decimal(rec.usage.input) * Decimal("0.01") + Decimal(rec.usage.output) * Decimal("0.02")) / 1_000_000
    assert rec.self_hosted and not rec.unpriced and rec.price_source == FILE_SOURCE and rec.cost_usd == expected
    await router.close()


# ---- a retired model -------------------------------------------------------------------------------------------


async def app_with(tmp_path: Path, server: FakeLLMServer, routes: dict[str, list[str]]) -> tuple[App, FakeChatPlatform]:
    settings = load_settings(
        db=str(tmp_path / "bot.db"), redis_url=None, admin_channel="C-admins", base_url_is_provider=True,
        openai_api_key="sk-test", openai_base_url=server.openai_base_url,
        anthropic_api_key="sk-ant-test", anthropic_base_url=server.anthropic_base_url,
        routes=routes, cache_ttl_s={"summarize": 0},
    )
    app = await build_app(settings)
    admins = FakeChatPlatform()
    app.assistant.alert_sink = admins
    return app, admins


async def test_retired_model_falls_back_and_the_admins_are_told_once_a_day(tmp_path, server) -> None:
    server.retired.add("gpt-5.4-mini")
    app, admins = await app_with(tmp_path, server, {"summarize": ["openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"]})
    for question in ("first: the build fails", "second: login loops", "third: the cache is stale"):
        text = "".join([c.text async for c in app.llm.stream(Task.SUMMARIZE, Request.of("S.", question), bill_to=WHO)])
        assert text.startswith("Summary:")
    # The retired model was asked once; afterwards the route's next entry serves directly.
    assert [r.model for r in server.received] == ["gpt-5.4-mini", "claude-haiku-4-5", "claude-haiku-4-5",
                                                  "claude-haiku-4-5"]
    recs = await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    assert [(r.model, r.outcome) for r in recs][:2] == [("gpt-5.4-mini", Outcome.ERROR), ("claude-haiku-4-5", Outcome.OK)]
    assert recs[0].error.startswith("model_not_found") and recs[0].usage.input == 0 and not recs[0].unpriced
    [alert] = [c for c in admins.calls if c.kind == "post"]
    assert alert.ref is not None and alert.ref.channel.channel == "C-admins" and alert.ref.channel.workspace == "T1"
    said = alert.text
    assert 'openai answered "not found" for gpt-5.4-mini (task summarize)' in said
    assert "fell back to anthropic:claude-haiku-4-5" in said and 'SUPPORTBOT_ROUTES ("summarize")' in said

    # A second replica (same store) meeting the same retired model on the same day says nothing more.
    again, admins_again = await app_with(tmp_path, server, {"summarize": ["openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"]})
    await again.llm.complete(Task.SUMMARIZE, Request.of("S.", "fourth"), bill_to=WHO)
    assert server.received[-2].model == "gpt-5.4-mini" and not admins_again.calls
    # The next day it is said again.
    notice = ModelMissing("openai", "gpt-5.4-mini", "summarize", "anthropic:claude-haiku-4-5")
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert await model_missing_alert(app.store, notice, today=tomorrow) is not None
    assert await model_missing_alert(app.store, notice, today=tomorrow) is None
    await again.close()
    await app.close()


async def test_retired_model_with_no_fallback_fails_clearly_and_names_the_fix(tmp_path, server) -> None:
    server.retired.add("claude-sonnet-4-5")
    app, admins = await app_with(tmp_path, server, {"summarize": ["anthropic:claude-sonnet-4-5"]})
    with pytest.raises(LLMError) as failure:
        await app.llm.complete(Task.SUMMARIZE, Request.of("S.", "q"), bill_to=WHO)
    assert failure.value.kind == "model_not_found" and "no longer exists" in str(failure.value)
    assert len(server.received) == 1  # "not found" is not retried
    [alert] = [c.text for c in admins.calls if c.kind == "post"]
    assert "has no other model" in alert and "e.g. anthropic:claude-haiku-4-5" in alert
    await app.close()


# ---- retries as the server says ---------------------------------------------------------------------------------


async def test_x_should_retry_false_is_not_retried(server, store) -> None:
    sleeps = Sleeps()
    router = router_for(server, store, route("openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"), sleeps=sleeps)
    server.enqueue_fault(Fault.http_error(503, headers={"x-should-retry": "false"}, api="openai"))
    assert await ask(router, "S.", "q")
    assert [r.model for r in server.received] == ["gpt-5.4-mini", "claude-haiku-4-5"] and sleeps.delays == []
    await router.close()


async def test_x_should_retry_true_retries_even_a_400(server, store) -> None:
    sleeps = Sleeps()
    router = router_for(server, store, route("openai:gpt-5.4-mini"), sleeps=sleeps)
    server.enqueue_fault(Fault.http_error(400, headers={"x-should-retry": "true", "retry-after-ms": "120"}))
    assert await ask(router, "S.", "q")
    assert [r.model for r in server.received] == ["gpt-5.4-mini", "gpt-5.4-mini"] and sleeps.delays == [0.12]
    await router.close()


async def test_retry_after_as_an_http_date_is_waited_for(server, store) -> None:
    sleeps = Sleeps()
    router = router_for(server, store, route("anthropic:claude-haiku-4-5"), sleeps=sleeps)
    when = datetime.now(UTC) + timedelta(seconds=5)
    server.enqueue_fault(Fault.http_error(429, headers={"retry-after": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}))
    assert await ask(router, "S.", "q")
    [delay] = sleeps.delays
    assert 3.0 <= delay <= 5.0  # whole seconds on the wire, minus the time the request took
    await router.close()


def test_routes_built_without_keys_have_no_entries() -> None:
    assert all(not r.entries for r in build_routes(providers=[]).values())


async def test_model_missing_notice_reaches_a_callback_even_without_text(server, store) -> None:
    seen: list[ModelMissing] = []

    async def tell(notice: ModelMissing, bill_to: Attribution) -> None:
        seen.append(notice)

    server.retired.add("gpt-5.4")
    router = router_for(server, store, route("openai:gpt-5.4", "openai:gpt-5.4-mini"))
    router.on_model_missing = tell
    await asyncio.wait_for(ask(router, "S.", "q"), 10)
    [notice] = seen
    assert (notice.provider, notice.model, notice.task, notice.fallback) == (
        "openai", "gpt-5.4", "summarize", "openai:gpt-5.4-mini")
    assert "The model `gpt-5.4` does not exist" in notice.message  # the provider's own words
    await router.close()


# ---- what the providers offer -------------------------------------------------------------------------------------


async def test_both_providers_list_their_models_through_the_sdks(server, store) -> None:
    server.retired.add("claude-sonnet-5")
    router = router_for(server, store, route("openai:gpt-5.4-mini"))
    assert "gpt-5.4-mini" in await router.models_offered("openai")
    anthropic_ids = await router.models_offered("anthropic")
    assert "claude-haiku-4-5" in anthropic_ids and "claude-sonnet-5" not in anthropic_ids
    await router.close()


async def test_doctor_flags_a_retired_route_model(tmp_path, server) -> None:
    from bot.doctor import run_doctor

    server.retired.add("claude-sonnet-5")
    settings = load_settings(
        db=str(tmp_path / "doc.db"), redis_url=None, base_url_is_provider=True,
        openai_api_key="sk-test", openai_base_url=server.openai_base_url,
        anthropic_api_key="sk-ant-test", anthropic_base_url=server.anthropic_base_url,
    )
    lines: list[str] = []
    assert await run_doctor(settings, out=lines.append) == 1
    assert "FAIL  model anthropic:claude-sonnet-5: not in anthropic's model list: retired or renamed? (routes faq)" in lines
    assert ("ok    model openai:gpt-5.4-mini: listed by the server (routes summarize, combine, classify, faq_brief, probe); "
            f"priced by {PRICE_SOURCE}") in lines
