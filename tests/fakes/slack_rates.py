"""Token buckets that make the fake Slack answer 429 + Retry-After the way Slack does.

Slack's limits are per method, per workspace, per app ("tiers"), plus a per-channel limit for
chat.postMessage. Source: https://docs.slack.dev/apis/web-api/rate-limits (and ../shared/guide/FACTS.md).
Burst sizes are not documented: the defaults below are this fake's choice, and every figure can be
overridden so tests can run fast (`time_scale`) or reproduce a specific tier (`rates`), or key a method's
bucket by channel too (`per_channel`: the unverified case of a chat.update limit per channel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A sustained rate (calls per minute, before `time_scale`) and how many calls may come at once."""

    per_minute: float
    burst: int = 1


# Slack's documented tiers (calls per minute). Bursts: the fake's guess; Slack's words are "a small amount of
# burst behavior is tolerated" (Tier 1), "occasional bursts" (2), "sporadic bursts are welcome" (3) and "generous
# burst behavior" (4).
TIER_1 = Rate(per_minute=1, burst=1)
TIER_2 = Rate(per_minute=20, burst=3)
TIER_3 = Rate(per_minute=50, burst=5)
TIER_4 = Rate(per_minute=100, burst=20)
# Tier 3 methods that page through collections: "varying support for greater bursts of activity, especially when
# using cursor-based pagination" (https://api.slack.com/changelog/2018-03-great-rate-limits). Half a minute's
# allowance at once is the fake's guess.
TIER_3_PAGING = Rate(per_minute=50, burst=25)
# Since 2025, non-Marketplace apps: conversations.history/replies at 1 request per minute, 15 per page.
RESTRICTED_HISTORY = Rate(per_minute=1, burst=1)
RESTRICTED_HISTORY_PAGE_MAX = 15
# chat.postMessage: "1 message per second per channel, short bursts allowed".
POST_PER_CHANNEL = Rate(per_minute=60, burst=3)

# Tier per method as documented on each method's reference page. The streaming methods' tiers are unverified
# (FACTS.md); their reference pages say chat.startStream and chat.stopStream Tier 2, chat.appendStream Tier 4
# (docs.slack.dev as slack-ruby/slack-api-ref records it). This fake keeps Tier 4 for all three, the generous case
# issue 11's table was measured in; `set_rate` (the bench's --fake-rate) gives the documented one.
DEFAULT_RATES: Mapping[str, Rate] = {
    "auth.test": TIER_4,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "chat.postEphemeral": TIER_4,
    "chat.startStream": TIER_4,
    "chat.appendStream": TIER_4,
    "chat.stopStream": TIER_4,
    "conversations.replies": TIER_3_PAGING,
    "conversations.history": TIER_3_PAGING,
    "conversations.info": TIER_3,
    "users.info": TIER_4,
    "apps.connections.open": TIER_1,
}


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by (workspace, method[, channel]); `take` says how long to wait, 0 when allowed."""

    def __init__(self, *, rates: Mapping[str, Rate], post_per_channel: Rate, time_scale: float) -> None:
        self.rates: dict[str, Rate] = dict(rates)
        self.post_per_channel = post_per_channel
        # 0.01 makes a minute last 0.6 s: every window shrinks, every Retry-After too.
        self.time_scale = time_scale
        self.enabled = True
        # Methods whose bucket is per (workspace, method, channel) instead of per (workspace, method).
        self.per_channel: set[str] = set()
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def take(self, *, team: str, method: str, channel: str | None) -> float:
        """Consume one call; return 0.0 if allowed, else the seconds until a token is free."""
        if not self.enabled:
            return 0.0
        if method == "chat.postMessage":
            if channel is None:
                return 0.0
            return self._take((team, method, channel), self.post_per_channel)
        rate = self.rates.get(method)
        if rate is None:
            return 0.0
        if method in self.per_channel and channel is not None:
            return self._take((team, method, channel), rate)
        return self._take((team, method), rate)

    def _take(self, key: tuple[str, ...], rate: Rate) -> float:
        now = time.monotonic()
        per_second = rate.per_minute / 60.0 / self.time_scale
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(rate.burst), updated=now)
        bucket.tokens = min(float(rate.burst), bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second


def retry_after_header(wait: float, *, fractional: bool) -> str:
    """Slack sends whole seconds; fractional values are an opt-in for fast tests."""
    if fractional:
        return f"{max(wait, 0.001):.3f}"
    return str(max(1, math.ceil(wait)))
