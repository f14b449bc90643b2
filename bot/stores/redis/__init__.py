"""The shared store: one Redis (or Valkey) for many replicas.

Key layout, all under a configurable prefix (default ``sb:``); ``ck`` is codec.channel_key, ids are percent-quoted:

    claim:<key>                 string, SET NX PX               event de-duplication
    kv:<key> · lock:<name>      string with PX TTL              response cache, summaries · job locks (token value)
    msg:<ck>:<id>               string, the message as JSON
    msgs:<ck>                   sorted set  id by sent_at µs    recent(), purge_before()
    thread:<ck>:<root id>       sorted set  reply ids by µs     thread() (the root is read by its own key)
    msgs-by:<user>              set of msg: keys                forget_user()
    msg-channels                set of ck                       purge_before(), count()
    inq:… inqs:… inqs-by:… inq-channels                         the same for inquiries (asked_at)
    {ledger}:rec                hash  id -> record JSON (Decimal strings)
    {ledger}:idx · {ledger}:idx:<ck>   sorted sets  id by at µs  records()
    {ledger}:agg:<day>          hash  "<cell JSON>|<metric>" -> integer (tokens, calls, pico-USD)   daily()
    {ledger}:days               sorted set  day by ordinal
    budget:<scope>              hash tokens/updated/paused      rate budgets shared by replicas (redis_live.py)
    live:state · live:beat      hash id -> JSON · zset by time  replies in progress, for finalising orphans

A ledger write is one Lua script (atomic, and a no-op when the id is already stored), so the records and the
aggregates always agree and a retried write never counts twice. The ``{ledger}`` hash tag keeps the script's keys
in one Redis Cluster slot. Ledger keys carry no TTL: spend history is kept until someone deletes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.stores import codec
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
)
from bot.stores.redis.live import RedisBudgets, RedisLiveReplies
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord

log = logging.getLogger(__name__)

# Ledger records kept in memory while Redis is unreachable (about 1 KB each): bounded so an outage cannot exhaust
# memory; past it the oldest are dropped and logged.
LEDGER_BUFFER_MAX = 100_000
# redis-py retries 3 times with up to 10 s backoff by default; a call on a dead Redis should fail within a second
# so the ledger buffers and the user's reply is not held up.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 10.0
BATCH = 500  # keys per MGET/HMGET/pipeline: large enough to be cheap, small enough not to block Redis
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: rec, idx, channel idx, day aggregate, days.  ARGV: id, json, µs, day, day ordinal, field, inc, field, inc…
ADD_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]) end
return 1
"""


def _ms(ttl_s: float) -> int:
    return max(1, round(ttl_s * 1000))


def _strs(values: Iterable[Any]) -> list[str]:
    """redis-py types replies as bytes | str; with decode_responses=True they are str."""
    return [str(v) for v in values]


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


