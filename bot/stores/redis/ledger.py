"""Redis: the spend ledger — records in one hash, indexed by time (all and per channel), and integer aggregates per
day written by the same Lua script, so records and aggregates always agree and a retried write never counts twice.
While Redis is unreachable, records wait in memory (bounded) and are written, in order, on the next call that
reaches Redis."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from datetime import date, datetime
from typing import Any

from redis.asyncio import Redis

from bot.stores import codec
from bot.stores.base import SpendRow
from bot.stores.redis.client import UNREACHABLE, chunks, strs
from bot.types import ChannelRef
from llm.types import LedgerRecord

log = logging.getLogger(__name__)

# Ledger records kept in memory while Redis is unreachable (about 1 KB each): bounded so an outage cannot exhaust
# memory; past it the oldest are dropped and logged.
LEDGER_BUFFER_MAX = 100_000

# KEYS: rec, idx, channel idx, day aggregate, days.  ARGV: id, json, µs, day, day ordinal, field, inc, field, inc…
ADD_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]) end
return 1
"""


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
        ids = strs(await self._r.zrangebyscore(self._idx(channel), codec.to_us(since), high))
        records: list[LedgerRecord] = []
        for chunk in chunks(ids):
            raws = strs(raw for raw in await self._r.hmget(f"{self._base}rec", chunk) if raw is not None)
            records += [codec.decode_record(raw) for raw in raws]
        return sorted(records, key=lambda r: (codec.to_us(r.at), r.id))

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        await self._flush()
        days = strs(await self._r.zrangebyscore(f"{self._base}days", since.toordinal(), "+inf"))
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
