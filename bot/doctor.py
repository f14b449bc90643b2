"""`supportbot doctor`: checks each configured provider, store and platform and says exactly what is missing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.settings import Settings
from bot.stores import open_store
from bot.stores.base import Store
from llm import PriceTable, Timeouts, create_router
from llm.models import family
from llm.ports import LedgerSink
from llm.router import ModelRouter
from llm.routes import Route, RouteEntry, default_model
from llm.types import Attribution, LedgerRecord, LLMError, Request, Task, Usage

OK, WARN, FAIL = "ok  ", "warn", "FAIL"


async def run_doctor(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    failures = 0

    def say(status: str, what: str, detail: str) -> None:
        nonlocal failures
        failures += status == FAIL
        out(f"{status}  {what}: {detail}")

    # Store
    where = "redis (REDIS_URL)" if settings.redis_url else f"sqlite {settings.db} (SUPPORTBOT_DB)"
    store: Store | None = None
    try:
        store = await open_store(redis_url=settings.secret("redis_url"), sqlite_path=settings.db)
        await store.ping()
        say(OK, "store", f"{where}; {await store.messages.count()} messages, {await store.inquiries.count()} questions")
    except Exception as exc:
        say(FAIL, "store", f"{where} unreachable ({type(exc).__name__}): check REDIS_URL or SUPPORTBOT_DB")
    try:
        await _check_models(settings, store, say)
    finally:
        if store is not None:
            await store.close()

    # Platforms: each adapter package's doctor module (adapters/<platform>/doctor.py) offers
    # `async def doctor(settings) -> list[tuple[str, str, str]]`; only configured platforms are imported.
    for name, token in (("slack", settings.slack_bot_token), ("discord", settings.discord_token)):
        if token is None:
            say(OK, name, "not configured (no token set)")
            continue
        check = _platform_check(name)
        if check is None:
            say(WARN, name, "token set, but this build has no check for it")
            continue
        for status, what, detail in await check(settings):
            say(status, what, detail)

    out("all checks passed" if failures == 0 else f"{failures} check(s) failed")
    return 0 if failures == 0 else 1


async def _check_models(settings: Settings, store: Store | None, say: Callable[[str, str, str], None]) -> None:
    routes = settings.model_routes()
    try:
        prices = PriceTable.load(settings.prices_file)
    except (OSError, ValueError) as exc:  # a broken price file stops `run`; here it is one failed check
        say(FAIL, "prices", f"SUPPORTBOT_PRICES_FILE: {exc}")
        prices = PriceTable()
    if not settings.providers:
        say(FAIL, "models", "no provider key: set OPENAI_API_KEY and/or ANTHROPIC_API_KEY")
    for provider in settings.providers:
        model = next((e.model for r in routes.values() for e in r.entries if e.provider == provider), None)
        if model is None:
            say(WARN, provider, "key set but no route uses this provider")
            continue
        say(*await _probe(settings, provider, model, store, prices))
    for task, route in routes.items():
        if not route.entries and task is not Task.PROBE:
            say(FAIL, f"route {task.value}", "no model: set a provider key or SUPPORTBOT_ROUTES")
        for e in route.entries:
            if e.provider not in settings.providers:
                say(FAIL, f"route {task.value}", f"uses {e.provider} but its API key is not set")
    await _check_route_models(settings, routes, prices, say)


async def _check_route_models(
    settings: Settings, routes: dict[Task, Route], prices: PriceTable, say: Callable[[str, str, str], None]
) -> None:
    """Each route model against the provider's own model list (a retired one is missing from it), and its price."""
    uses: dict[tuple[str, str], list[str]] = {}
    for task, route in routes.items():
        for e in route.entries:
            if e.provider in settings.providers:
                uses.setdefault((e.provider, e.model), []).append(task.value)
    if not uses:
        return
    router = _router(settings, routes, prices, ledger=_NoLedger())
    try:
        offered: dict[str, set[str] | None] = {}
        for provider in sorted({p for p, _ in uses}):
            try:
                offered[provider] = {family(m) for m in await router.models_offered(provider)}
            except Exception as exc:  # a server without a model list: the probe above says whether it answers
                offered[provider] = None
                say(WARN, f"{provider} models", f"could not list the server's models ({type(exc).__name__})")
        for (provider, model), tasks in sorted(uses.items()):
            what, where = f"model {provider}:{model}", f"routes {', '.join(tasks)}"
            ids = offered[provider]
            if ids is not None and family(model) not in ids:
                current = {default_model(provider, Task(t)) for t in tasks} - {model}
                hint = f"; today's default: {', '.join(sorted(current))}" if current else ""
                say(FAIL, what, f"not in {provider}'s model list: retired or renamed? ({where}){hint}")
                continue
            listed = "listed by the server" if ids is not None else "not checked"
            say(*_price_check(router, provider, model, what, f"{listed} ({where})"))
    finally:
        await router.close()


def _price_check(router: ModelRouter, provider: str, model: str, what: str, detail: str) -> tuple[str, str, str]:
    self_hosted = provider in router.self_hosted
    quote = router.prices.quote(model, Usage(input=1), provider=provider, self_hosted=self_hosted)
    where = "self-hosted, " if self_hosted else ""
    if quote.unpriced:
        return WARN, what, f"{detail}; {where}no price: its calls show as unpriced (add it to SUPPORTBOT_PRICES_FILE)"
    return OK, what, f"{detail}; {where}priced by {quote.source}"


class _NoLedger:  # only when the store itself is down: the probe's few tokens are then not recorded
    async def add(self, record: LedgerRecord) -> None:
        return None


def _router(settings: Settings, routes: dict[Task, Route], prices: PriceTable, *, ledger: LedgerSink) -> ModelRouter:
    return create_router(
        openai_api_key=settings.secret("openai_api_key"),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=settings.secret("anthropic_api_key"),
        anthropic_base_url=settings.anthropic_base_url,
        routes=routes,
        prices=prices,
        ledger=ledger,
        cache=None,
        timeouts=Timeouts(connect_s=5, first_token_s=20, idle_s=20),
        max_retries=0,
        base_url_is_provider=settings.base_url_is_provider,
    )


async def _probe(
    settings: Settings, provider: str, model: str, store: Store | None, prices: PriceTable
) -> tuple[str, str, str]:
    probe = {Task.PROBE: Route(Task.PROBE, (RouteEntry(provider, model, 5, None),), cache_ttl_s=0)}
    router = _router(settings, probe, prices, ledger=store.ledger if store is not None else _NoLedger())
    try:
        await router.complete(Task.PROBE, Request.of("", "Reply with OK."), bill_to=Attribution(feature="doctor"))
        return OK, provider, f"{model} answered"
    except LLMError as exc:
        return FAIL, provider, f"{model}: {exc}"
    finally:
        await router.close()


PlatformCheck = Callable[[Settings], Awaitable[list[tuple[str, str, str]]]]


def _platform_check(name: str) -> PlatformCheck | None:
    """The doctor of the platform's adapter package (imported only for a configured platform), or None when this
    build has no doctor module for it: its check is then skipped with a warning. An import error inside an existing
    module is not hidden."""
    try:
        if name == "discord":
            from adapters.discord.doctor import doctor as discord_check

            return discord_check
        if name == "slack":
            from adapters.slack.doctor import doctor as slack_check

            return slack_check
    except ModuleNotFoundError as exc:
        if exc.name != f"adapters.{name}.doctor":
            raise
    return None