class RedisClaims:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, prefix

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        # Errors propagate: on a dead Redis the caller decides whether to handle the event unclaimed.
        return bool(await self._r.set(f"{self._prefix}claim:{key}", "1", nx=True, px=_ms(ttl_s)))


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where one stored document is indexed."""

    ck: str
    member: str  # the id, as stored in the sorted sets
    score: int  # µs since the epoch
    author: str
    extra: tuple[str, ...] = ()  # further sorted sets listing ``member``


class _Documents:
    """Documents per (channel, id), indexed by time per channel and by author; shared by messages and inquiries."""

    def __init__(self, r: Redis, prefix: str, *, doc: str, by_time: str, by_author: str, channels: str,
                 entry: Callable[[str], _Entry]) -> None:  # fmt: skip
        self._r, self._p = r, prefix
        self._doc, self._by_time, self._by_author = doc, by_time, by_author
        self._channels = f"{prefix}{channels}"
        self._entry = entry

    def doc_key(self, ck: str, member: str) -> str:
        return f"{self._p}{self._doc}:{ck}:{codec.part(member)}"

    def time_key(self, ck: str) -> str:
        return f"{self._p}{self._by_time}:{ck}"

    def _author_key(self, author: str) -> str:
        return f"{self._p}{self._by_author}:{codec.part(author)}"

    async def put(self, raw: str) -> None:
        new = self._entry(raw)
        key = self.doc_key(new.ck, new.member)
        old_raw = await self._r.get(key)
        async with self._r.pipeline(transaction=True) as tx:
            if old_raw is not None:  # a replacement may move the document to another thread or author
                old = self._entry(str(old_raw))
                for zset in set(old.extra) - set(new.extra):
                    tx.zrem(zset, old.member)
                if old.author != new.author:
                    tx.srem(self._author_key(old.author), key)
            tx.set(key, raw)
            for zset in (self.time_key(new.ck), *new.extra):
                tx.zadd(zset, {new.member: new.score})
            tx.sadd(self._author_key(new.author), key)
            tx.sadd(self._channels, new.ck)
            await tx.execute()

    async def get_many(self, keys: list[str]) -> list[str]:
        found: list[str] = []
        for chunk in _chunks(keys):
            found += _strs(raw for raw in await self._r.mget(chunk) if raw is not None)
        return found

    async def remove(self, keys: list[str]) -> int:
        removed = 0
        for chunk in _chunks(keys):
            raws = _strs(raw for raw in await self._r.mget(chunk) if raw is not None)
            if not raws:
                continue
            deletes: list[int] = []  # positions of the DEL replies
            async with self._r.pipeline(transaction=True) as tx:
                for raw in raws:
                    entry = self._entry(raw)
                    key = self.doc_key(entry.ck, entry.member)
                    deletes.append(len(tx))
                    tx.delete(key)
                    for zset in (self.time_key(entry.ck), *entry.extra):
                        tx.zrem(zset, entry.member)
                    tx.srem(self._author_key(entry.author), key)
                results = await tx.execute()
            # Count only what this call deleted: another replica may be removing the same documents.
            removed += sum(int(results[i]) for i in deletes)
        return removed

    async def in_range(self, ck: str, low: str, high: str) -> list[str]:
        members = _strs(await self._r.zrangebyscore(self.time_key(ck), low, high))
        return [self.doc_key(ck, m) for m in members]

    async def forget_user(self, author: str) -> int:
        keys = _strs(await self._r.smembers(self._author_key(author)))
        removed = await self.remove(keys)
        await self._r.delete(self._author_key(author))
        return removed

    async def forget_channel(self, channel: ChannelRef) -> int:
        ck = codec.channel_key(channel)
        removed = await self.remove(await self.in_range(ck, "-inf", "+inf"))
        await self._r.srem(self._channels, ck)
        return removed

    async def purge_before(self, cutoff: datetime) -> int:
        removed = 0
        for ck in _strs(await self._r.smembers(self._channels)):
            removed += await self.remove(await self.in_range(ck, "-inf", f"({codec.to_us(cutoff)}"))
        return removed

    async def count(self) -> int:
        cks = _strs(await self._r.smembers(self._channels))
        async with self._r.pipeline(transaction=False) as pipe:
            for ck in cks:
                pipe.zcard(self.time_key(ck))
            return sum(int(n) for n in await pipe.execute())


def _by_time(items: list[ChatMessage]) -> list[ChatMessage]:
    return sorted(items, key=lambda m: (codec.to_us(m.sent_at), m.ref.message_id))


class RedisMessages:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._p = r, prefix
        self._docs = _Documents(
            r,
            prefix,
            doc="msg",
            by_time="msgs",
            by_author="msgs-by",
            channels="msg-channels",
            entry=self._entry,
        )

    def _thread_key(self, ck: str, thread_id: str) -> str:
        return f"{self._p}thread:{ck}:{codec.part(thread_id)}"

    def _entry(self, raw: str) -> _Entry:
        message = codec.decode_message(raw)
        ref = message.ref
        ck = codec.channel_key(ref.channel)
        is_reply = ref.thread_id is not None and ref.thread_id != ref.message_id
        extra = (self._thread_key(ck, ref.thread_id),) if is_reply and ref.thread_id is not None else ()
        return _Entry(ck, ref.message_id, codec.to_us(message.sent_at), message.author, extra)

    async def add(self, message: ChatMessage) -> None:
        await self._docs.put(codec.encode_message(message))

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        ck = codec.channel_key(channel)
        low = f"({codec.to_us(since)}" if since is not None else "-inf"
        replies = _strs(await self._r.zrangebyscore(self._thread_key(ck, thread_id), low, "+inf"))
        keys = [self._docs.doc_key(ck, thread_id)] + [self._docs.doc_key(ck, m) for m in replies]
        messages = [codec.decode_message(raw) for raw in await self._docs.get_many(keys)]
        if since is not None:  # the root was read by key, not by score
            messages = [m for m in messages if m.sent_at > since]
        return _by_time(messages)

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        if limit <= 0:
            return []
        ck = codec.channel_key(channel)
        members = _strs(await self._r.zrange(self._docs.time_key(ck), -limit, -1))
        raws = await self._docs.get_many([self._docs.doc_key(ck, m) for m in members])
        return _by_time([codec.decode_message(raw) for raw in raws])

    async def edit(self, ref: MessageRef, text: str) -> None:
        raw = await self._r.get(self._docs.doc_key(codec.channel_key(ref.channel), ref.message_id))
        if raw is not None:
            await self._docs.put(codec.encode_message(replace(codec.decode_message(str(raw)), text=text)))

    async def delete(self, ref: MessageRef) -> None:
        await self._docs.remove([self._docs.doc_key(codec.channel_key(ref.channel), ref.message_id)])

    async def forget_user(self, user: str) -> int:
        return await self._docs.forget_user(user)

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._docs.forget_channel(channel)

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._docs.purge_before(cutoff)

    async def count(self) -> int:
        return await self._docs.count()


def _inquiry_entry(raw: str) -> _Entry:
    inquiry = codec.decode_inquiry(raw)
    return _Entry(
        codec.channel_key(inquiry.channel), inquiry.message_id, codec.to_us(inquiry.asked_at), inquiry.author
    )


class RedisInquiries:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._docs = _Documents(
            r,
            prefix,
            doc="inq",
            by_time="inqs",
            by_author="inqs-by",
            channels="inq-channels",
            entry=_inquiry_entry,
        )

    async def add(self, inquiry: Inquiry) -> None:
        await self._docs.put(codec.encode_inquiry(inquiry))

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        keys = await self._docs.in_range(codec.channel_key(channel), str(codec.to_us(since)), "+inf")
        inquiries = [codec.decode_inquiry(raw) for raw in await self._docs.get_many(keys)]
        return sorted(inquiries, key=lambda i: (codec.to_us(i.asked_at), i.message_id))

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        await self._docs.remove([self._docs.doc_key(codec.channel_key(channel), message_id)])

    async def forget_user(self, user: str) -> int:
        return await self._docs.forget_user(user)

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._docs.forget_channel(channel)

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._docs.purge_before(cutoff)

    async def count(self) -> int:
        return await self._docs.count()


class RedisLedger:
    """Spend records. While Redis is unreachable, ``add`` keeps records in memory and writes them, in order, on the
    next call that reaches Redis: a replica's spend is never lost to a Redis restart."""

    def __init__(self, r: Redis, prefix: str, *, buffer_max: int = LEDGER_BUFFER_MAX) -> None:
        self._r = r
        self._base = f"{prefix}{{ledger}}:"
        self._add = r.register_script(ADD_RECORD)
        self._pending: deque[LedgerRecord] = deque()
        self._buffer_max = buffer_max
        self._flushing = asyncio.Lock()
        self.dropped = 0  # records lost because the buffer was full

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _idx(self, channel: ChannelRef | None) -> str:
        return f"{self._base}idx" if channel is None else f"{self._base}idx:{codec.channel_key(channel)}"

    async def _write(self, record: LedgerRecord) -> None:
        day = codec.day_of(record.at)
        cell = json.dumps(codec.record_cell(record), separators=(",", ":"), ensure_ascii=False)
        args: list[Any] = [
            record.id,
            codec.encode_record(record),
            codec.to_us(record.at),
            day.isoformat(),
            day.toordinal(),
        ]
        for metric, increment in codec.record_increments(record).items():
            if increment:
                args += [f"{cell}|{metric}", increment]
        channel = ChannelRef(record.platform, record.workspace, record.channel)
        keys = [
            f"{self._base}rec",
            self._idx(None),
            self._idx(channel),
            f"{self._base}agg:{day.isoformat()}",
            f"{self._base}days",
        ]
        await self._add(keys=keys, args=args)

    async def _flush(self) -> None:
        """Write buffered records oldest first; raises (keeping the rest) if Redis is still unreachable."""
        if not self._pending:
            return
        async with self._flushing:
            while self._pending:
                await self._write(self._pending[0])
                self._pending.popleft()
            log.info("ledger: buffered records written to Redis")

    def _buffer(self, record: LedgerRecord, error: BaseException) -> None:
        if len(self._pending) >= self._buffer_max:
            self._pending.popleft()
            self.dropped += 1
            log.error("ledger: buffer full (%d records), dropped the oldest record", self._buffer_max)
        self._pending.append(record)
        log.warning(
            "ledger: Redis unreachable (%s); %d record(s) buffered in memory", error, len(self._pending)
        )

    async def add(self, record: LedgerRecord) -> None:
        record = codec.normalise_record(record)
        try:
            await self._flush()
            await self._write(record)
        except UNREACHABLE as error:
            self._buffer(record, error)

    async def records(
        self, *, since: datetime, until: datetime | None = None, channel: ChannelRef | None = None
    ) -> list[LedgerRecord]:
        await self._flush()
        high = f"({codec.to_us(until)}" if until is not None else "+inf"
        ids = _strs(await self._r.zrangebyscore(self._idx(channel), codec.to_us(since), high))
        records: list[LedgerRecord] = []
        for chunk in _chunks(ids):
            raws = _strs(raw for raw in await self._r.hmget(f"{self._base}rec", chunk) if raw is not None)
            records += [codec.decode_record(raw) for raw in raws]
        return sorted(records, key=lambda r: (codec.to_us(r.at), r.id))

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        await self._flush()
        days = _strs(await self._r.zrangebyscore(f"{self._base}days", since.toordinal(), "+inf"))
        async with self._r.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(f"{self._base}agg:{day}")
            aggregates = await pipe.execute()
        wanted = None if channel is None else [channel.platform, channel.workspace, channel.channel]
        rows: list[SpendRow] = []
        for day, fields in zip(days, aggregates, strict=True):
            cells: dict[str, dict[str, int]] = {}
            for field, value in fields.items():
                cell, _, metric = field.rpartition("|")
                cells.setdefault(cell, {})[metric] = int(value)
            for cell, totals in cells.items():
                parts = tuple(json.loads(cell))
                if wanted is None or list(parts[:3]) == wanted:
                    rows.append(codec.spend_row(date.fromisoformat(day), parts, totals))
        return sorted(rows, key=lambda row: (row.day, row.platform, row.workspace, row.channel, row.provider,
                                             row.model, row.task, row.feature))  # fmt: skip


