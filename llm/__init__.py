"""The model layer: providers, routing, retries, prompt caching, response cache and per-call cost accounting.

Only this package imports openai and anthropic. bot/ sees the ``LLM`` port (llm/ports.py) and llm/types.py; the
composition root builds the ``ModelRouter`` that implements it.
"""

from __future__ import annotations

from collections.abc import Callable

from llm.models import PriceTable
from llm.ports import LedgerSink, ResponseCache
from llm.provider import DEFAULT_TIMEOUTS, Provider, Timeouts, is_self_hosted
from llm.router import ModelRouter
from llm.routes import Route
from llm.servers import EntryOptions
from llm.types import LedgerRecord, Task


def create_router(
    *,
    openai_api_key: str | None,
    openai_base_url: str | None,
    anthropic_api_key: str | None,
    anthropic_base_url: str | None,
    routes: dict[Task, Route],
    prices: PriceTable,
    ledger: LedgerSink,
    cache: ResponseCache | None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    max_retries: int = 2,
    anthropic_cache_ttl: str = "5m",
    observers: list[Callable[[LedgerRecord], None]] | None = None,
    base_url_is_provider: bool = False,
    server_options: dict[str, EntryOptions] | None = None,
) -> ModelRouter:
    """``base_url_is_provider``: the base URLs are a gateway or proxy in front of the providers themselves, so
    their list prices apply; otherwise a base URL that is not the provider's own is self-hosted."""
    providers: dict[str, Provider] = {}
    self_hosted = frozenset(
        name
        for name, url in (("openai", openai_base_url), ("anthropic", anthropic_base_url))
        if not base_url_is_provider and is_self_hosted(name, url)
    )
    if openai_api_key:
        from llm.openai_provider import OpenAIProvider

        providers["openai"] = OpenAIProvider(
            api_key=openai_api_key, base_url=openai_base_url, timeouts=timeouts, self_hosted="openai" in self_hosted
        )
    if anthropic_api_key:
        from llm.anthropic_provider import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(
            api_key=anthropic_api_key,
            base_url=anthropic_base_url,
            timeouts=timeouts,
            cache_ttl=anthropic_cache_ttl,
            self_hosted="anthropic" in self_hosted,
        )
    return ModelRouter(
        providers=providers,
        routes=routes,
        prices=prices,
        ledger=ledger,
        cache=cache,
        timeouts=timeouts,
        max_retries=max_retries,
        observers=observers,
        self_hosted=self_hosted,
        options=server_options,
    )


__all__ = ["ModelRouter", "PriceTable", "Timeouts", "create_router", "Task"]
