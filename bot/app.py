"""The composition root: settings → store, model router and assistant. Adapters receive an ``App``."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.assistant import Assistant
from bot.observability import Metrics
from bot.settings import Settings
from bot.stores import open_store
from bot.stores.base import Store
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter


@dataclass
class App:
    settings: Settings
    store: Store
    llm: ModelRouter
    assistant: Assistant
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        await self.llm.close()
        await self.store.close()


async def build_app(settings: Settings, *, store: Store | None = None, metrics: Metrics | None = None) -> App:
    store = store or await open_store(redis_url=settings.secret("redis_url"), sqlite_path=settings.db)
    metrics = metrics or Metrics()
    router = create_router(
        openai_api_key=settings.secret("openai_api_key"),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=settings.secret("anthropic_api_key"),
        anthropic_base_url=settings.anthropic_base_url,
        routes=settings.model_routes(),
        prices=PriceTable.load(settings.prices_file),
        ledger=store.ledger,
        cache=store.kv,
        timeouts=Timeouts(
            connect_s=settings.connect_timeout_s,
            first_token_s=settings.first_token_timeout_s,
            idle_s=settings.idle_timeout_s,
        ),
        max_retries=settings.max_retries,
        anthropic_cache_ttl=settings.anthropic_cache_ttl,
        observers=[metrics.observe_call],
    )
    metrics.watch_router(router)
    assistant = Assistant(settings=settings, store=store, llm=router, metrics=metrics)
    return App(settings, store, router, assistant, metrics)
