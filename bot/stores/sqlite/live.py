"""SQLite: shared rate budgets and the registry of replies in progress (one file can serve several processes)."""

from __future__ import annotations

import sqlite3
import time

from bot.stores.sqlite.db import Db

SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (scope TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL,
                                    paused REAL NOT NULL);
CREATE TABLE IF NOT EXISTS live_replies (id TEXT PRIMARY KEY, state TEXT NOT NULL, beat REAL NOT NULL);
CREATE INDEX IF NOT EXISTS live_replies_beat ON live_replies (beat);
CREATE TABLE IF NOT EXISTS live_done (id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS live_done_at ON live_done (at);
"""
# A heartbeat for a reply already marked done is dropped (a late write must not bring a finished reply back for a
# janitor to mark "interrupted"); the marks are kept this long, far longer than any write can arrive late.
DONE_REMEMBERED_S = 86_400.0


class SqliteBudgets:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        rate = per_minute / 60.0

        def take(conn: sqlite3.Connection) -> float:
            now = time.time()
            row = conn.execute(
                "SELECT tokens, updated, paused FROM budgets WHERE scope = ?", (scope,)
            ).fetchone()
            tokens, updated, paused = row if row else (float(burst), now, 0.0)
            if now < paused:
                return float(paused - now)
            if now > updated:
                tokens, updated = min(float(burst), tokens + (now - updated) * rate), now
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
            if wait == 0.0:
                tokens -= 1.0
            conn.execute(
                "INSERT OR REPLACE INTO budgets VALUES (?, ?, ?, ?)", (scope, tokens, updated, paused)
            )
            return wait

        return await self._db.write(take)

    async def pause(self, scope: str, seconds: float) -> None:
        def pause(conn: sqlite3.Connection) -> None:
            now = time.time()
            row = conn.execute("SELECT updated, paused FROM budgets WHERE scope = ?", (scope,)).fetchone()
            updated, paused = row if row else (now, 0.0)
            paused = max(paused, now + seconds)
            conn.execute(
                "INSERT OR REPLACE INTO budgets VALUES (?, 0.0, ?, ?)", (scope, max(updated, paused), paused)
            )

        await self._db.write(pause)


class SqliteLiveReplies:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def heartbeat(self, reply_id: str, state: str) -> None:
        query = (
            "INSERT OR REPLACE INTO live_replies SELECT ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM live_done WHERE id = ?)"
        )
        await self._db.write(lambda c: c.execute(query, (reply_id, state, time.time(), reply_id)))

    async def done(self, reply_id: str) -> None:
        def done(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("DELETE FROM live_replies WHERE id = ?", (reply_id,))
            conn.execute("DELETE FROM live_done WHERE at < ?", (now - DONE_REMEMBERED_S,))
            conn.execute("INSERT OR REPLACE INTO live_done VALUES (?, ?)", (reply_id, now))

        await self._db.write(done)

    async def stale(self, *, older_than_s: float, limit: int = 100) -> list[tuple[str, str]]:
        query = "SELECT id, state FROM live_replies WHERE beat < ? ORDER BY beat LIMIT ?"
        rows = await self._db.read(lambda c: c.execute(query, (time.time() - older_than_s, limit)).fetchall())
        return [(str(r[0]), str(r[1])) for r in rows]
