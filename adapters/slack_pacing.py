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
# The starting point only: the budget learns the workspace's real rate from Slack's answers (slack_learned).
CHAT_UPDATE_PER_MINUTE = 50.0
# The burst at that rate: Slack allows "sporadic bursts" without a number (FACTS.md); a few calls keep a reply's
# first edits quick without relying on a large undocumented allowance. Only the sustained rate is learned.
CHAT_UPDATE_BURST = 4
# conversations.replies: Tier 3, "typically attached to methods with paginating collections ... sporadic bursts
# are welcome" (https://docs.slack.dev/apis/web-api/rate-limits). A minute's allowance may go at once: the bot
# slows down on Slack's answer (429, or the restricted tier's 15-message pages), not before.
HISTORY_PER_MINUTE = 50.0
HISTORY_BURST = 50
# chat.postMessage: about one message per second per channel, short bursts allowed (FACTS.md). 10 % under it, so
# network jitter between our clock and Slack's does not turn the last call of a burst into a 429.
POST_PER_CHANNEL_PER_MINUTE = 54.0
POST_PER_CHANNEL_BURST = 3
# chat.startStream / appendStream / stopStream: FACTS.md calls their tier unverified; slack-ruby/slack-api-ref
# lists chat.appendStream as Tier 4 (100+ per minute, "generous burst behavior"). Each method has a budget of its
# own (tiers are per method), learned like chat.update's; a burst of 20 (12 s of the rate) keeps 20 replies
# starting together from queueing their first appends.
STREAM_CALLS_PER_MINUTE = 100.0
STREAM_CALLS_BURST = 20
# Progress edits of the replies sharing a budget are spaced by each one's share of what the budget allows over this
# horizon (its burst plus the rate for this long; a reply streams for ~8 s at 50 tokens/s). Without it the burst goes
# on every reply's first progress edit, a moment after its first text, and then each reply waits for the rate alone:
# 15 streams at 100 appends/min is one append per reply every 9 s. Spaced, the same calls are ~3 s apart.
SHARE_HORIZON_S = 10.0
# While a reply waits out its spacing it looks again this often (replies finishing shorten everyone's share).
SHARE_RECHECK_S = 0.25


class WorkspaceBudget(Protocol):
    """A rate budget shared by everyone spending under the same ``scope`` (a workspace, a channel)."""

    async def take(self, scope: str, *, urgent: bool = False) -> None:
        """Wait until one call is allowed under ``scope``, and spend it. An ``urgent`` caller (a reply's final
        edit) goes ahead of every caller that is not, in this process."""
        ...

    async def pause(self, scope: str, seconds: float) -> None:
        """Slack said 429: spend nothing under ``scope`` for ``seconds`` (its Retry-After)."""
        ...

    async def accepted(self, scope: str) -> None:
        """A call under ``scope`` went through (a learning budget raises its rate; a fixed one ignores it)."""
        ...

    def per_minute(self, scope: str) -> float:
        """The rate in force under ``scope``."""
        ...

    def burst(self, scope: str) -> int:
        """How many calls may go at once under ``scope``."""
        ...


class _Line:
    """Callers waiting for one scope: urgent ones first, each kind first come first served. Only the head of the
    line asks for a token, so a caller that gives up (a live reply whose text is complete stops waiting) leaves
    without leaving a hole or letting two callers share one token.

    Why finals go first: when the budget is congested a progress edit only shows text that the reply's next
    version will show anyway (LiveReply drops stale versions), while a final edit is the one that must land. A
    progress caller passed over this way waits; by its turn its reply has newer text, or has finished and stopped
    waiting, so congestion skips progress edits instead of delaying finals behind them."""

    def __init__(self) -> None:
        self.urgent: deque[asyncio.Event] = deque()
        self.normal: deque[asyncio.Event] = deque()

    def head(self) -> asyncio.Event | None:
        return self.urgent[0] if self.urgent else self.normal[0] if self.normal else None

    def __bool__(self) -> bool:
        return bool(self.urgent or self.normal)

    def enter(self, *, urgent: bool) -> asyncio.Event:
        turn = asyncio.Event()
        (self.urgent if urgent else self.normal).append(turn)
        if self.head() is turn:
            turn.set()  # a progress head already asking keeps its event set; it yields when it looks again
        return turn

    async def wait(self, turn: asyncio.Event) -> None:
        """Until ``turn`` heads the line (an urgent caller that came in meanwhile is let ahead)."""
        while True:
            await turn.wait()
            if self.head() is turn:
                return
            turn.clear()

    def leave(self, turn: asyncio.Event) -> None:
        """Done, or gave up (cancelled) while queued: either way the line closes up behind us."""
        for waiting in (self.urgent, self.normal):
            if turn in waiting:
                waiting.remove(turn)
        if (head := self.head()) is not None:
            head.set()


