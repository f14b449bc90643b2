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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NoReturn, TypeVar

from bot.stores.base import (
    EventClaims,
    InquiryLog,
    KeyValue,
    Ledger,
    LiveReplies,
    Locks,
    MessageLog,
    RateBudgets,
    SpendRow,
    Store,
)
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_AFTER_S = 1.0  # while Redis is down, try it again at most this often
# Buffered writes: a few hours of a busy workspace. The character bound keeps the worst case (Slack messages of up
# to 40,000 characters) to tens of MB.
BACKLOG_MAX_WRITES = 5_000
BACKLOG_MAX_CHARS = 20_000_000
CLAIMS_REMEMBERED = 50_000  # claim keys kept in memory (~100 bytes each)
LOCAL_ENTRIES_MAX = 10_000  # local counters, buckets, locks and remembered daily() answers, each


class StoreUnavailable(Exception):
    """The shared store cannot answer this read right now; the caller should use another source or say so."""


Unreachable = tuple[type[BaseException], ...]


@dataclass
class _Write:
    what: str
    run: Callable[[], Awaitable[Any]]
    chars: int
    key: str | None = None  # a later write with the same key replaces this one


class Guard:
    """Whether Redis answers, shared by every part of one store: one outage, one log line at each end."""

    def __init__(self, *, unreachable: Unreachable, probe_after_s: float = PROBE_AFTER_S,
                 clock: Callable[[], float] = time.monotonic,
                 backlog_max_writes: int = BACKLOG_MAX_WRITES, backlog_max_chars: int = BACKLOG_MAX_CHARS) -> None:  # fmt: skip
        self._unreachable = unreachable
        self._probe_after_s = probe_after_s
        self._clock = clock
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self._backlog: deque[_Write] = deque()
        self._backlog_chars = 0
        self._backlog_max_writes, self._backlog_max_chars = backlog_max_writes, backlog_max_chars
        self._replaying = asyncio.Lock()
        self._kicked: asyncio.Task[bool] | None = None
        self.outages = 0
        self.fallbacks: Counter[str] = Counter()  # calls answered locally, by part
        self.dropped_writes = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def buffered_writes(self) -> int:
        return len(self._backlog)

    def _failed(self, what: str, error: BaseException) -> None:
        self._next_probe = self._clock() + self._probe_after_s
        if self._down_since is None:
            self._down_since = self._clock()
            self.outages += 1
            log.warning("store: Redis unreachable (%s: %s); answering locally until it is back", what, error)

    def _answered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "store: Redis answers again after %.1fs; %d call(s) were answered locally, %d write(s) to replay",
                self._clock() - self._down_since, sum(self.fallbacks.values()), len(self._backlog),
            )
            self._down_since = None
            if self._backlog and not self._replaying.locked():
                # Replay now rather than on the next write: a buffered live.done must reach Redis before another
                # replica's janitor mistakes that finished reply for an orphan.
                self._kicked = asyncio.ensure_future(self.replay())

    async def run(self, what: str, op: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        """``op()`` on Redis, or ``fallback()`` while Redis does not answer."""
        probe = self.down
        if probe:
            if self._probing or self._clock() < self._next_probe:
                self.fallbacks[what] += 1
                return fallback()
            self._probing = True  # one probe at a time
        try:
            result = await op()
        except self._unreachable as error:
            self._failed(what, error)
            self.fallbacks[what] += 1
            return fallback()
        finally:
            if probe:
                self._probing = False
        self._answered()
        return result

    async def write(
        self, what: str, op: Callable[[], Awaitable[Any]], *, chars: int = 0, key: str | None = None
    ) -> None:
        """Run a write now if Redis answers (after older buffered writes), else keep it for later, in order."""

        async def written() -> bool:
            await op()
            return True

        if await self.replay() and await self.run(what, written, lambda: False):
            return
        if key is not None:
            for old in [w for w in self._backlog if w.key == key]:
                self._backlog.remove(old)
                self._backlog_chars -= old.chars
        self._backlog.append(_Write(what, op, chars, key))
        self._backlog_chars += chars
        while len(self._backlog) > self._backlog_max_writes or self._backlog_chars > self._backlog_max_chars:
            dropped = self._backlog.popleft()
            self._backlog_chars -= dropped.chars
            self.dropped_writes += 1
            log.error("store: write backlog full; dropped the oldest buffered write (%s)", dropped.what)

    async def replay(self) -> bool:
        """Write the backlog, oldest first. False when some is left because Redis does not answer."""
        if not self._backlog:
            return True

        async def drain() -> bool:
            async with self._replaying:
                while self._backlog:
                    try:
                        await self._backlog[0].run()
                    except self._unreachable:
                        raise
                    except Exception:  # a write Redis refuses (not an outage) must not block every later one
                        log.exception("store: a buffered write failed and was dropped (%s)", self._backlog[0].what)
                        self.dropped_writes += 1
                    self._backlog_chars -= self._backlog.popleft().chars
            log.info("store: buffered writes replayed")
            return True

        return await self.run("replay", drain, lambda: False)

    async def settle(self) -> None:
        """Wait for a replay started on recovery (before closing the connection it uses)."""
        if self._kicked is not None:
            await asyncio.gather(self._kicked, return_exceptions=True)

    def unavailable(self, what: str) -> NoReturn:
        raise StoreUnavailable(f"the shared store (Redis) is unreachable: cannot read {what} now")


class _Bounded(OrderedDict[str, T]):
    """Insertion-ordered map that forgets its oldest entries past ``limit``."""

    def __init__(self, limit: int = LOCAL_ENTRIES_MAX) -> None:
        super().__init__()
        self.limit = limit

    def keep(self, key: str, value: T) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class ResilientClaims:
    def __init__(self, inner: EventClaims, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._claimed: _Bounded[float] = _Bounded(CLAIMS_REMEMBERED)  # key → when our claim expires

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        now = self._clock()
        expires = self._claimed.get(key)
        if expires is not None and expires > now:
            return False  # this process claimed it: a re-delivery, whatever Redis remembers
        first = await self._guard.run("claims", lambda: self._inner.claim(key, ttl_s=ttl_s), lambda: True)
        if first:
            self._claimed.keep(key, now + ttl_s)
        return first


class ResilientMessages:
    def __init__(self, inner: MessageLog, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def add(self, message: ChatMessage) -> None:
        await self._guard.write("messages.add", lambda: self._inner.add(message), chars=len(message.text))

    async def edit(self, ref: MessageRef, text: str) -> None:
        await self._guard.write("messages.edit", lambda: self._inner.edit(ref, text), chars=len(text))

    async def delete(self, ref: MessageRef) -> None:
        await self._guard.write("messages.delete", lambda: self._inner.delete(ref))

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        await self._guard.replay()  # what was buffered belongs in the answer
        return await self._guard.run(
            "messages.thread",
            lambda: self._inner.thread(channel, thread_id, since=since),
            lambda: self._guard.unavailable("the thread"),
        )

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        await self._guard.replay()
        return await self._guard.run(
            "messages.recent",
            lambda: self._inner.recent(channel, limit=limit),
            lambda: self._guard.unavailable("recent messages"),
        )

    async def forget_user(self, user: str) -> int:
        return await self._strict("messages.forget_user", lambda: self._inner.forget_user(user))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._strict("messages.forget_channel", lambda: self._inner.forget_channel(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._strict("messages.purge_before", lambda: self._inner.purge_before(cutoff))

    async def count(self) -> int:
        return await self._strict("messages.count", self._inner.count)

    async def _strict(self, what: str, op: Callable[[], Awaitable[int]]) -> int:
        await self._guard.replay()  # a buffered add must not survive a forget that ran after it
        return await self._guard.run(what, op, lambda: self._guard.unavailable(what))


class ResilientInquiries:
    def __init__(self, inner: InquiryLog, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def add(self, inquiry: Inquiry) -> None:
        await self._guard.write("inquiries.add", lambda: self._inner.add(inquiry), chars=len(inquiry.text))

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        await self._guard.write("inquiries.delete", lambda: self._inner.delete(channel, message_id))

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        await self._guard.replay()
        return await self._guard.run(
            "inquiries.list",
            lambda: self._inner.list(channel, since=since),
            lambda: self._guard.unavailable("the collected questions"),
        )

    async def forget_user(self, user: str) -> int:
        return await self._strict("inquiries.forget_user", lambda: self._inner.forget_user(user))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._strict("inquiries.forget_channel", lambda: self._inner.forget_channel(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._strict("inquiries.purge_before", lambda: self._inner.purge_before(cutoff))

    async def count(self) -> int:
        return await self._strict("inquiries.count", self._inner.count)

    async def _strict(self, what: str, op: Callable[[], Awaitable[int]]) -> int:
        await self._guard.replay()
        return await self._guard.run(what, op, lambda: self._guard.unavailable(what))


class ResilientLedger:
    def __init__(self, inner: Ledger, guard: Guard) -> None:
        self._inner, self._guard = inner, guard
        self._last_daily: _Bounded[list[SpendRow]] = _Bounded()

    async def add(self, record: LedgerRecord) -> None:
        # RedisLedger keeps the record in memory when Redis is down and writes it first thing on recovery.
        await self._inner.add(record)

    async def records(
        self, *, since: datetime, until: datetime | None = None, channel: ChannelRef | None = None
    ) -> list[LedgerRecord]:
        return await self._guard.run(
            "ledger.records",
            lambda: self._inner.records(since=since, until=until, channel=channel),
            lambda: self._guard.unavailable("spend records"),
        )

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        key = f"{since.isoformat()}|{channel.key if channel else '*'}"

        async def ask() -> list[SpendRow]:
            rows = await self._inner.daily(since=since, channel=channel)
            self._last_daily.keep(key, rows)
            return rows

        def remembered() -> list[SpendRow]:
            rows = self._last_daily.get(key)
            if rows is None:
                log.warning("store: no spend figures for %s while Redis is down; budgets fail open", key)
                return []
            return rows

        return await self._guard.run("ledger.daily", ask, remembered)


class ResilientKeyValue:
    def __init__(self, inner: KeyValue, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._counters: _Bounded[tuple[int, float]] = _Bounded()  # key → (count, expires at)

    async def get(self, key: str) -> str | None:
        return await self._guard.run("kv.get", lambda: self._inner.get(key), lambda: None)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        await self._guard.run("kv.put", lambda: self._inner.put(key, value, ttl_s=ttl_s), lambda: None)

    async def delete(self, key: str) -> None:
        await self._guard.run("kv.delete", lambda: self._inner.delete(key), lambda: None)

    async def incr(self, key: str, *, ttl_s: float) -> int:
        return await self._guard.run("kv.incr", lambda: self._inner.incr(key, ttl_s=ttl_s),
                                     lambda: self._local_incr(key, ttl_s))  # fmt: skip

    def _local_incr(self, key: str, ttl_s: float) -> int:
        now = self._clock()
        count, expires = self._counters.get(key, (0, now + ttl_s))
        if expires <= now:  # a fixed window, like the Redis counter
            count, expires = 0, now + ttl_s
        self._counters.keep(key, (count + 1, expires))
        return count + 1


LOCAL_TOKEN_PREFIX = "local-"


class ResilientLocks:
    def __init__(self, inner: Locks, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._held: _Bounded[tuple[str, float]] = _Bounded()  # name → (token, expires at)

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        return await self._guard.run("locks", lambda: self._inner.acquire(name, ttl_s=ttl_s),
                                     lambda: self._local_acquire(name, ttl_s))  # fmt: skip

    async def release(self, name: str, token: str) -> bool:
        if token.startswith(LOCAL_TOKEN_PREFIX):
            held = self._held.get(name)
            if held is None or held[0] != token:
                return False
            del self._held[name]
            return True
        # A Redis lock we cannot release now expires by its TTL.
        return await self._guard.run("locks", lambda: self._inner.release(name, token), lambda: False)

    def _local_acquire(self, name: str, ttl_s: float) -> str | None:
        now = self._clock()
        held = self._held.get(name)
        if held is not None and held[1] > now:
            return None
        token = LOCAL_TOKEN_PREFIX + secrets.token_hex(16)
        self._held.keep(name, (token, now + ttl_s))
        return token


class ResilientBudgets:
    """Falls back to a token bucket per scope in this process, with bot/stores/redis_live.py's TAKE arithmetic."""

    def __init__(self, inner: RateBudgets, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._buckets: _Bounded[tuple[float, float, float]] = _Bounded()  # scope → (tokens, updated, paused until)

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
