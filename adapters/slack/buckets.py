"""Slack's rate budgets as token buckets the bot spends *before* calling, so it rarely meets a 429.

Slack limits are per method and per workspace (https://docs.slack.dev/apis/web-api/rate-limits, FACTS.md):
every live reply in a workspace draws ``chat.update`` from one Tier 3 budget, so the budget must be shared by all
of them — and, once the bot runs as several replicas, by all replicas. ``WorkspaceBudget`` is the seam for that:
``StoreBudget`` puts the bucket in the store (``Store.budgets``: a Lua token bucket on Redis, a row on SQLite), so N
replicas together spend one workspace's budget; ``InMemoryBudget`` is the same over ``MemoryBudgets`` (bot/stores/memory.py), the one
token bucket kept in this process's memory (adapters/slack/learned.py's budgets use it too when no store is given). The
documented tiers each budget starts from are named here; how live replies share them is adapters/slack/pacing.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.stores.base import RateBudgets
from bot.stores.memory import MemoryBudgets
from bot.types import ChannelRef

# chat.update is Tier 3: "50+ per minute" per workspace (https://docs.slack.dev/reference/methods/chat.update).
# The starting point only: the budget learns the workspace's real rate from Slack's answers (learned.py).
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
# chat.appendStream: Tier 4 on its reference page (100+ per minute, "generous burst behavior"); chat.startStream and
# chat.stopStream: Tier 2 (20+ per minute, "occasional bursts") — docs.slack.dev's method facts as slack-ruby/
# slack-api-ref records them ("rate_limits": "t4" / "t2" / "t2", unchanged from 2025-10 to 2026-08; FACTS.md calls
# the tiers unverified). Each method has a budget of its own (tiers are per method), learned like chat.update's and
# probed past where Slack takes more (streaming.py, pacing.py). Appends: a burst of 20 (12 s of the rate) keeps 20
# replies starting together from queueing their first appends, and 5 % under the tier: once the burst is spent,
# appends go at the rate, and at exactly Slack's rate the jitter between our clock and Slack's turned one of them into
# a 429 in ~40 % of the slack_load bench's workspace runs (2 429s of ~105 calls: over the 1 % the bot allows itself).
STREAM_CALLS_PER_MINUTE = 95.0
STREAM_CALLS_BURST = 20
# Starts and stops at Tier 2, as a share of the appends' rate (so a test that shortens the minute shortens both), with
# Tier 2's occasional burst: at the appends' budget, 20 replies starting together sent 20 chat.startStream calls at
# once, and where Slack holds them to Tier 2 the slack_load bench met a 429 storm (--fake-rate chat.startStream=20/3).
STREAM_START_STOP_SHARE = 0.2
STREAM_START_STOP_BURST = 3


def workspace_of(channel: ChannelRef) -> str:
    """The scope a workspace's budgets are kept under ("slack:T123"; the store's buckets are named after it)."""
    return f"{channel.platform}:{channel.workspace}"


def scopes_of(channel: ChannelRef) -> tuple[str, str]:
    """(workspace scope, channel scope), e.g. ("slack:T1", "slack:T1:C1"): a budget is per workspace or per channel."""
    return workspace_of(channel), channel.key


class WorkspaceBudget(Protocol):
    """A rate budget shared by everyone spending under the same ``scope`` (a workspace, a channel)."""

    async def take(self, scope: str, *, urgent: bool = False, probe: bool = False) -> bool:
        """Wait until one call is allowed under ``scope``, and spend it. An ``urgent`` caller (a reply's final
        edit) goes ahead of every caller that is not, in this process. With ``probe``, a learning budget may let
        the caller go past an empty bucket to find out whether Slack allows more, or send a call past the documented
        budget one at a time while a rate raised that way is unproven; True says the call is such a probe (report its
        outcome with ``probe=True``)."""
        ...

    async def take_now(self, scope: str) -> bool:
        """Spend one call under ``scope`` if one is allowed now and nobody waits ahead; False: none spent."""
        ...

    async def pause(self, scope: str, seconds: float, *, probe: bool = False) -> None:
        """Slack said 429: spend nothing under ``scope`` for ``seconds`` (its Retry-After)."""
        ...

    async def accepted(self, scope: str, *, probe: bool = False) -> None:
        """A call under ``scope`` went through (a learning budget raises its rate; a fixed one ignores it)."""
        ...

    def may_probe(self, scope: str) -> bool:
        """Whether a caller could go past an empty bucket under ``scope`` now (see take)."""
        ...

    def probing(self, scope: str) -> bool:
        """Whether Slack's room past the bucket under ``scope`` is still being found (a probe may be out)."""
        ...

    def per_minute(self, scope: str) -> float:
        """The rate in force under ``scope``."""
        ...

    def room_proven(self, scope: str) -> bool:
        """Whether accepted probes proved room past the documented rate under ``scope`` (no more probing needed)."""
        ...

    def proven_per_minute(self, scope: str) -> float:
        """The rate Slack's answers have borne out under ``scope``, for choices that cannot be undone (which path a
        reply takes): a learning budget's rate just raised on little evidence does not count yet."""
        ...

    def burst(self, scope: str) -> int:
        """How many calls may go at once under ``scope``."""
        ...


