"""SQLite: short-lived keyed rows, each with its own expiry — event claims, key-values (caches and counters) and
job locks. Expired rows are deleted by the next write that would collide with them."""

from __future__ import annotations

import secrets
import sqlite3
import time

from bot.stores.sqlite.db import Db

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires REAL NOT NULL);
"""


class SqliteClaims:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("DELETE FROM claims WHERE expires <= ?", (now,))
            cur = conn.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, now + ttl_s))
            return cur.rowcount == 1

        return await self._db.write(claim)


class SqliteKeyValue:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        query = "SELECT value FROM kv WHERE key = ? AND expires > ?"
        row = await self._db.read(lambda c: c.execute(query, (key, time.time())).fetchone())
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        def put(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("DELETE FROM kv WHERE expires <= ?", (now,))  # expired entries go on the next write
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, now + ttl_s))

        await self._db.write(put)

    async def delete(self, key: str) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM kv WHERE key = ?", (key,)))

    async def incr(self, key: str, *, ttl_s: float) -> int:
        def incr(conn: sqlite3.Connection) -> int:
            now = time.time()
            row = conn.execute("SELECT value FROM kv WHERE key = ? AND expires > ?", (key, now)).fetchone()
            if row is None:
                conn.execute("INSERT OR REPLACE INTO kv VALUES (?, '1', ?)", (key, now + ttl_s))
                return 1
            conn.execute("UPDATE kv SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", (key,))
            return int(row[0]) + 1

        return await self._db.write(incr)


class SqliteLocks:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        token = secrets.token_hex(16)

        def acquire(conn: sqlite3.Connection) -> str | None:
            now = time.time()
            conn.execute("DELETE FROM locks WHERE name = ? AND expires <= ?", (name, now))
            cur = conn.execute("INSERT OR IGNORE INTO locks VALUES (?, ?, ?)", (name, token, now + ttl_s))
            return token if cur.rowcount == 1 else None

        return await self._db.write(acquire)

    async def release(self, name: str, token: str) -> bool:
        query = "DELETE FROM locks WHERE name = ? AND token = ? AND expires > ?"
        return await self._db.delete(query, (name, token, time.time())) == 1
