"""Prices: genai-prices' list prices through our two-convention Usage, the user's price file on top, and what
nobody prices reported as unpriced. Figures by hand come from the list prices in FACTS.md (USD per 1M tokens)."""

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from llm.models import FILE_SOURCE, PRICE_SOURCE, PriceTable, capabilities, family
from llm.provider import retry_after_from_headers, should_retry
from llm.routes import default_models
from llm.types import Usage

# OpenAI: no cache-write charge; input here is already the UNCACHED part (prompt_tokens - cached_tokens).
OPENAI_SAMPLE = Usage(input=1000, cache_read=2000, output=500)
# Anthropic: input_tokens excludes cache reads and writes; writes priced 1.25× (5 min) and 2× (1 h) input.
ANTHROPIC_SAMPLE = Usage(input=1000, cache_read=2000, cache_write_5m=300, cache_write_1h=400, output=500)

BY_HAND = {
    # model: (provider, usage, cost worked out by hand)
    "gpt-5.4-mini": ("openai", OPENAI_SAMPLE, Decimal("0.00315")),  # 1000×0.75 + 2000×0.075 + 500×4.50
    "gpt-5.4": ("openai", OPENAI_SAMPLE, Decimal("0.0105")),  # 1000×2.50 + 2000×0.25 + 500×15
    "gpt-4o": ("openai", OPENAI_SAMPLE, Decimal("0.01")),  # 1000×2.50 + 2000×1.25 + 500×10
    # 1000×1 + 2000×0.10 + 300×1.25 + 400×2 + 500×5
    "claude-haiku-4-5": ("anthropic", ANTHROPIC_SAMPLE, Decimal("0.004875")),
    # 1000×3 + 2000×0.30 + 300×3.75 + 400×6 + 500×15
    "claude-sonnet-4-6": ("anthropic", ANTHROPIC_SAMPLE, Decimal("0.014625")),
    # 1000×2 + 2000×0.20 + 300×2.50 + 400×4 + 500×10
    "claude-sonnet-5": ("anthropic", ANTHROPIC_SAMPLE, Decimal("0.00975")),
}
TOLERANCE = Decimal("1e-9")


def test_every_default_route_model_is_checked_by_hand() -> None:
    assert {m for _, m in default_models()} <= set(BY_HAND)


@pytest.mark.parametrize("model", sorted(BY_HAND))
def test_cost_equals_list_price_by_hand(model: str) -> None:
    provider, usage, expected = BY_HAND[model]
    quote = PriceTable().quote(model, usage, provider=provider)
    assert abs(quote.cost_usd - expected) <= TOLERANCE
    assert isinstance(quote.cost_usd, Decimal) and quote.source == PRICE_SOURCE and not quote.unpriced


def test_genai_prices_takes_total_input_and_ours_is_uncached() -> None:
    """The most common cost bug: our Usage.input excludes cache reads and writes, genai-prices' input_tokens
    includes them. Handing it our `input` unconverted is refused (cache reads would exceed input)."""
    usage = ANTHROPIC_SAMPLE
    theirs = genai_prices.Usage(
        input_tokens=usage.total_input, cache_read_tokens=2000, cache_write_tokens=700,
        cache_write_1h_tokens=400, output_tokens=500,
    )
    direct = genai_prices.calc_price(theirs, "claude-haiku-4-5", provider_id="anthropic").total_price
    assert PriceTable().quote("claude-haiku-4-5", usage, provider="anthropic").cost_usd == direct
    wrong = genai_prices.Usage(input_tokens=usage.input, cache_read_tokens=2000, output_tokens=500)
    with pytest.raises(ValueError, match="cannot exceed"):
        genai_prices.calc_price(wrong, "claude-haiku-4-5", provider_id="anthropic")


