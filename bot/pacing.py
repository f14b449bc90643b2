"""The in-process EditPacer: what a platform with no shared edit budget to keep (the console, test fakes) uses as
its ``ChatPlatform.pacer``. Platforms whose budget is shared by every reply of a workspace or every replica keep their
own (adapters/slack/pacing.py, adapters/discord/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import TTLCache

from bot.types import MessageRef

# Backoff after a 429: the edit interval doubles up to this cap, then decays back to the platform's floor.
MAX_EDIT_INTERVAL_S = 30.0
BACKOFF_FACTOR = 2.0
DECAY_FACTOR = 0.7
# An in-process pacer holds one lane per message it paces; a lane idle this long is forgotten, and past this many the
# least recently used one goes (cachetools.TTLCache: one size/age policy).
PACER_MAX_LANES = 1000
PACER_IDLE_S = 600.0


@dataclass
class _Lane:
    next_at: float
    interval: float
    penalized: bool = False


class IntervalPacer:
    """In-process EditPacer: one lane per message, a floor interval, doubling after a 429 and decaying back. What a
    platform with no shared budget to keep (the console, test fakes) uses as its ``pacer``."""

    def __init__(
        self,
        *,
        min_interval_s: float,
        max_interval_s: float = MAX_EDIT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.max_interval_s = max(max_interval_s, min_interval_s)
        self._clock, self._sleep = clock, sleep
        self._lanes: TTLCache[MessageRef, _Lane] = TTLCache(maxsize=PACER_MAX_LANES, ttl=PACER_IDLE_S, timer=clock)

    def _lane(self, ref: MessageRef) -> _Lane:
        lane = self._lanes.get(ref) or _Lane(next_at=float("-inf"), interval=self.min_interval_s)
        self._lanes[ref] = lane  # set on every use: the time to live counts from the last one
        return lane

    async def wait_turn(self, ref: MessageRef, *, final: bool) -> None:
        # ``final`` changes nothing here: each message has its own lane, so no other edit can stand before it.
        lane = self._lane(ref)
        # Loop: a penalty can move next_at while we sleep.
        while (delay := lane.next_at - self._clock()) > 0:
            await self._sleep(delay)
        if not lane.penalized:
            lane.interval = max(self.min_interval_s, lane.interval * DECAY_FACTOR)
        lane.penalized = False
        lane.next_at = self._clock() + lane.interval

    async def penalize(self, ref: MessageRef, retry_after_s: float) -> None:
        lane = self._lane(ref)
        lane.interval = min(self.max_interval_s, max(self.min_interval_s, lane.interval * BACKOFF_FACTOR))
        lane.penalized = True
        lane.next_at = max(lane.next_at, self._clock() + retry_after_s)

    def forget(self, ref: MessageRef) -> None:
        self._lanes.pop(ref, None)

    @property
    def lanes(self) -> int:
        """How many messages it paces now (at most PACER_MAX_LANES)."""
        return len(self._lanes)
