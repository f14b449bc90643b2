"""Rate budgets and the registry of replies in progress while Redis is down: a token bucket per scope in this
process; heartbeats and done() wait in the guard's backlog (the latest per reply), stale() finds nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.stores.base import LiveReplies, RateBudgets
from bot.stores.resilient.guard import Bounded, Guard


class ResilientBudgets:
    """Falls back to a token bucket per scope in this process, with bot/stores/redis/live.py's TAKE arithmetic."""

    def __init__(self, inner: RateBudgets, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._buckets: Bounded[tuple[float, float, float]] = Bounded()  # scope → (tokens, updated, paused until)

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        return await self._guard.run(
            "budgets",
            lambda: self._inner.try_take(scope, per_minute=per_minute, burst=burst),
            lambda: self._local_take(scope, per_minute / 60.0, burst),
        )

    async def pause(self, scope: str, seconds: float) -> None:
        # Pause the local bucket in any case: if Redis dies right after, this replica still honours the 429.
        now = self._clock()
        _, updated, paused = self._buckets.get(scope, (0.0, now, 0.0))
        until = max(paused, now + seconds)
        self._buckets.keep(scope, (0.0, max(updated, until), until))
        await self._guard.run("budgets", lambda: self._inner.pause(scope, seconds), lambda: None)

    def _local_take(self, scope: str, rate: float, burst: int) -> float:
        now = self._clock()
        tokens, updated, paused = self._buckets.get(scope, (float(burst), now, 0.0))
        if now < paused:
            return paused - now
        if now > updated:
            tokens, updated = min(float(burst), tokens + (now - updated) * rate), now
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        self._buckets.keep(scope, (tokens, updated, paused))
        return wait


class ResilientLiveReplies:
    def __init__(self, inner: LiveReplies, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    # Only the latest heartbeat or done() of a reply waits in the backlog. Replayed, the heartbeat is fresh again,
    # so no janitor takes a reply that was still being written during the outage for an orphan.
    async def heartbeat(self, reply_id: str, state: str) -> None:
        await self._guard.write("live.heartbeat", lambda: self._inner.heartbeat(reply_id, state), key=reply_id)

    async def done(self, reply_id: str) -> None:
        await self._guard.write("live.done", lambda: self._inner.done(reply_id), key=reply_id)

    async def stale(self, *, older_than_s: float, limit: int = 100) -> list[tuple[str, str]]:
        await self._guard.replay()  # a buffered done() must land before this replica's janitor looks
        return await self._guard.run(
            "live.stale", lambda: self._inner.stale(older_than_s=older_than_s, limit=limit), list
        )
