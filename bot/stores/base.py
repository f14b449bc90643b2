"""Storage protocols. Each is implemented once for SQLite (bot/stores/sqlite/) and once for Redis
(bot/stores/redis/); tests/test_store_contract.py runs the same contract against both.

StoreUnavailable belongs to the protocols: callers catch it from here, whichever engine serves them. Only a shared
store raises it (Redis wrapped in bot/stores/resilient/, as open_store() serves it) and only from the reads that
say so below; every write is buffered or answered locally instead. SQLite never raises it: its errors are real
ones (a full disk, a bug) and surface as themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord


class StoreUnavailable(Exception):
    """The shared store cannot answer this read right now; the caller should use another source or say so."""


class EventClaims(Protocol):
    async def claim(self, key: str, *, ttl_s: float) -> bool:
        """True for the first claimant of ``key`` within ``ttl_s``; False for every later one (any replica).
        Never raises StoreUnavailable: while a shared store is down, a key this process has not claimed is True."""
        ...


class MessageLog(Protocol):
    """Writes (add, edit, delete) never raise StoreUnavailable: a shared store that is down keeps them and writes
    them in order once it is back. Every call that returns something raises it instead of guessing: the reads
    (the caller asks the platform instead) and forget/purge/count (an admin must learn nothing was erased)."""

    async def add(self, message: ChatMessage) -> None:
        """Record a message; adding the same (channel, message_id) again replaces it."""
        ...

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        """The thread's root and replies (message_id == thread_id or thread_id == thread_id), oldest first;
        with ``since``, only messages sent strictly after it. Raises StoreUnavailable."""
        ...

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        """The channel's last ``limit`` messages (any thread), oldest first. Raises StoreUnavailable."""
        ...

    async def edit(self, ref: MessageRef, text: str) -> None: ...
    async def delete(self, ref: MessageRef) -> None: ...
    async def forget_user(self, user: str) -> int:
        """Delete the user's messages and return how many. Raises StoreUnavailable."""
        ...

    async def forget_channel(self, channel: ChannelRef) -> int:
        """Raises StoreUnavailable."""
        ...

    async def purge_before(self, cutoff: datetime) -> int:
        """Raises StoreUnavailable."""
        ...

    async def count(self) -> int:
        """Raises StoreUnavailable."""
        ...


class InquiryLog(Protocol):
    """As MessageLog: add and delete never raise StoreUnavailable; list, forget, purge and count raise it."""

    async def add(self, inquiry: Inquiry) -> None:
        """Record an inquiry; the same (channel, message_id) again replaces it."""
        ...

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        """Raises StoreUnavailable."""
        ...

    async def delete(self, channel: ChannelRef, message_id: str) -> None: ...
    async def forget_user(self, user: str) -> int:
        """Raises StoreUnavailable."""
        ...

    async def forget_channel(self, channel: ChannelRef) -> int:
        """Raises StoreUnavailable."""
        ...

    async def purge_before(self, cutoff: datetime) -> int:
        """Raises StoreUnavailable."""
        ...

    async def count(self) -> int:
        """Raises StoreUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One aggregate cell: channel × day × model × task."""

    day: date
    platform: str
    workspace: str
    channel: str
    provider: str
    model: str
    task: str
    feature: str
    calls: int
    cache_hits: int
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    cost_usd: Decimal
    saved_usd: Decimal
    failed: int = 0  # calls that gave the caller no complete answer (error, interrupted)
    estimated: int = 0  # calls whose token counts were estimated (the provider sent none, or not all)
    estimated_tokens: int = 0
    estimated_usd: Decimal = Decimal(0)  # the part of cost_usd that rests on estimated token counts
    unpriced: int = 0  # calls to a model no price source knows: their cost is unknown, not zero
    unpriced_tokens: int = 0
    self_hosted: int = 0  # calls to a server that is not the provider's own

    @property
    def answered(self) -> int:
        return self.calls - self.failed


class Ledger(Protocol):
    async def add(self, record: LedgerRecord) -> None:
        """Never raises StoreUnavailable: a shared store that is down keeps the record and writes it later."""
        ...

    async def records(
        self, *, since: datetime, until: datetime | None = None, channel: ChannelRef | None = None
    ) -> list[LedgerRecord]:
        """Records with since <= at < until, oldest first, optionally for one channel. Raises StoreUnavailable
        (a spend report made of guesses would be wrong)."""
        ...

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        """Aggregates for days >= since (UTC), exact to the record: the sum of records equals the sum of rows.
        Never raises StoreUnavailable: while a shared store is down it answers what it last answered for the same
        query, or no rows (budgets fail open)."""
        ...


class KeyValue(Protocol):
    """Small JSON/text values with a TTL: response cache, last summaries, FAQ results.

    Never raises StoreUnavailable: while a shared store is down, get is a miss (None), put and delete are skipped
    and incr counts in this process."""

    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str, *, ttl_s: float) -> None: ...
    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, *, ttl_s: float) -> int:
        """Atomically add 1 to a counter and return it; the counter expires ``ttl_s`` after it was created
        (a fixed window, shared by every replica)."""
        ...


class Locks(Protocol):
    """Never raises StoreUnavailable: while a shared store is down, locks are held in this process."""

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        """A token when the lock was free (or expired), None when someone holds it."""
        ...

    async def release(self, name: str, token: str) -> bool:
        """Release only if ``token`` still holds the lock."""
        ...


class RateBudgets(Protocol):
    """Token buckets shared by every replica: N replicas together stay within one platform budget.

    Never raises StoreUnavailable: while a shared store is down, each replica keeps a bucket of its own."""

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        """Spend one call under ``scope`` if its bucket has one and return 0.0; otherwise spend nothing and return
        the seconds until one will be there (call again then)."""
        ...

    async def pause(self, scope: str, seconds: float) -> None:
        """The platform said 429: nobody spends under ``scope`` for ``seconds``, and the bucket restarts empty."""
        ...


class LiveReplies(Protocol):
    """Replies being written, so one that a dead replica left half-done is found and finalised by another.

    Never raises StoreUnavailable: while a shared store is down, heartbeat and done wait to be written and stale
    finds nothing (no janitor finalises anything meanwhile)."""

    async def heartbeat(self, reply_id: str, state: str) -> None:
        """Record (or refresh) a reply in progress; ``state`` is opaque JSON (where it is, what it shows)."""
        ...

    async def done(self, reply_id: str) -> None: ...

    async def stale(self, *, older_than_s: float, limit: int = 100) -> list[tuple[str, str]]:
        """(reply_id, state) of replies whose last heartbeat is older than ``older_than_s``."""
        ...


class Store(Protocol):
    """``bot.stores.open_store()`` returns one; see each part's protocol for what it raises."""

    claims: EventClaims
    messages: MessageLog
    inquiries: InquiryLog
    ledger: Ledger
    kv: KeyValue
    locks: Locks
    budgets: RateBudgets
    live: LiveReplies

    async def ping(self) -> None:
        """Raises whatever the engine raises when it does not answer (readiness must tell the truth)."""
        ...

    async def close(self) -> None: ...
