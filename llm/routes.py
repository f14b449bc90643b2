"""Which model serves which task: a route is an ordered list of entries, the later ones being fallbacks
used when an earlier one fails before any text arrived."""

from __future__ import annotations

from dataclasses import dataclass

from llm.types import Task

# Deterministic tasks are answered from the response cache for this long unless a setting says otherwise.
DEFAULT_CACHE_TTL_S = 3600.0

DEFAULT_MAX_TOKENS: dict[Task, int] = {
    Task.SUMMARIZE: 1200,
    Task.COMBINE: 1500,
    Task.CLASSIFY: 4000,  # a batch of category labels
    Task.FAQ: 2500,
    Task.FAQ_BRIEF: 1500,
    Task.PROBE: 5,
}

# Models per provider and tier, as of 2026-12 (README "Models"): current, priced by genai-prices, and in neither
# SDK's deprecation table (openai ChatModel "Deprecated values", anthropic _data/deprecated_models.py). A task
# picks one tier. Checked by tests/test_default_routes.py so a price-data or SDK upgrade that retires one fails.
DEFAULTS_AS_OF = "2026-12"
_TIERS = {
    "openai": {"cheap": "gpt-5.4-mini", "mid": "gpt-5.4-mini", "strong": "gpt-5.4"},
    "anthropic": {"cheap": "claude-haiku-4-5", "mid": "claude-haiku-4-5", "strong": "claude-sonnet-5"},
}
_TASK_TIER = {
    Task.SUMMARIZE: "mid",
    Task.COMBINE: "mid",
    Task.CLASSIFY: "cheap",
    Task.FAQ: "strong",
    Task.FAQ_BRIEF: "cheap",
    Task.PROBE: "cheap",
}
# Strong writing favours Anthropic, cheap bulk work favours OpenAI; with one key, that provider does everything.
_PREFERRED = {Task.FAQ: ("anthropic", "openai")}


def default_model(provider: str, task: Task) -> str:
    """The model today's default route uses for ``task`` on ``provider`` (what to move a retired model to)."""
    return _TIERS[provider][_TASK_TIER[task]]


def default_models() -> set[tuple[str, str]]:
    """Every (provider, model) a default route can use."""
    return {(p, m) for p, tiers in _TIERS.items() for m in tiers.values()}


@dataclass(frozen=True, slots=True)
class RouteEntry:
    provider: str  # openai | anthropic
    model: str
    max_tokens: int
    temperature: float | None = 0.0

    @classmethod
    def parse(cls, spec: str, *, max_tokens: int, temperature: float | None) -> RouteEntry:
        """'openai:gpt-4o-mini' → RouteEntry."""
        provider, sep, model = spec.partition(":")
        if not sep or provider not in ("openai", "anthropic") or not model:
            raise ValueError(f"route entry {spec!r} must look like 'openai:MODEL' or 'anthropic:MODEL'")
        return cls(provider, model, max_tokens, temperature)


@dataclass(frozen=True, slots=True)
class Route:
    task: Task
    entries: tuple[RouteEntry, ...]
    cache_ttl_s: float = DEFAULT_CACHE_TTL_S  # 0 disables the response cache for the task


def build_routes(
    *,
    providers: list[str],
    overrides: dict[str, list[str]] | None = None,
    max_tokens: dict[str, int] | None = None,
    temperature: dict[str, float | None] | None = None,
    cache_ttl_s: dict[str, float] | None = None,
) -> dict[Task, Route]:
    """Routes for every task from the providers that have keys, with per-task overrides from settings."""
    overrides, max_tokens, temperature, cache_ttl_s = (
        overrides or {},
        max_tokens or {},
        temperature or {},
        cache_ttl_s or {},
    )
    routes: dict[Task, Route] = {}
    for task in Task:
        mt = max_tokens.get(task.value, DEFAULT_MAX_TOKENS[task])
        temp = temperature.get(task.value, 0.0)
        if task.value in overrides:
            specs = overrides[task.value]
        else:
            order = _PREFERRED.get(task, ("openai", "anthropic"))
            specs = [f"{p}:{_TIERS[p][_TASK_TIER[task]]}" for p in order if p in providers]
        entries = tuple(RouteEntry.parse(s, max_tokens=mt, temperature=temp) for s in specs)
        default_ttl = 0.0 if task is Task.PROBE else DEFAULT_CACHE_TTL_S
        routes[task] = Route(task, entries, cache_ttl_s.get(task.value, default_ttl))
    return routes