class RedisKeyValue:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, f"{prefix}kv:"

    async def get(self, key: str) -> str | None:
        value = await self._r.get(self._prefix + key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        await self._r.set(self._prefix + key, value, px=_ms(ttl_s))

    async def delete(self, key: str) -> None:
        await self._r.delete(self._prefix + key)

    async def incr(self, key: str, *, ttl_s: float) -> int:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.incr(self._prefix + key)
            pipe.pexpire(self._prefix + key, _ms(ttl_s), nx=True)  # the window starts with the first count
            count, _ = await pipe.execute()
        return int(count)


class RedisLocks:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, f"{prefix}lock:"
        self._release = r.register_script(RELEASE_LOCK)

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        token = secrets.token_hex(16)
        acquired = await self._r.set(self._prefix + name, token, nx=True, px=_ms(ttl_s))
        return token if acquired else None

    async def release(self, name: str, token: str) -> bool:
        # Compare-and-delete in one step: a holder whose lock expired must not delete the next holder's lock.
        return bool(await self._release(keys=[self._prefix + name], args=[token]))


class RedisStore:
    """``store = await RedisStore("redis://host:6379/0").open()``."""

    def __init__(self, url: str, *, prefix: str = "sb:", ledger_buffer_max: int = LEDGER_BUFFER_MAX) -> None:
        self.url = url
        self.prefix = prefix
        self._r: Redis = Redis.from_url(
            url,
            decode_responses=True,
            retry=RETRY,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
        )
        self._ledger = RedisLedger(self._r, prefix, buffer_max=ledger_buffer_max)
        # Typed as the protocols: Store's members are plain attributes, which mypy matches invariantly.
        self.claims: EventClaims = RedisClaims(self._r, prefix)
        self.messages: MessageLog = RedisMessages(self._r, prefix)
        self.inquiries: InquiryLog = RedisInquiries(self._r, prefix)
        self.ledger: Ledger = self._ledger
        self.kv: KeyValue = RedisKeyValue(self._r, prefix)
        self.locks: Locks = RedisLocks(self._r, prefix)
        self.budgets: RateBudgets = RedisBudgets(self._r, prefix)
        self.live: LiveReplies = RedisLiveReplies(self._r, prefix)

    @property
    def pending_ledger_records(self) -> int:
        """Ledger records held in memory because Redis was unreachable when they were added."""
        return self._ledger.pending

    @property
    def dropped_ledger_records(self) -> int:
        """Ledger records lost because Redis stayed unreachable past the buffer's bound."""
        return self._ledger.dropped

    async def open(self) -> RedisStore:
        # Connecting is lazy: a replica may start while Redis restarts, and the ledger buffers until it is back.
        return self

    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose()

    async def __aenter__(self) -> RedisStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
