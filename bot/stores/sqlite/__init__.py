"""The embedded store: one SQLite file, nothing to install.

db.py runs every statement on one worker thread (the event loop never waits on the disk; WAL lets other processes
read while the bot writes). Each part of the Store owns its tables: keys.py (event claims, key-values, job locks),
logs.py (message and inquiry logs), ledger.py (spend records, with the migrations of older files) and live.py
(shared rate budgets, replies in progress). This module only assembles them on one file.
"""

from __future__ import annotations

import sqlite3

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
from bot.stores.sqlite import keys, ledger, live, logs
from bot.stores.sqlite.db import Db

__all__ = ["SqliteStore"]


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(keys.SCHEMA + logs.SCHEMA + ledger.SCHEMA + live.SCHEMA)
    ledger.migrate(conn)


class SqliteStore:
    """``store = await SqliteStore(path).open()``; ``path`` may be ``":memory:"`` for a throwaway store."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = Db(path, setup=_setup)
        # Typed as the protocols: Store's members are plain attributes, which mypy matches invariantly.
        self.claims: EventClaims = keys.SqliteClaims(self._db)
        self.messages: MessageLog = logs.SqliteMessages(self._db)
        self.inquiries: InquiryLog = logs.SqliteInquiries(self._db)
        self.ledger: Ledger = ledger.SqliteLedger(self._db)
        self.kv: KeyValue = keys.SqliteKeyValue(self._db)
        self.locks: Locks = keys.SqliteLocks(self._db)
        self.budgets: RateBudgets = live.SqliteBudgets(self._db)
        self.live: LiveReplies = live.SqliteLiveReplies(self._db)

    async def open(self) -> SqliteStore:
        await self._db.open()
        return self

    async def ping(self) -> None:
        await self._db.read(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> SqliteStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
