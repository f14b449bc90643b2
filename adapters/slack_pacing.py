"""Slack's rate budgets as token buckets the bot spends *before* calling, so it rarely meets a 429.

Slack limits are per method and per workspace (https://docs.slack.dev/apis/web-api/rate-limits, FACTS.md):
every live reply in a workspace draws ``chat.update`` from one Tier 3 budget, so the budget must be shared by all
of them — and, once the bot runs as several replicas, by all replicas. ``WorkspaceBudget`` is the seam for that:
``InMemoryBudget`` serves one process; ``StoreBudget`` puts the bucket in the store (``Store.budgets``: a Lua token
bucket on Redis, a row on SQLite), so N replicas together spend one workspace's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.stores.base import RateBudgets

# chat.update is Tier 3: "50+ per minute" per workspace (https://docs.slack.dev/reference/methods/chat.update).
# The bot aims a little under it so a clock skew or another tool of the same app does not tip it over.
CHAT_UPDATE_PER_MINUTE = 45.0
# Slack allows "some bursting" without a number (FACTS.md, unverified): a small burst keeps the first edits of a
# reply quick without relying on a large undocumented allowance.
CHAT_UPDATE_BURST = 4
# chat.postMessage: about one message per second per channel, short bursts allowed (FACTS.md). 10 % under it, so
# network jitter between our clock and Slack's does not turn the last call of a burst into a 429.
POST_PER_CHANNEL_PER_MINUTE = 54.0
POST_PER_CHANNEL_BURST = 3


class WorkspaceBudget(Protocol):
    """A rate budget shared by everyone spending under the same ``scope`` (a workspace, a channel)."""

    async def take(self, scope: str) -> None:
        """Wait until one call is allowed under ``scope``, and spend it."""
        ...

    async def pause(self, scope: str, seconds: float) -> None:
        """Slack said 429: spend nothing under ``scope`` for ``seconds`` (its Retry-After)."""
        ...


@dataclass
class _Bucket:
    tokens: float
    updated: float
    paused_until: float = float("-inf")
    line: deque[asyncio.Event] = field(default_factory=deque)  # waiters, first come first served


class InMemoryBudget:
    """Token buckets per scope for one process. Callers queue first come, first served; only the head of the line
    waits for a token, so a caller that gives up (a live reply whose text is complete stops waiting) leaves the
    line without leaving a hole or letting two callers share one token."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.per_second = per_minute / 60.0
        self.burst = burst
        self._clock, self._sleep = clock, sleep
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, scope: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = self._buckets[scope] = _Bucket(tokens=float(self.burst), updated=now)
        if now > bucket.updated:  # after a pause, `updated` lies in the future: nothing refills until then
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        return bucket

    async def take(self, scope: str) -> None:
        bucket = self._bucket(scope)
        turn = asyncio.Event()
        bucket.line.append(turn)
        if bucket.line[0] is turn:
            turn.set()
        try:
            await turn.wait()
            while True:
                bucket = self._bucket(scope)
                short = (1.0 - bucket.tokens) / self.per_second if bucket.tokens < 1.0 else 0.0
                wait = max(bucket.paused_until - self._clock(), short, 0.0)
                if wait <= 0:
                    bucket.tokens -= 1.0
                    return
                await self._sleep(wait)  # a 429 meanwhile moves paused_until: the loop looks again
        finally:
            head = bool(bucket.line) and bucket.line[0] is turn
            if turn in bucket.line:
                bucket.line.remove(turn)
            if head and bucket.line:
                bucket.line[0].set()

    async def pause(self, scope: str, seconds: float) -> None:
        bucket = self._bucket(scope)
        bucket.paused_until = max(bucket.paused_until, self._clock() + seconds)
        # Whatever Slack counted that we did not: start from empty after the pause, not from a burst.
        bucket.tokens = min(bucket.tokens, 0.0)
        bucket.updated = max(bucket.updated, bucket.paused_until)


class _Line:
    """Callers waiting for one scope, first come first served: only the head asks for a token."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Event] = deque()

    def enter(self) -> asyncio.Event:
        turn = asyncio.Event()
        self.waiting.append(turn)
        if self.waiting[0] is turn:
            turn.set()
        return turn

    def leave(self, turn: asyncio.Event) -> None:
        """Done, or gave up (cancelled) while queued: either way the line closes up behind us."""
        head = bool(self.waiting) and self.waiting[0] is turn
        if turn in self.waiting:
            self.waiting.remove(turn)
        if head and self.waiting:
            self.waiting[0].set()


class StoreBudget:
    """A WorkspaceBudget whose bucket lives in the store, shared by every replica (``RateBudgets``).

    Within one process callers still queue first come first served and only the head of the line asks the store,
    so a thousand waiting replies cost one store call per token, not a thousand polls. Across replicas the heads
    compete for the shared bucket; a 429 anywhere pauses the scope for everyone."""

    def __init__(
        self,
        budgets: RateBudgets,
        *,
        name: str,
        per_minute: float,
        burst: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self._budgets = budgets
        self._name = name  # the Slack method the budget is for: buckets of different methods never mix
        self.per_minute, self.burst = per_minute, burst
        self._sleep = sleep
        self._lines: dict[str, _Line] = {}

    def _scope(self, scope: str) -> str:
        return f"{scope}:{self._name}"

    async def take(self, scope: str) -> None:
        line = self._lines.setdefault(scope, _Line())
        turn = line.enter()
        try:
            await turn.wait()
            per_minute, burst = self.per_minute, self.burst
            while (wait := await self._budgets.try_take(self._scope(scope), per_minute=per_minute, burst=burst)) > 0:
                await self._sleep(wait)
        finally:
            line.leave(turn)
            if not line.waiting:
                self._lines.pop(scope, None)

    async def pause(self, scope: str, seconds: float) -> None:
        await self._budgets.pause(self._scope(scope), seconds)


def workspace_of(key: str) -> str:
    """LiveReply's pacing key is "{platform}:{workspace}:{channel}/{message_id}"; the budget is per workspace."""
    head = key.split("/", 1)[0]
    parts = head.split(":")
    return ":".join(parts[:2]) if len(parts) >= 3 else head


class WorkspaceEditPacer:
    """bot.live_reply.EditPacer for Slack: every edit of every live reply in a workspace draws from one budget."""

    def __init__(self, budget: WorkspaceBudget) -> None:
        self.budget = budget

    async def wait_turn(self, key: str) -> None:
        await self.budget.take(workspace_of(key))

    async def penalize(self, key: str, retry_after_s: float) -> None:
        await self.budget.pause(workspace_of(key), retry_after_s)