def test_tier_above_200k_is_decided_by_total_input_cache_included() -> None:
    """Sonnet 4.6 doubled input prices above 200k input tokens until 2026-03-13 (then one flat price): 150k fresh
    + 100k read from cache is above the line, because the line counts total input."""
    table = PriceTable()
    tiered = datetime(2026, 3, 1, tzinfo=UTC)
    below = Usage(input=150_000, cache_read=40_000, output=1000)
    above = Usage(input=150_000, cache_read=100_000, output=1000)
    # below: 150k×3 + 40k×0.30 + 1k×15 ; above: every token at the tier price: 150k×6 + 100k×0.60 + 1k×22.50
    assert table.quote("claude-sonnet-4-6", below, provider="anthropic", at=tiered).cost_usd == Decimal("0.477")
    assert table.quote("claude-sonnet-4-6", above, provider="anthropic", at=tiered).cost_usd == Decimal("0.9825")
    # gpt-5.4 still tiers above 272k: 300k fresh input at 5.00 instead of 2.50, output at 22.50
    big = Usage(input=300_000, output=1000)
    assert table.cost("gpt-5.4", big, provider="openai") == Decimal("1.5225")


def test_date_conditional_price_follows_the_call_date() -> None:
    """gpt-5.5-cyber gained a cache-read price on 2026-10-19; before that every input token paid full price.
    Sonnet 4.6 lost its long-context tier on 2026-03-13."""
    table = PriceTable()
    long = Usage(input=150_000, cache_read=100_000, output=1000)
    today = table.quote("claude-sonnet-4-6", long, provider="anthropic", at=datetime(2026, 12, 1, tzinfo=UTC))
    assert today.cost_usd == Decimal("0.495")  # 150k×3 + 100k×0.30 + 1k×15
    usage = Usage(input=1000, cache_read=1000, output=0)
    before = table.quote("gpt-5.5-cyber", usage, provider="openai", at=datetime(2026, 10, 1, tzinfo=UTC))
    after = table.quote("gpt-5.5-cyber", usage, provider="openai", at=datetime(2026, 11, 1, tzinfo=UTC))
    assert before.cost_usd == Decimal("0.025")  # 2000 × 12.50 (cached tokens unpriced → counted as input)
    assert after.cost_usd == Decimal("0.01375")  # 1000 × 12.50 + 1000 × 1.25


def test_batch_and_service_tier_variants() -> None:
    table = PriceTable()
    standard = table.quote("claude-haiku-4-5", ANTHROPIC_SAMPLE, provider="anthropic").cost_usd
    batch = table.quote("claude-haiku-4-5", ANTHROPIC_SAMPLE, provider="anthropic", context={"processing": "batch"})
    assert batch.cost_usd * 2 == standard  # batch APIs cost 50 % (FACTS.md)
    flex = table.quote("gpt-5.4-mini", OPENAI_SAMPLE, provider="openai", context={"service_tier": "flex"})
    assert flex.cost_usd * 2 == table.cost("gpt-5.4-mini", OPENAI_SAMPLE, provider="openai")


