"""The ledger while Redis is down: add buffers (RedisLedger's own buffer), daily() answers from memory, records()
raises StoreUnavailable."""

from __future__ import annotations

import logging
from datetime import date, datetime

from bot.stores.base import Ledger, SpendRow
from bot.stores.resilient.guard import Bounded, Guard
from bot.types import ChannelRef
from llm.types import LedgerRecord

log = logging.getLogger(__name__)


class ResilientLedger:
    def __init__(self, inner: Ledger, guard: Guard) -> None:
        self._inner, self._guard = inner, guard
        self._last_daily: Bounded[list[SpendRow]] = Bounded()

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
