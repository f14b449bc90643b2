"""What the bot learns about each Slack workspace from Slack's own answers, remembered in the store for every replica.

Slack documents tiers ("Tier 3: 50+ per minute, sporadic bursts welcome") but not a workspace's real allowance,
its burst, whether ``chat.update`` is limited per workspace or per channel (FACTS.md: unverified), whether this
app gets the restricted history tier, or whether native streaming is on. So the bot starts from the documented
figure and learns:

- ``LearnedBudget``: a token bucket whose rate follows Slack's answers — additive increase while calls are
  accepted, multiplicative decrease (and a pause for the ``Retry-After``) on a 429 — with the learned rate kept in
  the store's key-value table, so every replica spends at the rate one of them learned. A rate can also be pinned
  for a while (the restricted history tier: 1 call a minute).
- ``WorkspaceFacts``: yes/no facts with an expiry (native streaming refused here), so they are re-checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from adapters.slack.pacing import _Line
from bot.stores import StoreUnavailable
from bot.stores.base import KeyValue, RateBudgets

log = logging.getLogger(__name__)

# Additive increase, as TCP does it per window rather than per packet: a minute of calls accepted at the current rate
# raises it by this share of the documented rate while no 429 is known (probing), and by the smaller share once
# Slack has said where its limit is (then the rate creeps towards the last 429's rate and stops short of it).
# Measured (slack_load bench): 4 calls/min more per accepted call probed past Tier 4 within seconds, 2–3 429s a run.
PROBE_SHARE = 0.2
SETTLED_SHARE = 0.05
# Multiplicative decrease on a 429. TCP halves; here each 429 also pauses the budget for its Retry-After, so a gentler
# cut keeps most of the throughput while the ceiling (below) stops the next probe short of the refused rate.
DECREASE = 0.7
# The rate never falls below this share of the documented start: Slack's tiers promise at least that ("50+ per
# minute"), so repeated 429s mean a busy window (each one paused for its Retry-After), not a smaller tier.
FLOOR_SHARE = 0.2
# After a 429 the rate stays under this share of the rate Slack refused, for CEILING_TTL_S; then it probes again.
CEILING_SHARE = 0.85
CEILING_TTL_S = 600.0
# What was learned is kept this long in the store, then re-learned from the documented start.
LEARNED_TTL_S = 24 * 3600.0
# Replicas re-read the shared rate this often, and write theirs at most this often (a 429 is written at once).
REFRESH_S = 5.0
WRITE_EVERY_S = 2.0


@dataclass
class Learned:
    """One scope's learned rate; times are wall-clock (time.time()) so replicas agree on them."""

    per_minute: float
    ceiling: float = 0.0  # the rate Slack last refused (0: none known)
    ceiling_until: float = 0.0
    pinned_until: float = 0.0  # a rate set from a known fact (the restricted tier): no probing until then


@dataclass
class _Scope:
    learned: Learned
    line: _Line = field(default_factory=_Line)
    loaded_at: float = float("-inf")
    written_at: float = float("-inf")
    dirty: bool = False


