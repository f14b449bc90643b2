"""The router's parts on their own (llm/retries.py, llm/cached_answers.py, llm/attempt.py): the policies the
end-to-end router tests (tests/test_llm_router.py) exercise through a fake server, pinned down at their edges."""

from __future__ import annotations

from decimal import Decimal

import pytest

import llm.batch
import llm.types
from llm.attempt import Attempt
from llm.cached_answers import CachedAnswer, CachedAnswers
from llm.provider import ErrorInfo
from llm.retries import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    MAX_RETRY_AFTER_S,
    MissingModels,
    retry_delay,
    user_message,
)
from llm.routes import RouteEntry
from llm.types import Outcome

ENTRY = RouteEntry("openai", "gpt-5.4-mini", 1000)


def test_the_servers_delay_comes_first_unless_it_is_too_long_for_a_chat_reply() -> None:
    assert retry_delay(ErrorInfo("rate_limited", True, retry_after_s=7.0), 0, max_retries=2) == 7.0
    # Waiting a minute and more inside a reply is worse than the next route entry.
    assert retry_delay(ErrorInfo("rate_limited", True, retry_after_s=MAX_RETRY_AFTER_S + 1), 0, max_retries=2) is None


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    info = ErrorInfo("overloaded", True)
    for retries in range(8):
        ceiling = min(BACKOFF_BASE_S * 2**retries, BACKOFF_CAP_S)
        delay = retry_delay(info, retries, max_retries=10)
        assert delay is not None and 0.75 * ceiling <= delay <= ceiling


def test_what_is_not_retried() -> None:
    assert retry_delay(ErrorInfo("auth", False), 0, max_retries=2) is None
    assert retry_delay(ErrorInfo("overloaded", True), 2, max_retries=2) is None  # retries used up
    assert retry_delay(ErrorInfo("overloaded", True), 0, max_retries=0) is None


def test_the_user_is_told_in_words_even_for_an_unknown_kind() -> None:
    assert "rate-limiting" in user_message(ErrorInfo("rate_limited", True))
    assert user_message(ErrorInfo("teapot", False)) == "the model provider failed (teapot)"


def test_a_missing_model_is_skipped_only_once_marked() -> None:
    missing = MissingModels()
    assert not missing.skipped(ENTRY)
    missing.mark(ENTRY)
    assert missing.skipped(ENTRY) and not missing.skipped(RouteEntry("openai", "other", 1000))


def test_what_an_attempt_that_ended_unfinished_means() -> None:
    attempt = Attempt(ENTRY)
    assert attempt.failed_outcome is Outcome.ERROR and attempt.ending().kind == "empty"
    attempt.parts.append("Half an ans")
    assert attempt.failed_outcome is Outcome.INTERRUPTED and attempt.ending().kind == "interrupted"
    assert not attempt.answered  # text without a finish reason is never an answer
    attempt.finish = "stop"
    assert attempt.answered and attempt.text == "Half an ans"


class _DictCache:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        self.values[key] = value


class _BrokenCache:
    async def get(self, key: str) -> str | None:
        raise ConnectionError("store down")

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        raise ConnectionError("store down")


async def test_a_cached_answer_comes_back_with_its_writer_and_cost() -> None:
    answers = CachedAnswers(_DictCache())
    await answers.put("k", CachedAnswer("text", ENTRY, Decimal("0.0125"), truncated=True), ttl_s=60)
    hit = await answers.get("k")
    assert hit is not None
    assert (hit.text, hit.entry.provider, hit.entry.model, hit.cost_usd, hit.truncated) == (
        "text", "openai", "gpt-5.4-mini", Decimal("0.0125"), True
    )  # fmt: skip
    assert await answers.get("other") is None


async def test_a_broken_cache_is_a_miss_never_a_failed_call() -> None:
    answers = CachedAnswers(_BrokenCache())
    await answers.put("k", CachedAnswer("text", ENTRY, Decimal(0), truncated=False), ttl_s=60)
    assert await answers.get("k") is None


def test_batch_failed_is_one_class_wherever_it_is_imported_from() -> None:
    """bot/ catches it from llm.types; llm/batch.py raises it; both names are the same class, an LLMError."""
    assert llm.batch.BatchFailed is llm.types.BatchFailed
    with pytest.raises(llm.types.LLMError):
        raise llm.types.BatchFailed("batch b1 expired", batch_id="b1")
