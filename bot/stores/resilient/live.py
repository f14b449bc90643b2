"""Rate budgets and the registry of replies in progress while Redis is down: a token bucket per scope in this
process; heartbeats and done() wait in the guard's backlog (the latest per reply), stale() finds nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.stores.base import LiveReplies, RateBudgets
from bot.stores.memory import MemoryBudgets
from bot.stores.resilient.outage import LOCAL_ENTRIES_MAX, RedisOutage


class ResilientBudgets:
    """Falls back to a token bucket per scope in this process (bot/stores/memory.py, the same arithmetic as
    bot/stores/redis/live.py's TAKE)."""

    def __init__(
        self, inner: RateBudgets, outage: RedisOutage, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner, self._outage = inner, outage
        self._local = MemoryBudgets(clock=clock, remembered=LOCAL_ENTRIES_MAX)

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        return await self._outage.run(
            "budgets",
            lambda: self._inner.try_take(scope, per_minute=per_minute, burst=burst),
            lambda: self._local.take_now(scope, per_minute=per_minute, burst=burst),
        )

    async def pause(self, scope: str, seconds: float) -> None:
        # Pause the local bucket in any case: if Redis dies right after, this replica still honours the 429.
        self._local.pause_now(scope, seconds)
        await self._outage.run("budgets", lambda: self._inner.pause(scope, seconds), lambda: None)


class ResilientLiveReplies:
    def __init__(self, inner: LiveReplies, outage: RedisOutage) -> None:
        self._inner, self._outage = inner, outage

    # Only the latest heartbeat or done() of a reply waits in the backlog. Replayed, the heartbeat is fresh again,
    # so no janitor takes a reply that was still being written during the outage for an orphan.
    async def heartbeat(self, reply_id: str, state: str) -> None:
        await self._outage.write(
            "live.heartbeat", lambda: self._inner.heartbeat(reply_id, state), key=reply_id
        )

    async def done(self, reply_id: str) -> None:
        await self._outage.write("live.done", lambda: self._inner.done(reply_id), key=reply_id)

    async def stale(self, *, older_than_s: float, limit: int = 100) -> list[tuple[str, str]]:
        await self._outage.replay()  # a buffered done() must land before this replica's janitor looks
        return await self._outage.run(
            "live.stale", lambda: self._inner.stale(older_than_s=older_than_s, limit=limit), list
        )
