"""The model layer: providers, routing, retries, prompt caching, response cache and per-call cost accounting.

Only this package imports openai and anthropic. bot/ sees the ``ModelRouter`` (the LLM port) and llm/types.py.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from llm.models import PriceTable
from llm.ports import LedgerSink, ResponseCache
from llm.provider import DEFAULT_TIMEOUTS, Provider, Timeouts
from llm.router import ModelRouter
from llm.routes import Route
from llm.types import LedgerRecord, Task

# The providers' own API hosts (their SDKs' default base URLs). Any other base URL is a server of the user's own.
PROVIDER_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}


def is_self_hosted(provider: str, base_url: str | None) -> bool:
    """True when ``base_url`` points somewhere other than the provider itself (Ollama, vLLM, llama.cpp, …)."""
    if not base_url:
        return False
    return (urlsplit(base_url).hostname or "").lower() != PROVIDER_HOSTS.get(provider)


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
            api_key=openai_api_key, base_url=openai_base_url, timeouts=timeouts
        )
    if anthropic_api_key:
        from llm.anthropic_provider import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(
            api_key=anthropic_api_key,
            base_url=anthropic_base_url,
            timeouts=timeouts,
            cache_ttl=anthropic_cache_ttl,
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
    )


__all__ = ["ModelRouter", "PriceTable", "Timeouts", "create_router", "Task"]
