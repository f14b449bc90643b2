"""What each model accepts and costs: the capability table and the prices.

Prices come from ``genai-prices`` (pydantic's maintained price data, shipped inside the package and read
offline): list prices per provider with cache read/write classes, tiers above a context size, date-conditional
prices and batch/service-tier variants. A user's price file (setting ``prices_file``) overrides or adds models
without touching code, and is the only source for self-hosted routes: a model name served by your own server is
not billed at the provider's list price. A model no source prices is *unpriced* — reported as such, never "free".
Dated snapshots ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06") resolve to their family by dropping the date
suffix in the price file; genai-prices matches them itself.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices import types as gp_types

from llm.types import Usage

log = logging.getLogger(__name__)

# Where list prices come from; shown by `supportbot doctor` and the README.
PRICE_SOURCE = f"genai-prices {genai_prices.__version__}"
FILE_SOURCE = "price file"
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens (a price-file entry)."""

    input: Decimal
    cached_input: Decimal
    output: Decimal
    cache_write_5m: Decimal = Decimal(0)
    cache_write_1h: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Quote:
    """What one call cost, and who said so."""

    cost_usd: Decimal
    saved_usd: Decimal  # what prompt caching saved against sending every input token uncached
    source: str  # PRICE_SOURCE, FILE_SOURCE, or "" when unpriced
    unpriced: bool = False


UNPRICED = Quote(Decimal(0), Decimal(0), "", unpriced=True)


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
    # Today's default routes (llm/routes.py); context windows as genai-prices lists them.
    "gpt-5.4-mini": Capabilities("max_completion_tokens", temperature=False, context_window=400_000),
    "gpt-5.4": Capabilities("max_completion_tokens", temperature=False, context_window=1_050_000),
    "claude-sonnet-4-6": Capabilities(min_cacheable_tokens=1024, context_window=1_000_000),
    # Newer Claude models may reject `temperature` (FACTS.md, unverified which): Sonnet 5 is sent none.
    "claude-sonnet-5": Capabilities(temperature=False, min_cacheable_tokens=1024, context_window=1_000_000),
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
    """Prices per call: the user's price file first, then genai-prices' list prices (never for self-hosted)."""

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self._file = dict(overrides or {})

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """List prices, overridden or extended model by model by a JSON or TOML file:
        ``{"my-model": {"input": "1.0", "cached_input": "0.1", "output": "2.0"}}`` (USD per 1M tokens). Fields left
        out of an entry keep the model's list price, or for a model with none: cached input and cache writes
        cost what input costs (no discount assumed), nothing else is assumed."""
        table = cls()
        if path:
            raw = Path(path).read_text(encoding="utf-8")
            data = tomllib.loads(raw) if path.endswith(".toml") else json.loads(raw)
            known = {f.name for f in fields(Price)}
            for model, entry in data.items():
                unknown = set(entry) - known
                if unknown:
                    raise ValueError(f"{path}: {model}: unknown price field(s) {sorted(unknown)}; use {sorted(known)}")
                values = {k: Decimal(str(v)) for k, v in entry.items()}
                base = _listed_base(model)
                if base is None:
                    if "input" not in values or "output" not in values:
                        raise ValueError(f"{path}: {model} has no list price: give at least input and output")
                    i = values["input"]
                    base = Price(i, i, values["output"], i, i)
                table._file[family(model)] = replace(base, **values)
        return table

    def price(self, model: str) -> Price | None:
        """The price-file entry for ``model`` (None when the file does not name it)."""
        return self._file.get(family(model))

    def models(self) -> list[str]:
        return sorted(self._file)

    def quote(
        self,
        model: str,
        usage: Usage,
        *,
        provider: str | None = None,
        self_hosted: bool = False,
        at: datetime | None = None,
        context: dict[str, str] | None = None,
    ) -> Quote:
        """Exact cost of one call. ``context`` selects genai-prices variants, e.g. ``{"service_tier": "flex"}`` or
        ``{"processing": "batch"}``; ``at`` picks date-conditional prices (default: now)."""
        own = self.price(model)
        if own is not None:
            return Quote(_file_cost(own, usage), _file_saved(own, usage), FILE_SOURCE)
        if self_hosted:
            return UNPRICED
        listed = _listed(model, provider)
        if listed is None:
            return UNPRICED
        when = at or datetime.now(UTC)
        try:
            cost = _list_cost(listed, usage, when, context)
            saved = Decimal(0)
            if usage.cache_read or usage.cache_write_5m or usage.cache_write_1h:
                uncached = Usage(input=usage.total_input, output=usage.output)
                saved = _list_cost(listed, uncached, when, context) - cost
        except ValueError:  # impossible figures from a server (negative counts): say unpriced, never lose the record
            log.warning("could not price %s for usage %s", model, usage, exc_info=True)
            return UNPRICED
        return Quote(cost, saved, PRICE_SOURCE)

    def cost(self, model: str, usage: Usage, *, provider: str | None = None) -> Decimal:
        """The cost alone (0 when unpriced: use ``quote`` to tell unpriced from free)."""
        return self.quote(model, usage, provider=provider).cost_usd

    def caching_saved(self, model: str, usage: Usage, *, provider: str | None = None) -> Decimal:
        """What prompt caching saved against sending every input token uncached (negative while writes dominate)."""
        return self.quote(model, usage, provider=provider).saved_usd


