"""The default routes use today's models: each is known to the installed SDK, absent from its deprecation table,
priced by genai-prices and not flagged deprecated there. An SDK or price-data upgrade that retires one fails here,
which is the moment to move the defaults (llm/routes.py) and the README's table."""

from __future__ import annotations

import inspect
import re
import typing

import anthropic.types.model
import openai.types.shared.chat_model
import pytest
from anthropic._data import DEPRECATED_MODELS

from llm.models import PRICE_SOURCE, PriceTable, capabilities, listed_context_window
from llm.routes import DEFAULT_MAX_TOKENS, build_routes, default_model, default_models
from llm.types import Task, Usage

DEFAULTS = sorted(default_models())


def _literal_values(alias: object) -> set[str]:
    values: set[str] = set()
    for arg in typing.get_args(alias):
        values |= _literal_values(arg) if typing.get_args(arg) else ({arg} if isinstance(arg, str) else set())
    return values


def openai_deprecated() -> set[str]:
    """openai-python lists deprecated chat models in the docstring after ``ChatModel`` ("Deprecated values: ...")."""
    source = inspect.getsource(openai.types.shared.chat_model)
    block = source[source.index("Deprecated values"):]
    return set(re.findall(r'"([a-z0-9.\-]+)"', block))


SDK_MODELS = {
    "openai": _literal_values(openai.types.shared.chat_model.ChatModel),
    "anthropic": _literal_values(anthropic.types.model.Model),
}
SDK_DEPRECATED = {"openai": openai_deprecated(), "anthropic": set(DEPRECATED_MODELS)}


def test_the_deprecation_tables_were_read() -> None:
    # Guards the parsing above: both tables name models this SDK version is known to deprecate.
    assert "gpt-4.1" in SDK_DEPRECATED["openai"] and "claude-opus-4-5" in SDK_DEPRECATED["anthropic"]


@pytest.mark.parametrize(("provider", "model"), DEFAULTS)
def test_default_model_is_current_in_the_sdk(provider: str, model: str) -> None:
    assert model in SDK_MODELS[provider], f"{model} is not a model the installed {provider} SDK knows"
    assert model not in SDK_DEPRECATED[provider], f"{model} is in the {provider} SDK's deprecation table"


@pytest.mark.parametrize(("provider", "model"), DEFAULTS)
def test_default_model_is_priced_and_fits_its_routes(provider: str, model: str) -> None:
    quote = PriceTable().quote(model, Usage(input=1000, output=100), provider=provider)
    assert not quote.unpriced and quote.source == PRICE_SOURCE and quote.cost_usd > 0
    window = listed_context_window(model, provider)
    assert window is not None and capabilities(model).context_window == window
    assert window > max(DEFAULT_MAX_TOKENS.values()) * 10


def test_with_both_keys_cheap_work_goes_to_openai_and_faq_writing_to_anthropic() -> None:
    routes = build_routes(providers=["openai", "anthropic"])
    specs = {t: [f"{e.provider}:{e.model}" for e in r.entries] for t, r in routes.items()}
    assert specs[Task.CLASSIFY] == ["openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"]
    assert specs[Task.SUMMARIZE] == ["openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"]
    assert specs[Task.FAQ] == ["anthropic:claude-sonnet-5", "openai:gpt-5.4"]
    assert default_model("openai", Task.FAQ) == "gpt-5.4"  # what a retired-model alert suggests
