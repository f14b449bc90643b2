"""Every model in the price table, priced by hand from the list prices in FACTS.md (USD per 1M tokens)."""

from decimal import Decimal

import pytest

from llm.models import DEFAULT_PRICES, PriceTable, capabilities, family
from llm.types import Usage

# OpenAI: no cache-write charge; input here is already the UNCACHED part (prompt_tokens - cached_tokens).
OPENAI_SAMPLE = Usage(input=1000, cache_read=2000, output=500)
# Anthropic: input_tokens excludes cache reads and writes; writes priced 1.25× (5 min) and 2× (1 h) input.
ANTHROPIC_SAMPLE = Usage(input=1000, cache_read=2000, cache_write_5m=300, cache_write_1h=400, output=500)

BY_HAND = {
    # model: (usage, cost worked out by hand)
    "gpt-4o": (OPENAI_SAMPLE, Decimal("0.01")),  # 1000×2.50 + 2000×1.25 + 500×10
    "gpt-4o-mini": (OPENAI_SAMPLE, Decimal("0.0006")),  # 1000×0.15 + 2000×0.075 + 500×0.60
    "gpt-4.1": (OPENAI_SAMPLE, Decimal("0.007")),  # 1000×2 + 2000×0.50 + 500×8
    "gpt-4.1-mini": (OPENAI_SAMPLE, Decimal("0.0014")),  # 1000×0.40 + 2000×0.10 + 500×1.60
    "gpt-5-mini": (OPENAI_SAMPLE, Decimal("0.0013")),  # 1000×0.25 + 2000×0.025 + 500×2
    # 1000×3 + 2000×0.30 + 300×3.75 + 400×6 + 500×15
    "claude-sonnet-4-5": (ANTHROPIC_SAMPLE, Decimal("0.014625")),
    # 1000×1 + 2000×0.10 + 300×1.25 + 400×2 + 500×5
    "claude-haiku-4-5": (ANTHROPIC_SAMPLE, Decimal("0.004875")),
}


def test_every_priced_model_is_checked_by_hand() -> None:
    assert set(BY_HAND) == set(DEFAULT_PRICES)


@pytest.mark.parametrize("model", sorted(BY_HAND))
def test_cost_equals_list_price_by_hand(model: str) -> None:
    usage, expected = BY_HAND[model]
    cost = PriceTable().cost(model, usage)
    assert abs(cost - expected) <= Decimal("1e-9")
    assert isinstance(cost, Decimal)


def test_dated_snapshots_price_as_their_family() -> None:
    table = PriceTable()
    assert family("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert family("gpt-4o-2024-08-06") == "gpt-4o"
    assert table.cost("gpt-4o-2024-08-06", OPENAI_SAMPLE) == table.cost("gpt-4o", OPENAI_SAMPLE)


def test_caching_saved_counts_reads_and_charges_writes() -> None:
    table = PriceTable()
    # sonnet: reads save 2000×(3−0.30); 5 min writes cost 300×(3.75−3) extra; 1 h writes 400×(6−3) extra
    expected = (Decimal(2000) * Decimal("2.70") - 300 * Decimal("0.75") - 400 * Decimal(3)) / 1_000_000
    assert table.caching_saved("claude-sonnet-4-5", ANTHROPIC_SAMPLE) == expected


def test_unknown_model_costs_zero_and_override_file_adds_it(tmp_path) -> None:
    assert PriceTable().cost("llama-3-70b", OPENAI_SAMPLE) == 0
    prices = tmp_path / "prices.toml"
    prices.write_text('[llama-3-70b]\ninput = "1.0"\ncached_input = "0.5"\noutput = "2.0"\n', encoding="utf-8")
    table = PriceTable.load(str(prices))
    # 1000×1.0 + 2000×0.5 + 500×2.0 = 3000 → 0.003
    assert table.cost("llama-3-70b", OPENAI_SAMPLE) == Decimal("0.003")
    assert table.cost("gpt-4o", OPENAI_SAMPLE) == Decimal("0.01")  # defaults untouched


def test_override_changes_one_field_of_a_known_model(tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o": {"output": "12.00"}}', encoding="utf-8")
    # 1000×2.50 + 2000×1.25 + 500×12 = 11000 → 0.011
    assert PriceTable.load(str(prices)).cost("gpt-4o", OPENAI_SAMPLE) == Decimal("0.011")


def test_capabilities_drive_parameters() -> None:
    assert capabilities("gpt-5-mini").max_tokens_param == "max_completion_tokens"
    assert not capabilities("gpt-5-mini").temperature
    assert not capabilities("o3-mini").temperature
    assert capabilities("gpt-4o-mini").temperature
    assert capabilities("claude-haiku-4-5-20251001").min_cacheable_tokens == 4096
    assert capabilities("claude-sonnet-4-5").min_cacheable_tokens == 1024
