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
    budget:<scope>              hash tokens/updated/paused      rate budgets shared by replicas
    live:state · live:beat      hash id -> JSON · zset by time  replies in progress, for finalising orphans
    live:done:<id>              string, a day                   finished: a late heartbeat is dropped

Each part of the Store is one module: keys.py (claims, kv, locks), logs.py (messages, inquiries), ledger.py and
live.py (budgets, replies in progress); client.py holds the connection settings they share. This module only
assembles them on one connection.

A ledger write is one Lua script (atomic, and a no-op when the id is already stored), so the records and the
aggregates always agree and a retried write never counts twice. The ``{ledger}`` hash tag keeps the script's keys
in one Redis Cluster slot. Ledger keys carry no TTL: spend history is kept until someone deletes it.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.stores.base import (
    EventClaims,
    InquiryLog,
    KeyValue,
    Ledger,
    LiveReplies,
    Locks,
    MessageLog,
    RateBudgets,
)
from bot.stores.redis.client import UNREACHABLE, connect
from bot.stores.redis.keys import RedisClaims, RedisKeyValue, RedisLocks
from bot.stores.redis.ledger import LEDGER_BUFFER_MAX, RedisLedger
from bot.stores.redis.live import RedisBudgets, RedisLiveReplies
from bot.stores.redis.logs import RedisInquiries, RedisMessages

__all__ = ["LEDGER_BUFFER_MAX", "UNREACHABLE", "RedisStore"]


class RedisStore:
    """``store = await RedisStore("redis://host:6379/0").open()``."""

    def __init__(self, url: str, *, prefix: str = "sb:", ledger_buffer_max: int = LEDGER_BUFFER_MAX) -> None:
        self.url = url
        self.prefix = prefix
        self._r: Redis = connect(url)
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
