"""The policy of the router's one retry loop (STYLE.md 7, 14): when a failed call is asked again and after how long,
which route entries are skipped for a while, and what the user is told when nothing answered."""

from __future__ import annotations

import random
import time

from llm.provider import ErrorInfo
from llm.routes import RouteEntry

# Backoff when the server names no delay: min(0.5·2^n, 8 s) minus up to 25 % jitter, as the SDKs do (FACTS.md).
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# A Retry-After longer than this is not worth waiting for inside a chat reply: fall back to the next entry.
MAX_RETRY_AFTER_S = 60.0
# A model that answered "not found" is skipped (when its route has another entry) for this long before it is
# tried again: a retired model stays retired, but a renamed deployment or a key given access recovers.
MISSING_MODEL_SKIP_S = 3600.0

USER_MESSAGES = {
    "rate_limited": "the model provider is rate-limiting the bot right now",
    "overloaded": "the model provider is overloaded right now",
    "auth": "the model provider refused the bot's API key (an admin needs to check it)",
    "timeout": "the model did not answer in time",
    "unconfigured": "no model is configured (set OPENAI_API_KEY or ANTHROPIC_API_KEY)",
    "model_not_found": "the configured model no longer exists (an admin needs to change the model route)",
    "interrupted": "the model's answer broke off before it finished",
    "empty": "the model returned no answer",
    "context_length_exceeded": "the conversation is too long for the model's context window",
}


def retry_delay(info: ErrorInfo, retries: int, *, max_retries: int) -> float | None:
    """Seconds to wait before asking the same entry again when it was retried ``retries`` times already, or None:
    not retryable here, fall back to the next route entry. The server's own delay (Retry-After) comes first."""
    if not info.retryable or retries >= max_retries:
        return None
    if info.retry_after_s is not None:
        return info.retry_after_s if info.retry_after_s <= MAX_RETRY_AFTER_S else None
    return min(BACKOFF_BASE_S * 2**retries, BACKOFF_CAP_S) * (1 - 0.25 * random.random())


def user_message(info: ErrorInfo) -> str:
    return USER_MESSAGES.get(info.kind, f"the model provider failed ({info.kind})")


class MissingModels:
    """Route entries whose model answered "not found", skipped until ``MISSING_MODEL_SKIP_S`` has passed."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}  # (provider, model) → monotonic time to try it again

    def mark(self, entry: RouteEntry) -> None:
        self._until[(entry.provider, entry.model)] = time.monotonic() + MISSING_MODEL_SKIP_S

    def skipped(self, entry: RouteEntry) -> bool:
        return self._until.get((entry.provider, entry.model), 0.0) > time.monotonic()
