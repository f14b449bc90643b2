"""What the bot learns about each Slack workspace from Slack's own answers, remembered in the store for every replica.

Slack documents tiers ("Tier 3: 50+ per minute, sporadic bursts welcome") but not a workspace's real allowance,
its burst, whether ``chat.update`` is limited per workspace or per channel (FACTS.md: unverified), whether this
app gets the restricted history tier, or whether native streaming is on. So the bot starts from the documented
figure and learns:

- ``LearnedBudget``: a token bucket whose rate follows Slack's answers — additive increase while calls are
  accepted, multiplicative decrease (and a pause for the ``Retry-After``) on a 429 — with the learned rate kept in
  the store's key-value table, so every replica spends at the rate one of them learned. A rate can also be pinned
  for a while (the restricted history tier: 1 call a minute). Where a narrower budget also holds each call (a
  channel's, under the workspace's chat.update budget), a caller may *probe* past the empty bucket — one probe at a
  time: accepted probes beyond what Slack's burst could explain raise the rate quickly, one refused probe marks
  where the room ends (no cut: the calls within the budget were fine). So a workspace whose chat.update limit is
  per channel is found within seconds, for one 429 at most where it is not; a rate the probes raised stands trial
  (PROBE_TRIAL_S), as a larger burst than ours can pass for room at first. Stream starts and stops probe the same
  way past their documented Tier 2 (streaming.py, pacing.py).

How the learned rates are kept in the store is adapters/slack/remembered.py; what the bot learns as yes or no
(native streaming refused here) is adapters/slack/facts.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import cachetools

from adapters.slack.buckets import WaitingLine
from adapters.slack.remembered import Held, Learned, LearnedMemory
from bot.stores.base import KeyValue, Locks, RateBudgets
from bot.stores.memory import SCOPES_REMEMBERED, MemoryBudgets

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
# Probing past the bucket (where a narrower budget holds each call): each accepted probe is a call Slack took beyond
# our bucket. From this many accepted probes on — more than a burst larger than ours could explain — each further one
# multiplies the rate by PROBE_RAISE: TCP's slow start, as the room is unknown by a factor of the channels in use
# (5 channels: 3 raises). Under load the room must be found within the first seconds of the replies, or they are half
# written before it helps (slack_load bench: from 5 probes and x1.5 the rate reached 5 channels' worth 4.6 s after the
# replies started).
PROBE_EVIDENCE = 3
PROBE_RAISE = 2.0
# A refused probe says where a workspace's room ends (the limit is not per channel there): no probing for this long,
# for every replica, so a busy workspace meets that 429 a few times a day rather than at every busy moment.
PROBE_REFUSED_TTL_S = 6 * 3600.0
# A rate raised by accepted probes stands trial this long: a 429 before it is proven (PROBE_PROVEN_BURSTS) means a
# burst larger than ours took them, not room per channel (where the limit is per channel, the channels' budgets keep
# each one within it: no 429). The rate goes back to where the probes started, no probing for PROBE_REFUSED_TTL_S.
# (A fake with a workspace-wide burst of 10: the probes raised the rate 8x, then 5-6 429s and staleness p95 12 s.)
# A minute: a minute's burst at 2x.
PROBE_TRIAL_S = 60.0
# Choices that cannot be undone (a stream moving to chat.update) trust a rate on trial only once Slack took more calls
# beyond the documented budget (start rate and burst) than this many of our bursts: more than a Slack burst 2.5x ours
# explains. On 3 accepted probes, that burst of 10 moved 8 of 20 streams to chat.update, whose finals then came 11 s
# late; waiting 2 s instead cost the per-channel regime its quick moves (p95 1.97 → 2.59 s); this costs it ~0.04 s.
PROBE_PROVEN_BURSTS = 1.5
# A probe whose answer never came stops blocking the next one after this long: a call failed otherwise, or the turn
# was granted and not used (its reply finished while it waited). An answer takes a fraction of a second; at 5 s a
# turn left unused this way held up discovery for seconds under load (slack_load bench).
PROBE_TIMEOUT_S = 1.0
# A caller that may probe, waiting while another probe is out, looks again this often.
PROBE_RECHECK_S = 0.05


@dataclass
class _Scope(Held):
    line: WaitingLine = field(default_factory=WaitingLine)
    probe_until: float = float("-inf")  # a probe is out until its answer (or this clock() time)
    probe_lock: str | None = None  # the store lock our probe out holds, so replicas probe one at a time
    probes_accepted: int = 0
    probe_accepted_at: float = float("-inf")  # clock() of the last accepted probe
    documented: tuple[float, float] | None = None  # a bucket at the start rate and burst: (tokens, when) ...
    excess: int = 0  # ... and the accepted calls that found it empty (_count_excess)
    window_calls: int = 0  # calls accepted since the rate last rose
    paused_until: float = float("-inf")  # clock() when the last 429's Retry-After ends
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set when the probe out is answered


__all__ = ["LearnedBudget", "MemoryBudgets"]


class LearnedBudget:
    """A WorkspaceBudget (buckets.py) for one Slack method whose rate is learned per scope (a workspace).

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
        locks: Locks | None = None,
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
        self._buckets, self._locks = buckets, locks
        self._memory = LearnedMemory(kv, name=name, clock=clock)
        self._clock, self._wall, self._sleep = clock, wall, sleep
        # Least recently used scopes are forgotten past SCOPES_REMEMBERED (re-read from the store when used again).
        self._scopes: cachetools.LRUCache[str, _Scope] = cachetools.LRUCache(SCOPES_REMEMBERED)

    # ---- what callers see ---------------------------------------------------------------------------------

    def per_minute(self, scope: str) -> float:
        """The rate in force for ``scope`` as this process knows it (the documented start before anything)."""
        found = self._scopes.get(scope)
        return found.learned.per_minute if found else self.start_per_minute

    def proven_per_minute(self, scope: str) -> float:
        found = self._scopes.get(scope)
        if found is None:
            return self.start_per_minute
        return found.learned.trial_from if self._unproven(found) else found.learned.per_minute

    def room_proven(self, scope: str) -> bool:
        """Accepted probes raised the rate, and it stands: proven by more calls than a larger burst explains, or by
        its trial passing with no 429."""
        found = self._scopes.get(scope)
        return found is not None and found.learned.trial_from > 0 and not self._unproven(found)

    def _unproven(self, state: _Scope) -> bool:
        """The rate in force was raised by probes and is on trial, with too little excess to trust it yet."""
        return self._wall() < state.learned.trial_until and state.excess <= PROBE_PROVEN_BURSTS * self._start_burst

    def burst(self, scope: str) -> int:
        return self._burst(self.per_minute(scope))

    def _burst(self, per_minute: float) -> int:
        return max(1, min(self._start_burst, int(self._start_burst * per_minute / self.start_per_minute)))

    def _state(self, scope: str) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope(Learned(self.start_per_minute))
        return state

    async def take(self, scope: str, *, urgent: bool = False, probe: bool = False) -> bool:
        state = self._state(scope)
        turn = state.line.enter(urgent=urgent)
        try:
            while True:
                await state.line.wait(turn)
                # A rate the probes raised is on trial: until it is proven, a call past the documented budget goes one
                # at a time like a probe, so a Slack burst that took the probes meets one refused call, not several
                # in flight together (slack_load bench, a workspace-wide burst of 10: 2 429s in half the runs).
                unproven = probe and self._unproven(state) and self._past_documented(state)
                if unproven and self._clock() < state.probe_until:
                    await self._probe_out(state, PROBE_RECHECK_S)
                    continue
                if (wait := await self._try_take(scope, state)) <= 0:
                    return unproven and await self._claim_probe(scope, state)
                if probe and self.may_probe(scope) and await self._claim_probe(scope, state):
                    return True
                if probe and self._clock() < state.probe_until:
                    await self._probe_out(state, wait)
                    continue
                await self._sleep(wait)  # an urgent caller may take the head meanwhile: the loop looks again
        finally:
            state.line.leave(turn)

    async def _probe_out(self, state: _Scope, wait: float) -> None:
        """Wait while another caller's probe is out: until it is answered (the next probe goes at once: 17 stream
        starts probing one by one must all go within a fraction of a second), a token refills, or a recheck."""
        answered = asyncio.ensure_future(state.answered.wait())
        sleeping = asyncio.ensure_future(self._sleep(min(wait, PROBE_RECHECK_S)))
        try:
            await asyncio.wait((answered, sleeping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
            sleeping.cancel()

    async def take_now(self, scope: str) -> bool:
        state = self._state(scope)
        return not state.line and await self._try_take(scope, state) <= 0

    async def _try_take(self, scope: str, state: _Scope) -> float:
        """One call from the bucket at the rate in force (another replica's, if newer): 0, or the seconds to wait."""
        await self._memory.refresh(scope, state)
        rate = state.learned.per_minute
        return await self._buckets.try_take(self._key(scope), per_minute=rate, burst=self._burst(rate))

    def may_probe(self, scope: str) -> bool:
        """No probe out, no refusal known (a 429 settles the question for CEILING_TTL_S), no pinned rate."""
        state = self._state(scope)
        return self._clock() >= state.probe_until and self._room_unknown(state.learned)

    def probing(self, scope: str) -> bool:
        return self._room_unknown(self._state(scope).learned)

    def _room_unknown(self, learned: Learned) -> bool:
        wall = self._wall()
        return wall >= learned.pinned_until and not (learned.ceiling > 0 and wall < learned.ceiling_until)

    async def _claim_probe(self, scope: str, state: _Scope) -> bool:
        """Send the probe out, if no other replica's is: with ``locks`` the replicas probe one at a time (each would
        otherwise pay a refused probe of its own, and take Slack's calls from the others' budgeted ones), and each
        reads what the last probe found before sending its own."""
        state.probe_until = self._clock() + PROBE_TIMEOUT_S  # out from now: this process's callers wait for it
        if state.probes_accepted == 0:
            state.excess = 0  # the evidence is this round of probing's, not calls Slack took hours ago
        if self._locks is None:
            return True
        token = await self._locks.acquire(self._probe_key(scope), ttl_s=PROBE_TIMEOUT_S)
        if token is not None:
            await self._adopt_refusal(scope, state)  # one another replica just met settles it here too
            if self._room_unknown(state.learned):
                state.probe_lock = token
                return True
            await self._locks.release(self._probe_key(scope), token)
        state.probe_until = self._clock() + PROBE_RECHECK_S  # another replica's probe is out: look again soon
        return False

    async def _adopt_refusal(self, scope: str, state: _Scope) -> None:
        """Take the stored ceiling when it is newer than ours (the rest of what we learned stands: it may not be
        written yet)."""
        stored = await self._memory.stored(scope)
        if stored is not None and stored.ceiling_until > state.learned.ceiling_until:
            state.learned.ceiling, state.learned.ceiling_until = stored.ceiling, stored.ceiling_until

    async def _probe_answered(self, scope: str, state: _Scope) -> None:
        state.probe_until = float("-inf")
        state.answered.set()
        state.answered = asyncio.Event()
        token, state.probe_lock = state.probe_lock, None
        if token is not None and self._locks is not None:
            await self._locks.release(self._probe_key(scope), token)

    async def pause(self, scope: str, seconds: float, *, probe: bool = False) -> None:
        """Slack said 429: nobody spends for ``seconds``, and the rate falls (it was too high) — unless it answers
        the probes: then the rate they started from stands and becomes the ceiling (the room past it is not there)."""
        await self._buckets.pause(self._key(scope), seconds)
        state = self._state(scope)
        learned, now = state.learned, self._wall()
        # A 429 within an earlier one's Retry-After answers a call sent before that one was heard: the same moment of
        # congestion, cut once (as TCP cuts once per window). Three replies starting together met three 429s and
        # cut chat.startStream's rate to a third.
        clock = self._clock()
        same_event = clock < state.paused_until
        state.paused_until = max(state.paused_until, clock + seconds)
        if now < learned.pinned_until:
            return  # a pinned rate is a known fact; the pause alone honours this Retry-After
        # A rate on trial that more calls than a larger burst explains have proven is the room Slack gives: a 429 then
        # is the usual congestion (where the limit is per channel, a channel's own rate under our channel budget's —
        # 40/min: taking the rate back to where the probes started left a dozen moved replies on the workspace's
        # 50/min, staleness p95 10–10.5 s in half the slack_load runs), cut like any other, its channel's budget too.
        on_trial = now < learned.trial_until and self._unproven(state)
        if probe or on_trial or (
            state.probes_accepted < PROBE_EVIDENCE and clock - state.probe_accepted_at < PROBE_TIMEOUT_S
        ):
            # A refused probe; or, before the probes proved room, a call within the budget refused just after one
            # was accepted: that probe took the last of Slack's room; or a 429 while the rate accepted probes raised
            # is on trial: they took calls a larger burst allowed. Either way there is no room past the budget.
            await self._probe_answered(scope, state)
            state.probes_accepted = 0
            if on_trial:
                learned.per_minute, learned.trial_from, learned.trial_until = learned.trial_from, 0.0, 0.0
            learned.ceiling, learned.ceiling_until = learned.per_minute, now + PROBE_REFUSED_TTL_S
            log.info("slack %s %s: no room past the budget (a probe refused, or a 429 soon after probes); %.0f/min "
                     "for %.0f h", self.name, scope, learned.per_minute, PROBE_REFUSED_TTL_S / 3600)  # fmt: skip
            await self._memory.write(scope, state, force=True)
            return
        if same_event:
            return
        refused = learned.per_minute
        learned.ceiling = refused if learned.ceiling <= 0 else min(learned.ceiling, refused)
        learned.ceiling_until = now + CEILING_TTL_S
        learned.per_minute = max(self._floor, refused * DECREASE)
        log.info("slack %s %s: 429 at %.0f/min; now %.0f/min", self.name, scope, refused, learned.per_minute)
        await self._memory.write(scope, state, force=True)

    async def accepted(self, scope: str, *, probe: bool = False) -> None:
        """A call under ``scope`` went through: raise the rate a little (additive increase), or — a probe past
        more calls than any burst explains — a lot."""
        state = self._scopes.get(scope)
        if state is None:
            return
        learned, now = state.learned, self._wall()
        if now < learned.pinned_until:
            return
        self._count_excess(state)
        if probe:
            await self._probe_answered(scope, state)
            state.probes_accepted += 1
            state.probe_accepted_at = self._clock()
            # Not owed back to our bucket: where the limit is the workspace's, each accepted probe uses up a call
            # Slack had beyond our bucket (a larger burst), so a few probes on one is refused. Owed, that gap stayed
            # open and every probe was accepted: 7 in a row raised the rate to 4/3 of a workspace-wide limit
            # (test_replicas: a 429 per replica).
            if state.probes_accepted >= PROBE_EVIDENCE:
                if now >= learned.trial_until:
                    learned.trial_from = learned.per_minute
                learned.trial_until = now + PROBE_TRIAL_S
                learned.per_minute = min(self._cap, learned.per_minute * PROBE_RAISE)
                log.info("slack %s %s: %d probes past the budget accepted; now %.0f/min", self.name, scope,
                         state.probes_accepted, learned.per_minute)  # fmt: skip
                await self._memory.write(scope, state, force=False)
            return
        # Additive increase once per window: a minute's worth of calls at the current rate accepted. (Raising a
        # share of a step with every call probed past the fake's Tier 4 within ten seconds of a burst: a 429 a run.)
        state.window_calls += 1
        if state.window_calls < learned.per_minute:
            return
        state.window_calls = 0
        if learned.ceiling > 0 and now < learned.ceiling_until:
            target = min(self._cap, learned.ceiling * CEILING_SHARE)
            raised = min(target, learned.per_minute + SETTLED_SHARE * self.start_per_minute)
        else:
            learned.ceiling = 0.0
            raised = min(self._cap, learned.per_minute + PROBE_SHARE * self.start_per_minute)
        if raised > learned.per_minute:
            learned.per_minute = raised
            await self._memory.write(scope, state, force=False)

    def _count_excess(self, state: _Scope) -> None:
        """An accepted call draws from a bucket at the documented rate and burst; one that finds it empty is a call
        Slack took beyond the documented budget."""
        tokens = self._documented_tokens(state)
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            state.excess += 1
        state.documented = (tokens, self._clock())

    def _documented_tokens(self, state: _Scope) -> float:
        now, burst = self._clock(), float(self._start_burst)
        tokens, at = state.documented or (burst, now)
        return min(burst, tokens + (now - at) * self.start_per_minute / 60.0)

    def _past_documented(self, state: _Scope) -> bool:
        """Whether a call now would find the documented bucket empty (_count_excess)."""
        return self._documented_tokens(state) < 1.0

    async def pin(self, scope: str, *, per_minute: float, for_s: float) -> None:
        """A known fact sets the rate (the restricted history tier): no probing above it for ``for_s``."""
        state = self._state(scope)
        state.learned = Learned(per_minute=per_minute, pinned_until=self._wall() + for_s)
        # A call was just made at the old pace: the bucket restarts empty, so the next call waits a full interval.
        await self._buckets.pause(self._key(scope), 0.0)
        await self._memory.write(scope, state, force=True)

    def pinned(self, scope: str) -> bool:
        found = self._scopes.get(scope)
        return found is not None and self._wall() < found.learned.pinned_until

    # ---- the store ----------------------------------------------------------------------------------------

    def _key(self, scope: str) -> str:
        return f"{scope}:{self.name}"

    def _probe_key(self, scope: str) -> str:
        return f"slack:probe:{scope}:{self.name}"
