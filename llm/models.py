"""What each model accepts and costs: the capability table and the dated price table.

Sources: FACTS.md (provider docs, late 2026). Prices are list prices in USD per 1M tokens; a user overrides or adds
models with a JSON/TOML price file (setting ``prices_file``) without touching code. Dated snapshots
("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06") resolve to their family by dropping the date suffix.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from llm.types import Usage

PRICES_AS_OF = "2026-11"
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: Decimal
    cached_input: Decimal
    output: Decimal
    cache_write_5m: Decimal = Decimal(0)
    cache_write_1h: Decimal = Decimal(0)


def _anthropic(input_: str, output: str) -> Price:
    # Anthropic: cache reads cost 0.1× input, 5-minute writes 1.25×, 1-hour writes 2× (FACTS.md).
    i = Decimal(input_)
    return Price(i, i * Decimal("0.1"), Decimal(output), i * Decimal("1.25"), i * 2)


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "gpt-4o-mini": Price(Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4.1": Price(Decimal("2.00"), Decimal("0.50"), Decimal("8.00")),
    "gpt-4.1-mini": Price(Decimal("0.40"), Decimal("0.10"), Decimal("1.60")),
    "gpt-5-mini": Price(Decimal("0.25"), Decimal("0.025"), Decimal("2.00")),
    "claude-sonnet-4-5": _anthropic("3.00", "15.00"),
    "claude-haiku-4-5": _anthropic("1.00", "5.00"),
}


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_tokens_param: str = "max_tokens"
    temperature: bool = True
    min_cacheable_tokens: int = 1024  # Anthropic: below this a cache_control block is silently not cached
    context_window: int = 32_000  # conservative default for unknown (e.g. self-hosted) models


# gpt-5 and o-series reject temperature != 1 and take max_completion_tokens (FACTS.md).
_CAPABILITIES: dict[str, Capabilities] = {
    "gpt-4o": Capabilities(context_window=128_000),
    "gpt-4o-mini": Capabilities(context_window=128_000),
    "gpt-4.1": Capabilities(context_window=1_047_576),
    "gpt-4.1-mini": Capabilities(context_window=1_047_576),
    "gpt-5-mini": Capabilities("max_completion_tokens", temperature=False, context_window=400_000),
    "claude-sonnet-4-5": Capabilities(min_cacheable_tokens=1024, context_window=200_000),
    "claude-haiku-4-5": Capabilities(min_cacheable_tokens=4096, context_window=200_000),
}
_REASONING_FAMILY = re.compile(r"^(o\d|gpt-5)")
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


def family(model: str) -> str:
    """'claude-sonnet-4-5-20250929' → 'claude-sonnet-4-5'; 'gpt-4o-2024-08-06' → 'gpt-4o'."""
    return _DATE_SUFFIX.sub("", model.strip().lower())


def capabilities(model: str) -> Capabilities:
    name = family(model)
    if name in _CAPABILITIES:
        return _CAPABILITIES[name]
    if _REASONING_FAMILY.match(name):
        return Capabilities("max_completion_tokens", temperature=False, context_window=200_000)
    if name.startswith("claude"):
        return Capabilities(context_window=200_000)
    return Capabilities()


class PriceTable:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """Defaults, overridden model by model by a JSON or TOML file:
        ``{"my-model": {"input": "1.0", "cached_input": "0.1", "output": "2.0"}}`` (USD per 1M tokens)."""
        table = cls()
        if path:
            raw = Path(path).read_text(encoding="utf-8")
            data = tomllib.loads(raw) if path.endswith(".toml") else json.loads(raw)
            for model, fields in data.items():
                base = table._prices.get(family(model), Price(Decimal(0), Decimal(0), Decimal(0)))
                table._prices[family(model)] = replace(
                    base, **{k: Decimal(str(v)) for k, v in fields.items()}
                )
        return table

    def price(self, model: str) -> Price | None:
        return self._prices.get(family(model))

    def cost(self, model: str, usage: Usage) -> Decimal:
        """Exact cost of one call; an unpriced model costs 0 here and is reported by `supportbot doctor`."""
        p = self.price(model)
        if p is None:
            return Decimal(0)
        total = (
            usage.input * p.input
            + usage.cache_read * p.cached_input
            + usage.cache_write_5m * p.cache_write_5m
            + usage.cache_write_1h * p.cache_write_1h
            + usage.output * p.output
        )
        return total / _MILLION

    def caching_saved(self, model: str, usage: Usage) -> Decimal:
        """What prompt caching saved against sending every input token uncached (negative while writes dominate)."""
        p = self.price(model)
        if p is None:
            return Decimal(0)
        saved = (
            usage.cache_read * (p.input - p.cached_input)
            - usage.cache_write_5m * (p.cache_write_5m - p.input)
            - usage.cache_write_1h * (p.cache_write_1h - p.input)
        )
        return saved / _MILLION

    def models(self) -> list[str]:
        return sorted(self._prices)
