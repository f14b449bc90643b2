"""The shared store, wrapped so that a dead Redis slows the bot down instead of stopping it.

open_store() puts every Redis store inside a ResilientStore; SQLite is local and is never wrapped (its errors are
real bugs or a full disk, and must surface). While Redis does not answer (connection refused, reset or timed out)
each part falls back to something explicit, and everything returns to Redis by itself once Redis answers again:

claims       answer True (and remember the key in this process). Saying False would drop every mention and every
             message for the whole outage; saying True risks one duplicate reply, and only when a re-delivery of
             the same event lands on another replica during the outage (re-deliveries to this replica are caught
             by the local memory, which also covers keys claimed before a restart that lost Redis's data).
messages,    writes (add, edit, delete; inquiries too; live.done) wait in a small bounded backlog and are replayed
inquiries    in order on the next call that reaches Redis. Dropping them would cost more later: Slack's history
             API pages 15 messages a minute for most apps, so every message the log misses is slow to fetch again,
             and a deletion the store missed would keep text a person removed. Past the bound the oldest writes
             are dropped and counted (``dropped_writes``). Reads (thread, recent, list) raise StoreUnavailable:
             the summarizer then asks the platform for the thread instead. forget/purge/count raise it too: an
             admin erasing data must learn that nothing was erased.
ledger       add is RedisLedger's own (it buffers records in memory and writes them on recovery). daily() answers
             from the last result Redis gave for the same query (a budget check keeps refusing a channel that was
             over budget), or with no rows when there is none (the budget fails open, logged). records() raises
             StoreUnavailable: a spend report made of guesses would be wrong.
kv           get → None (a cache miss), put/delete → skipped, incr → a counter in this process (the per-user
             hourly limit keeps counting, per replica).
locks        a lock in this process; a token it issued is released locally.
budgets      a token bucket in this process with the same arithmetic as the Redis script (per replica).
live         heartbeat and done → the write backlog, the latest per reply only (replayed first thing on recovery,
             so no janitor mistakes a reply written or finished during the outage for an orphan); stale → []
             (nobody finalises orphans meanwhile).

After a failure, calls skip Redis for ``probe_after_s`` and then one call at a time probes it: an outage costs one
failed connection per interval, not one per call, and a hung Redis holds up one caller, not all of them. Every
outage is logged once when it starts and once when it ends.

guard.py holds that mechanism (probing, the write backlog, the bounded local maps); keys.py, logs.py, ledger.py and
live.py hold each part's fallback as the table above says, and this module assembles them around one inner store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.stores.base import (
    EventClaims,
    InquiryLog,
    KeyValue,
    Ledger,
    LiveReplies,
    Locks,
    MessageLog,
    RateBudgets,
    Store,
    StoreUnavailable,
)
from bot.stores.resilient.guard import (
    BACKLOG_MAX_CHARS,
    BACKLOG_MAX_WRITES,
    PROBE_AFTER_S,
    Guard,
    Unreachable,
)
from bot.stores.resilient.keys import ResilientClaims, ResilientKeyValue, ResilientLocks
from bot.stores.resilient.ledger import ResilientLedger
from bot.stores.resilient.live import ResilientBudgets, ResilientLiveReplies
from bot.stores.resilient.logs import ResilientInquiries, ResilientMessages

__all__ = ["Guard", "ResilientStore", "StoreUnavailable"]


class ResilientStore:
    """``ResilientStore(redis_store, unreachable=redis.UNREACHABLE)``: the Store protocol, surviving outages."""

    def __init__(self, inner: Store, *, unreachable: Unreachable, probe_after_s: float = PROBE_AFTER_S,
                 clock: Callable[[], float] = time.monotonic, backlog_max_writes: int = BACKLOG_MAX_WRITES,
                 backlog_max_chars: int = BACKLOG_MAX_CHARS) -> None:  # fmt: skip
        self.inner = inner
        self.guard = Guard(unreachable=unreachable, probe_after_s=probe_after_s, clock=clock,
                           backlog_max_writes=backlog_max_writes, backlog_max_chars=backlog_max_chars)  # fmt: skip
        self.claims: EventClaims = ResilientClaims(inner.claims, self.guard, clock=clock)
        self.messages: MessageLog = ResilientMessages(inner.messages, self.guard)
        self.inquiries: InquiryLog = ResilientInquiries(inner.inquiries, self.guard)
        self.ledger: Ledger = ResilientLedger(inner.ledger, self.guard)
        self.kv: KeyValue = ResilientKeyValue(inner.kv, self.guard, clock=clock)
        self.locks: Locks = ResilientLocks(inner.locks, self.guard, clock=clock)
        self.budgets: RateBudgets = ResilientBudgets(inner.budgets, self.guard, clock=clock)
        self.live: LiveReplies = ResilientLiveReplies(inner.live, self.guard)

    @property
    def pending_ledger_records(self) -> int:
        return int(getattr(self.inner, "pending_ledger_records", 0))

    @property
    def dropped_ledger_records(self) -> int:
        return int(getattr(self.inner, "dropped_ledger_records", 0))

    async def ping(self) -> None:
        """Raises while Redis is down: readiness must tell the truth even though the bot keeps answering."""
        await self.inner.ping()

    async def close(self) -> None:
        await self.guard.settle()
        await self.inner.close()