def test_dated_snapshots_price_as_their_family() -> None:
    table = PriceTable()
    assert family("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert table.cost("gpt-4o-2024-08-06", OPENAI_SAMPLE) == table.cost("gpt-4o", OPENAI_SAMPLE)
    assert table.cost("claude-haiku-4-5-20251001", ANTHROPIC_SAMPLE) == table.cost("claude-haiku-4-5", ANTHROPIC_SAMPLE)


def test_caching_saved_counts_reads_and_charges_writes() -> None:
    table = PriceTable()
    # haiku: reads save 2000×(1−0.10); 5 min writes cost 300×(1.25−1) extra; 1 h writes 400×(2−1) extra
    expected = (Decimal(2000) * Decimal("0.90") - 300 * Decimal("0.25") - 400 * Decimal(1)) / 1_000_000
    assert table.caching_saved("claude-haiku-4-5", ANTHROPIC_SAMPLE, provider="anthropic") == expected


def test_unknown_model_is_unpriced_not_free_and_the_price_file_adds_it(tmp_path) -> None:
    quote = PriceTable().quote("llama-3-70b", OPENAI_SAMPLE, provider="openai")
    assert quote.unpriced and quote.cost_usd == 0 and quote.source == ""
    prices = tmp_path / "prices.toml"
    prices.write_text('[llama-3-70b]\ninput = "1.0"\ncached_input = "0.5"\noutput = "2.0"\n', encoding="utf-8")
    table = PriceTable.load(str(prices))
    # 1000×1.0 + 2000×0.5 + 500×2.0 = 3000 → 0.003
    quote = table.quote("llama-3-70b", OPENAI_SAMPLE, provider="openai")
    assert quote.cost_usd == Decimal("0.003") and quote.source == FILE_SOURCE and not quote.unpriced
    assert table.cost("gpt-4o", OPENAI_SAMPLE) == Decimal("0.01")  # list prices untouched


def test_impossible_usage_is_unpriced_not_a_crash() -> None:
    quote = PriceTable().quote("gpt-5.4-mini", Usage(input=-5, cache_read=10, output=1), provider="openai")
    assert quote.unpriced and quote.cost_usd == 0


def test_override_changes_one_field_of_a_listed_model(tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o": {"output": "12.00"}}', encoding="utf-8")
    # 1000×2.50 + 2000×1.25 + 500×12 = 11000 → 0.011
    assert PriceTable.load(str(prices)).cost("gpt-4o", OPENAI_SAMPLE) == Decimal("0.011")


def test_price_file_mistakes_are_named(tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"my-model": {"input": "1"}}', encoding="utf-8")
    with pytest.raises(ValueError, match="my-model has no list price"):
        PriceTable.load(str(prices))
    prices.write_text('{"gpt-4o": {"outptu": "1"}}', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown price field"):
        PriceTable.load(str(prices))


def test_self_hosted_model_is_priced_only_by_the_price_file(tmp_path) -> None:
    """`openai:gpt-4.1-mini` served by a local server is not billed at OpenAI's list price."""
    assert PriceTable().quote("gpt-4.1-mini", OPENAI_SAMPLE, provider="openai", self_hosted=True).unpriced
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4.1-mini": {"input": "0", "cached_input": "0", "output": "0.01"}}', encoding="utf-8")
    quote = PriceTable.load(str(prices)).quote("gpt-4.1-mini", OPENAI_SAMPLE, provider="openai", self_hosted=True)
    assert quote.cost_usd == Decimal("0.000005") and quote.source == FILE_SOURCE


def test_capabilities_drive_parameters() -> None:
    assert capabilities("gpt-5.4-mini").max_tokens_param == "max_completion_tokens"
    assert not capabilities("gpt-5.4").temperature
    assert not capabilities("o3-mini").temperature
    assert capabilities("gpt-4o-mini").temperature
    assert capabilities("claude-haiku-4-5-20251001").min_cacheable_tokens == 4096
    assert capabilities("claude-sonnet-4-5").min_cacheable_tokens == 1024


# ---- retries: the server's word first (openai-python _should_retry / _parse_retry_after_header) ----------------


def test_retry_after_in_every_form() -> None:
    assert retry_after_from_headers({"retry-after": "3"}) == 3.0
    assert retry_after_from_headers({"retry-after": "1.5"}) == 1.5
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # -ms wins
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_from_headers({"retry-after": "Wed, 02 Dec 2026 12:00:07 GMT"}, now=now) == 7.0
    assert retry_after_from_headers({"retry-after": "Wed, 02 Dec 2026 11:59:00 GMT"}, now=now) == 0.0  # past
    assert retry_after_from_headers({"retry-after": "soon"}) is None
    assert retry_after_from_headers({}) is None


def test_x_should_retry_overrides_the_status() -> None:
    assert should_retry(400, {"x-should-retry": "true"})
    assert not should_retry(503, {"x-should-retry": "false"})
    assert should_retry(529, {}) and should_retry(429, {}) and not should_retry(404, {})