class WaitingLine:
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


class StoreBudget:
    """A WorkspaceBudget whose bucket lives in the store, shared by every replica (``RateBudgets``).

    Within one process callers still wait in a ``WaitingLine`` and only the head asks the store, so a thousand waiting
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
        self._lines: dict[str, WaitingLine] = {}  # only scopes with callers waiting: an empty line is dropped

    def _scope(self, scope: str) -> str:
        return f"{scope}:{self._name}"

    async def take(self, scope: str, *, urgent: bool = False, probe: bool = False) -> bool:
        line = self._lines.setdefault(scope, WaitingLine())
        turn = line.enter(urgent=urgent)
        try:
            while True:
                await line.wait(turn)
                wait = await self._budgets.try_take(
                    self._scope(scope), per_minute=self.rate_per_minute, burst=self.burst_calls
                )
                if wait <= 0:
                    return False
                await self._sleep(wait)  # an urgent caller may take the head meanwhile: the loop looks again
        finally:
            line.leave(turn)
            if not line:
                self._lines.pop(scope, None)

    async def take_now(self, scope: str) -> bool:
        if scope in self._lines:
            return False
        return await self._budgets.try_take(self._scope(scope), per_minute=self.rate_per_minute,
                                            burst=self.burst_calls) <= 0  # fmt: skip

    async def pause(self, scope: str, seconds: float, *, probe: bool = False) -> None:
        await self._budgets.pause(self._scope(scope), seconds)

    async def accepted(self, scope: str, *, probe: bool = False) -> None:
        return None  # a fixed budget: nothing to learn

    def may_probe(self, scope: str) -> bool:
        return False  # a fixed budget never goes past its bucket

    def probing(self, scope: str) -> bool:
        return False

    def per_minute(self, scope: str) -> float:
        return self.rate_per_minute

    def room_proven(self, scope: str) -> bool:
        return False

    def proven_per_minute(self, scope: str) -> float:
        return self.rate_per_minute

    def burst(self, scope: str) -> int:
        return self.burst_calls


class InMemoryBudget(StoreBudget):
    """A fixed budget for one process: the same line and bucket as StoreBudget, in this process's memory."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(MemoryBudgets(clock=clock), name="local", per_minute=per_minute, burst=burst, sleep=sleep)


@dataclass(frozen=True)
class StreamBudgets:
    """One budget per streaming method: Slack's tiers are per method, so a start never waits behind appends."""

    start: WorkspaceBudget
    append: WorkspaceBudget
    stop: WorkspaceBudget

