"""RateBudgets kept in this process's memory: the house's one token bucket in Python (the Redis and SQLite stores do
the same sums in Lua and SQL, for budgets shared by replicas). Used where a budget needs no sharing (a Slack
workspace's learned buckets in one process) and by the resilient store while Redis is down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cachetools

# At most this many scopes are remembered, the least recently used forgotten first; a bucket idle this long is full
# again, so forgetting it changes nothing (Slack's Retry-After is seconds, its restricted tier's a minute).
SCOPES_REMEMBERED = 10_000
SCOPE_IDLE_S = 600.0


@dataclass
class _Tokens:
    tokens: float
    updated: float  # after a pause this lies in the future: nothing refills until then
    paused_until: float = float("-inf")


class MemoryBudgets:
    """A token bucket per scope: ``burst`` tokens, refilled at ``per_minute``; a pause (a 429's Retry-After) empties
    the bucket until it ends, since the service counted calls we did not."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = SCOPES_REMEMBERED,
        idle_s: float = SCOPE_IDLE_S,
    ) -> None:
        self._clock = clock
        self._buckets: cachetools.TTLCache[str, _Tokens] = cachetools.TTLCache(remembered, idle_s, timer=clock)

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        return self.take_now(scope, per_minute=per_minute, burst=burst)

    def take_now(self, scope: str, *, per_minute: float, burst: int) -> float:
        """``try_take`` without awaiting: 0 when a token was taken, else the seconds until one is due."""
        now, rate = self._clock(), per_minute / 60.0
        bucket = self._buckets.get(scope) or _Tokens(float(burst), now)
        self._buckets[scope] = bucket  # set on every use: the idle time counts from the last one
        if now < bucket.paused_until:
            return bucket.paused_until - now
        if now > bucket.updated:
            bucket.tokens, bucket.updated = min(float(burst), bucket.tokens + (now - bucket.updated) * rate), now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    async def pause(self, scope: str, seconds: float) -> None:
        self.pause_now(scope, seconds)

    def pause_now(self, scope: str, seconds: float) -> None:
        now = self._clock()
        bucket = self._buckets.get(scope) or _Tokens(0.0, now)
        bucket.paused_until = max(bucket.paused_until, now + seconds)
        bucket.tokens = min(bucket.tokens, 0.0)  # start from empty after the pause, not from a burst
        bucket.updated = max(bucket.updated, bucket.paused_until)
        self._buckets[scope] = bucket
