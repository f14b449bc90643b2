"""The SQLite file and the one worker thread every statement runs on.

sqlite3 is blocking, so every statement runs on one dedicated worker thread: calls are serialised in order and the
event loop never waits on the disk. WAL mode lets readers in other processes (``supportbot llmcost`` from a shell)
read while the bot writes. Writes take the file's write lock up front (``BEGIN IMMEDIATE``), so two stores on the
same file — two processes — see claims and locks atomically.

This module knows no table: each part of the store (keys.py, logs.py, ledger.py, live.py) owns its own schema, and
the store (``__init__.py``) hands them all to ``Db`` as ``setup``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bot.types import ChannelRef

T = TypeVar("T")

# How long a statement waits for another process's write lock before failing (sqlite3 busy_timeout, in ms).
BUSY_TIMEOUT_MS = 10_000

# Rows keyed by channel: messages, inquiries and ledger records.
CH_WHERE = "platform = ? AND workspace = ? AND channel = ?"


def channel_args(channel: ChannelRef) -> tuple[str, str, str]:
    """The arguments of CH_WHERE."""
    return (channel.platform, channel.workspace, channel.channel)


class Db:
    """One connection on one worker thread; ``read``/``write`` hop onto it. ``setup`` runs once on the new
    connection (schema, migrations) before any other statement."""

    def __init__(self, path: str, *, setup: Callable[[sqlite3.Connection], None]) -> None:
        self._path = path
        self._setup = setup
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.read(lambda _: None)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across app crashes
            self._setup(conn)
            self._conn = conn
        return self._conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(self._connection())
        )

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def in_transaction() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, in_transaction)

    async def delete(self, query: str, args: tuple[object, ...]) -> int:
        """Run a DELETE in a transaction; how many rows it removed."""
        return await self.write(lambda c: c.execute(query, args).rowcount)

    async def count(self, table: str) -> int:
        row = await self.read(lambda c: c.execute(f"SELECT COUNT(*) FROM {table}").fetchone())
        return int(row[0])

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