def _file_cost(p: Price, usage: Usage) -> Decimal:
    total = (
        usage.input * p.input
        + usage.cache_read * p.cached_input
        + usage.cache_write_5m * p.cache_write_5m
        + usage.cache_write_1h * p.cache_write_1h
        + usage.output * p.output
    )
    return total / _MILLION


def _file_saved(p: Price, usage: Usage) -> Decimal:
    saved = (
        usage.cache_read * (p.input - p.cached_input)
        - usage.cache_write_5m * (p.cache_write_5m - p.input)
        - usage.cache_write_1h * (p.cache_write_1h - p.input)
    )
    return saved / _MILLION


_Listed = tuple[gp_types.Provider, gp_types.ModelInfo]


@functools.lru_cache(maxsize=256)  # route models are few; genai-prices does not remember a miss (~0.1 ms each)
def _listed(model: str, provider: str | None) -> _Listed | None:
    """genai-prices' provider and model entry for ``model`` (None when it does not know it)."""
    snapshot = genai_prices.data_snapshot.get_snapshot()
    try:
        return snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return None


def _list_cost(listed: _Listed, usage: Usage, at: datetime, context: dict[str, str] | None) -> Decimal:
    provider, info = listed
    # genai-prices' input_tokens is the TOTAL input, cache reads and writes included (FACTS.md), while our
    # Usage.input is the uncached part; cache_write_tokens is the parent of the 5m/1h classes, so it carries both.
    written = usage.cache_write_5m + usage.cache_write_1h
    theirs = genai_prices.Usage(
        input_tokens=usage.total_input,
        cache_read_tokens=usage.cache_read,
        cache_write_tokens=written,
        cache_write_5m_tokens=usage.cache_write_5m,
        cache_write_1h_tokens=usage.cache_write_1h,
        output_tokens=usage.output,
    )
    calc = info.calc_price(theirs, provider, genai_request_timestamp=at, price_context=context)
    return calc.total_price


def _listed_base(model: str) -> Price | None:
    """A model's current standard list price as a price-file entry (base tier), to fill fields a file omits."""
    listed = _listed(model, None)
    if listed is None:
        return None
    prices = listed[1].get_prices(datetime.now(UTC))

    def base(name: str) -> Decimal | None:
        value = getattr(prices, name, None)
        return value.base if isinstance(value, gp_types.TieredPrices) else value

    i, o = base("input_mtok"), base("output_mtok")
    if i is None or o is None:
        return None
    w5 = base("cache_write_mtok") or i
    return Price(i, base("cache_read_mtok") or i, o, w5, base("cache_write_1h_mtok") or w5)


def listed_context_window(model: str, provider: str | None = None) -> int | None:
    """The model's context window according to genai-prices (None when unknown)."""
    listed = _listed(model, provider)
    return listed[1].context_window if listed is not None else None