@dataclass
class _Bucket:
    tokens: float
    updated: float
    paused_until: float = float("-inf")
    line: _Line = field(default_factory=_Line)


class InMemoryBudget:
    """Token buckets per scope for one process, callers waiting in a ``_Line``."""

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
        self.burst_calls = burst
        self._clock, self._sleep = clock, sleep
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, scope: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = self._buckets[scope] = _Bucket(tokens=float(self.burst_calls), updated=now)
        if now > bucket.updated:  # after a pause, `updated` lies in the future: nothing refills until then
            bucket.tokens = min(float(self.burst_calls), bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        return bucket

    async def take(self, scope: str, *, urgent: bool = False) -> None:
        line = self._bucket(scope).line
        turn = line.enter(urgent=urgent)
        try:
            while True:
                await line.wait(turn)
                bucket = self._bucket(scope)
                short = (1.0 - bucket.tokens) / self.per_second if bucket.tokens < 1.0 else 0.0
                wait = max(bucket.paused_until - self._clock(), short, 0.0)
                if wait <= 0:
                    bucket.tokens -= 1.0
                    return
                # A 429 meanwhile moves paused_until, an urgent caller may take the head: the loop looks again.
                await self._sleep(wait)
        finally:
            line.leave(turn)

    async def pause(self, scope: str, seconds: float) -> None:
        bucket = self._bucket(scope)
        bucket.paused_until = max(bucket.paused_until, self._clock() + seconds)
        # Whatever Slack counted that we did not: start from empty after the pause, not from a burst.
        bucket.tokens = min(bucket.tokens, 0.0)
        bucket.updated = max(bucket.updated, bucket.paused_until)

    async def accepted(self, scope: str) -> None:
        return None  # a fixed budget: nothing to learn

    def per_minute(self, scope: str) -> float:
        return self.per_second * 60.0

    def burst(self, scope: str) -> int:
        return self.burst_calls


class StoreBudget:
    """A WorkspaceBudget whose bucket lives in the store, shared by every replica (``RateBudgets``).

    Within one process callers still wait in a ``_Line`` and only the head asks the store, so a thousand waiting
    replies cost one store call per token, not a thousand polls. Across replicas the heads compete for the shared
    bucket; a 429 anywhere pauses the scope for everyone."""

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
        self.rate_per_minute, self.burst_calls = per_minute, burst
        self._sleep = sleep
        self._lines: dict[str, _Line] = {}

    def _scope(self, scope: str) -> str:
        return f"{scope}:{self._name}"

    async def take(self, scope: str, *, urgent: bool = False) -> None:
        line = self._lines.setdefault(scope, _Line())
        turn = line.enter(urgent=urgent)
        try:
            while True:
                await line.wait(turn)
                wait = await self._budgets.try_take(
                    self._scope(scope), per_minute=self.rate_per_minute, burst=self.burst_calls
                )
                if wait <= 0:
                    return
                await self._sleep(wait)  # an urgent caller may take the head meanwhile: the loop looks again
        finally:
            line.leave(turn)
            if not line:
                self._lines.pop(scope, None)

    async def pause(self, scope: str, seconds: float) -> None:
        await self._budgets.pause(self._scope(scope), seconds)

    async def accepted(self, scope: str) -> None:
        return None  # a fixed budget: nothing to learn

    def per_minute(self, scope: str) -> float:
        return self.rate_per_minute

    def burst(self, scope: str) -> int:
        return self.burst_calls


def workspace_of(key: str) -> str:
    """LiveReply's pacing key is "{platform}:{workspace}:{channel}/{message_id}"; the budget is per workspace."""
    head = key.split("/", 1)[0]
    parts = head.split(":")
    return ":".join(parts[:2]) if len(parts) >= 3 else head


@dataclass(frozen=True)
class StreamBudgets:
    """One budget per streaming method: Slack's tiers are per method, so a start never waits behind appends."""

    start: WorkspaceBudget
    append: WorkspaceBudget
    stop: WorkspaceBudget

    @classmethod
    def in_memory(
        cls, *, per_minute: float = STREAM_CALLS_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> StreamBudgets:
        start, append, stop = (InMemoryBudget(per_minute=per_minute, burst=STREAM_CALLS_BURST, clock=clock)
                               for _ in range(3))  # fmt: skip
        return cls(start, append, stop)


class WorkspaceEditPacer:
    """bot.live_reply.EditPacer for Slack: every edit of every live reply in a workspace draws from one budget.

    With ``streams``, an edit of a message that is a native stream (``is_stream(key)``) draws from the stream
    methods' budgets instead: a final edit is chat.stopStream (it carries the last text), any other
    chat.appendStream. With ``first_edit``, a message's first edit (its first text, replacing the placeholder) goes
    ahead of progress edits like a final does: a congested budget delays what is already on screen, not the first
    words a person is waiting for."""

    def __init__(
        self,
        budget: WorkspaceBudget,
        *,
        streams: StreamBudgets | None = None,
        is_stream: Callable[[str], bool] | None = None,
        first_edit: Callable[[str], bool] | None = None,
        refused: Callable[[str], str | None] | None = None,
        sharing: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self._streams = streams
        self._is_stream = is_stream
        self._first_edit = first_edit
        self._refused = refused  # which Slack method got the 429 for a key, when the platform knows
        # How many live replies (this one included) draw from the same budget as a key: their progress edits are
        # spaced by their share of it (SHARE_HORIZON_S). None: no spacing, the budget's line alone.
        self._sharing = sharing
        self._clock, self._sleep = clock, sleep
        self._last: dict[str, float] = {}  # key → when its last turn was granted (forgotten on its final)

    def _streamed(self, key: str) -> StreamBudgets | None:
        if self._streams is not None and self._is_stream is not None and self._is_stream(key):
            return self._streams
        return None

    async def wait_turn(self, key: str, *, final: bool = False) -> None:
        streams = self._streamed(key)
        budget = self.budget if streams is None else streams.stop if final else streams.append
        urgent = final or (self._first_edit is not None and self._first_edit(key))
        if not urgent and self._sharing is not None:
            await self._space(key, budget, final_elsewhere=streams is not None)
        await budget.take(workspace_of(key), urgent=urgent)
        if final:
            self._last.pop(key, None)
        elif self._sharing is not None:
            if len(self._last) > 1000:  # keys whose final never came (a crash): forget the oldest half
                for old in sorted(self._last, key=self._last.__getitem__)[:500]:
                    del self._last[old]
            self._last[key] = self._clock()

    def share_interval(self, key: str, budget: WorkspaceBudget, *, final_elsewhere: bool = False) -> float:
        """Seconds between one reply's progress edits when every reply on ``budget`` takes its equal share.

        A reply's calls on ``budget`` over the horizon cut its text into as many gaps — plus one when its final
        text goes through another budget (a stream's chat.stopStream): then every call here is progress."""
        replies = self._sharing(key) if self._sharing is not None else 1
        if replies <= 1:
            return 0.0  # a lone reply takes nobody's share: the platform's floor and the budget pace it
        scope = workspace_of(key)
        calls = budget.burst(scope) + budget.per_minute(scope) * SHARE_HORIZON_S / 60.0
        gaps = calls / replies + (1.0 if final_elsewhere else 0.0)
        return SHARE_HORIZON_S / max(gaps, 1.0)

    async def _space(self, key: str, budget: WorkspaceBudget, *, final_elsewhere: bool) -> None:
        """Wait until ``key``'s share of the budget is due, counted from its last turn (or from now, the first
        time: its message was just posted with text). Meanwhile the budget serves the other replies."""
        last = self._last.setdefault(key, self._clock())
        while (wait := last + self.share_interval(key, budget, final_elsewhere=final_elsewhere) - self._clock()) > 0:
            await self._sleep(min(wait, SHARE_RECHECK_S))

    async def penalize(self, key: str, retry_after_s: float) -> None:
        streams = self._streamed(key)
        method = self._refused(key) if self._refused is not None else None
        by_method = {} if self._streams is None else {
            "chat.appendStream": self._streams.append, "chat.stopStream": self._streams.stop}  # fmt: skip
        if method in by_method:
            budgets: tuple[WorkspaceBudget, ...] = (by_method[method],)
        elif method == "chat.update" or streams is None:
            budgets = (self.budget,)
        else:  # which stream method was refused is not known: both pause, as Slack's Retry-After asks
            budgets = (streams.append, streams.stop)
        for budget in budgets:
            await budget.pause(workspace_of(key), retry_after_s)
