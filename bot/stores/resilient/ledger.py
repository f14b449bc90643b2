"""The ledger while Redis is down: add buffers (RedisLedger's own buffer), daily() answers from memory, records()
raises StoreUnavailable."""

from __future__ import annotations

import logging
from datetime import date, datetime

from cachetools import LRUCache

from bot.stores.base import Ledger, SpendRow
from bot.stores.resilient.outage import LOCAL_ENTRIES_MAX, RedisOutage
from bot.types import ChannelRef
from llm.types import LedgerRecord

log = logging.getLogger(__name__)


class ResilientLedger:
    def __init__(self, inner: Ledger, outage: RedisOutage) -> None:
        self._inner, self._outage = inner, outage
        self._last_daily: LRUCache[str, list[SpendRow]] = LRUCache(LOCAL_ENTRIES_MAX)

    async def add(self, record: LedgerRecord) -> None:
        # RedisLedger keeps the record in memory when Redis is down and writes it first thing on recovery.
        await self._inner.add(record)

    async def records(
        self, *, since: datetime, until: datetime | None = None, channel: ChannelRef | None = None
    ) -> list[LedgerRecord]:
        return await self._outage.run(
            "ledger.records",
            lambda: self._inner.records(since=since, until=until, channel=channel),
            lambda: self._outage.unavailable("spend records"),
        )

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        key = f"{since.isoformat()}|{channel.key if channel else '*'}"

        async def ask() -> list[SpendRow]:
            rows = await self._inner.daily(since=since, channel=channel)
            self._last_daily[key] = rows
            return rows

        def remembered() -> list[SpendRow]:
            rows = self._last_daily.get(key)
            if rows is None:
                log.warning("store: no spend figures for %s while Redis is down; budgets fail open", key)
                return []
            return rows

        return await self._outage.run("ledger.daily", ask, remembered)