class LocalBuckets:
    """RateBudgets for one process (no store): the arithmetic of bot/stores/redis_live.py's token bucket."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # scope → (tokens, updated, paused until)

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        now, rate = self._clock(), per_minute / 60.0
        tokens, updated, paused = self._buckets.get(scope, (float(burst), now, 0.0))
        if now < paused:
            return paused - now
        if now > updated:
            tokens, updated = min(float(burst), tokens + (now - updated) * rate), now
        wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
        self._buckets[scope] = (tokens - 1 if wait == 0 else tokens, updated, paused)
        return wait

    async def pause(self, scope: str, seconds: float) -> None:
        now = self._clock()
        _, updated, paused = self._buckets.get(scope, (0.0, now, 0.0))
        until = max(paused, now + seconds)
        self._buckets[scope] = (0.0, max(updated, until), until)


class LearnedBudget:
    """A WorkspaceBudget (slack_pacing) for one Slack method whose rate is learned per scope (a workspace).

    ``start_per_minute`` is the documented tier and ``burst`` the calls that may go at once at that rate. A lower
    learned or pinned rate shrinks the burst in proportion (the restricted tier's 1 a minute allows 1); a higher one
    does not grow it — Slack's answers show the sustained rate, and a burst larger than Slack's would only be found
    by a 429 (measured in the slack_load bench: 2–3 429s a run when it grew with the rate)."""

    def __init__(
        self,
        buckets: RateBudgets,
        *,
        name: str,
        start_per_minute: float,
        burst: int,
        cap_per_minute: float = 1200.0,
        kv: KeyValue | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if start_per_minute <= 0 or burst < 1:
            raise ValueError("start_per_minute must be > 0 and burst >= 1")
        self.name = name  # the Slack method: buckets and memories of different methods never mix
        self.start_per_minute = start_per_minute
        self._start_burst = burst
        self._floor, self._cap = start_per_minute * FLOOR_SHARE, max(cap_per_minute, start_per_minute)
        self._buckets, self._kv = buckets, kv
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._scopes: dict[str, _Scope] = {}

    # ---- what callers see ---------------------------------------------------------------------------------

    def per_minute(self, scope: str) -> float:
        """The rate in force for ``scope`` as this process knows it (the documented start before anything)."""
        found = self._scopes.get(scope)
        return found.learned.per_minute if found else self.start_per_minute

    def burst(self, scope: str) -> int:
        return self._burst(self.per_minute(scope))

    def _burst(self, per_minute: float) -> int:
        return max(1, min(self._start_burst, int(self._start_burst * per_minute / self.start_per_minute)))

    async def take(self, scope: str, *, urgent: bool = False) -> None:
        state = self._scopes.setdefault(scope, _Scope(Learned(self.start_per_minute)))
        turn = state.line.enter(urgent=urgent)
        try:
            while True:
                await state.line.wait(turn)
                await self._refresh(scope, state)
                rate = state.learned.per_minute
                wait = await self._buckets.try_take(self._key(scope), per_minute=rate, burst=self._burst(rate))
                if wait <= 0:
                    return
                await self._sleep(wait)  # an urgent caller may take the head meanwhile: the loop looks again
        finally:
            state.line.leave(turn)

    async def pause(self, scope: str, seconds: float) -> None:
        """Slack said 429: nobody spends for ``seconds``, and the rate halves (it was too high)."""
        await self._buckets.pause(self._key(scope), seconds)
        state = self._scopes.setdefault(scope, _Scope(Learned(self.start_per_minute)))
        learned, now = state.learned, self._wall()
        if now < learned.pinned_until:
            return  # a pinned rate is a known fact; the pause alone honours this Retry-After
        refused = learned.per_minute
        learned.ceiling = refused if learned.ceiling <= 0 else min(learned.ceiling, refused)
        learned.ceiling_until = now + CEILING_TTL_S
        learned.per_minute = max(self._floor, refused * DECREASE)
        log.info("slack %s %s: 429 at %.0f/min; now %.0f/min", self.name, scope, refused, learned.per_minute)
        await self._write(scope, state, force=True)

    async def accepted(self, scope: str) -> None:
        """A call under ``scope`` went through: raise the rate a little (additive increase)."""
        state = self._scopes.get(scope)
        if state is None:
            return
        learned, now = state.learned, self._wall()
        if now < learned.pinned_until:
            return
        # One call is 1/per_minute of a minute's window: its share of the window's increase.
        step = self.start_per_minute / learned.per_minute
        if learned.ceiling > 0 and now < learned.ceiling_until:
            target = min(self._cap, learned.ceiling * CEILING_SHARE)
            raised = min(target, learned.per_minute + SETTLED_SHARE * step)
        else:
            learned.ceiling = 0.0
            raised = min(self._cap, learned.per_minute + PROBE_SHARE * step)
        if raised > learned.per_minute:
            learned.per_minute = raised
            await self._write(scope, state, force=False)

    async def pin(self, scope: str, *, per_minute: float, for_s: float) -> None:
        """A known fact sets the rate (the restricted history tier): no probing above it for ``for_s``."""
        state = self._scopes.setdefault(scope, _Scope(Learned(self.start_per_minute)))
        state.learned = Learned(per_minute=per_minute, pinned_until=self._wall() + for_s)
        # A call was just made at the old pace: the bucket restarts empty, so the next call waits a full interval.
        await self._buckets.pause(self._key(scope), 0.0)
        await self._write(scope, state, force=True)

    def pinned(self, scope: str) -> bool:
        found = self._scopes.get(scope)
        return found is not None and self._wall() < found.learned.pinned_until

    # ---- the store ----------------------------------------------------------------------------------------

    def _key(self, scope: str) -> str:
        return f"{scope}:{self.name}"

    def _memory_key(self, scope: str) -> str:
        return f"slack:learned:{scope}:{self.name}"

    async def _refresh(self, scope: str, state: _Scope) -> None:
        """Adopt what another replica learned (read at most every REFRESH_S)."""
        now = self._clock()
        if self._kv is None or now - state.loaded_at < REFRESH_S:
            return
        state.loaded_at = now
        if state.dirty:
            await self._write(scope, state, force=True)
            return
        try:
            raw = await self._kv.get(self._memory_key(scope))
        except StoreUnavailable:
            return
        if raw:
            try:
                state.learned = Learned(**json.loads(raw))
            except (TypeError, ValueError):
                log.warning("ignored an unreadable learned rate for %s %s", self.name, scope)

    async def _write(self, scope: str, state: _Scope, *, force: bool) -> None:
        now = self._clock()
        if self._kv is None or (not force and now - state.written_at < WRITE_EVERY_S):
            state.dirty = self._kv is not None
            return
        state.written_at, state.dirty = now, False
        try:
            await self._kv.put(self._memory_key(scope), json.dumps(asdict(state.learned)), ttl_s=LEARNED_TTL_S)
        except StoreUnavailable:
            state.dirty = True


class WorkspaceFacts:
    """Yes/no facts about a workspace, each with an expiry, shared through the store (or this process's memory)."""

    def __init__(self, kv: KeyValue | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._kv, self._clock = kv, clock
        self._local: dict[str, tuple[str, float]] = {}  # key → (value, expires) as this process last saw it

    async def get(self, key: str) -> str | None:
        cached = self._local.get(key)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        value = None
        if self._kv is not None:
            try:
                value = await self._kv.get(f"slack:fact:{key}")
            except StoreUnavailable:
                value = None
        # Read again in a while: another replica may learn it, or its expiry may pass.
        self._local[key] = (value or "", self._clock() + REFRESH_S)
        return value or None

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        # With a store, this process re-reads it soon (another replica may re-learn it); without, it is the record.
        self._local[key] = (value, self._clock() + (ttl_s if self._kv is None else min(ttl_s, REFRESH_S)))
        if self._kv is not None:
            try:
                await self._kv.put(f"slack:fact:{key}", value, ttl_s=ttl_s)
            except StoreUnavailable:
                log.warning("could not remember %s=%s in the store", key, value)
