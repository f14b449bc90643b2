"""The embedded store: one SQLite file, nothing to install.

sqlite3 is blocking, so every statement runs on one dedicated worker thread: calls are serialised in order and the
event loop never waits on the disk. WAL mode lets readers in other processes (``supportbot llmcost`` from a shell)
read while the bot writes. Writes take the file's write lock up front (``BEGIN IMMEDIATE``), so two stores on the
same file — two processes — see claims and locks atomically.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime
from typing import TypeVar

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
from bot.stores.sqlite import live as sqlite_live
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord

T = TypeVar("T")

# How long a statement waits for another process's write lock before failing (sqlite3 busy_timeout, in ms).
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL, message_id TEXT NOT NULL,
    thread_id TEXT, author TEXT NOT NULL, sent_us INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (platform, workspace, channel, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (platform, workspace, channel, sent_us);
-- A thread's replies in time order (replaces messages_by_thread, which lacked sent_us: SQLite then preferred
-- messages_by_time and scanned the whole channel).
DROP INDEX IF EXISTS messages_by_thread;
CREATE INDEX IF NOT EXISTS messages_by_thread_time ON messages (platform, workspace, channel, thread_id, sent_us);
CREATE INDEX IF NOT EXISTS messages_by_author ON messages (author);
CREATE INDEX IF NOT EXISTS messages_sent ON messages (sent_us);
CREATE TABLE IF NOT EXISTS inquiries (
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL, message_id TEXT NOT NULL,
    author TEXT NOT NULL, asked_us INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (platform, workspace, channel, message_id)
);
CREATE INDEX IF NOT EXISTS inquiries_by_time ON inquiries (platform, workspace, channel, asked_us);
CREATE INDEX IF NOT EXISTS inquiries_by_author ON inquiries (author);
CREATE INDEX IF NOT EXISTS inquiries_asked ON inquiries (asked_us);
CREATE TABLE IF NOT EXISTS ledger (
    id TEXT PRIMARY KEY, at_us INTEGER NOT NULL, day TEXT NOT NULL,
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL, feature TEXT NOT NULL,
    calls INTEGER NOT NULL, cache_hits INTEGER NOT NULL, input INTEGER NOT NULL, output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write_5m INTEGER NOT NULL, cache_write_1h INTEGER NOT NULL,
    cost_pico INTEGER NOT NULL, saved_pico INTEGER NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_time ON ledger (at_us);
CREATE INDEX IF NOT EXISTS ledger_by_channel ON ledger (platform, workspace, channel, at_us);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (day);
-- /llmcost and the budget check read one channel's days: without this they scanned its whole ledger.
CREATE INDEX IF NOT EXISTS ledger_by_channel_day ON ledger (platform, workspace, channel, day);
"""

CELL_COLUMNS = ("platform", "workspace", "channel", "provider", "model", "task", "feature")
SUM_COLUMNS = ("calls", "cache_hits", *codec.USAGE_FIELDS, *codec.MONEY_FIELDS, *codec.MARK_FIELDS)
LEDGER_COLUMNS = ("id", "at_us", "day", *CELL_COLUMNS, *SUM_COLUMNS, "doc")

_TOKENS = "(input + output + cache_read + cache_write_5m + cache_write_1h)"
# Ledger columns added after files were first written, each with how to fill it from what old rows already hold.
# Before `unpriced` existed a model without a price was recorded at $0: a call with tokens and no cost (not a cache
# hit) was one, and its record document is marked to agree with the aggregates.
LEDGER_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("failed", "json_extract(doc, '$.outcome') IN ('error', 'interrupted')"),
    ("estimated", "coalesce(json_extract(doc, '$.usage.estimated'), 0)"),
    ("estimated_tokens", f"estimated * {_TOKENS}"),
    ("estimated_pico", "estimated * cost_pico"),
    ("unpriced", f"cost_pico = 0 AND cache_hits = 0 AND {_TOKENS} > 0"),
    ("unpriced_tokens", f"unpriced * {_TOKENS}"),
    ("self_hosted", "0"),
)


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}


def _migrate_ledger(conn: sqlite3.Connection) -> None:
    """Add the ledger columns an older file lacks, filled from its rows, in one transaction (a second process
    opening the same file at the same time waits for the lock, then finds nothing left to do)."""
    if {column for column, _ in LEDGER_MIGRATIONS} <= _columns(conn):
        return  # the common case: no write lock taken just to look
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = _columns(conn)
        for column, fill in LEDGER_MIGRATIONS:
            if column in have:
                continue
            conn.execute(f"ALTER TABLE ledger ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
            conn.execute(f"UPDATE ledger SET {column} = {fill}")
            if column == "unpriced":
                conn.execute("UPDATE ledger SET doc = json_set(doc, '$.unpriced', json('true')) WHERE unpriced")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Db:
    """One connection on one worker thread; ``read``/``write`` hop onto it."""

    def __init__(self, path: str) -> None:
        self._path = path
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
            conn.executescript(SCHEMA + sqlite_live.SCHEMA)
            _migrate_ledger(conn)
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

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def _ch(channel: ChannelRef) -> tuple[str, str, str]:
    return (channel.platform, channel.workspace, channel.channel)


CH_WHERE = "platform = ? AND workspace = ? AND channel = ?"


class SqliteClaims:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("DELETE FROM claims WHERE expires <= ?", (now,))
            cur = conn.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, now + ttl_s))
            return cur.rowcount == 1

        return await self._db.write(claim)


class SqliteMessages:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, message: ChatMessage) -> None:
        ref = message.ref
        row = (*_ch(ref.channel), ref.message_id, ref.thread_id, message.author, codec.to_us(message.sent_at))
        doc = codec.encode_message(message)
        await self._db.write(
            lambda c: c.execute("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?)", (*row, doc))
        )

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        since_us = codec.to_us(since) if since is not None else -(2**62)
        # Two indexed lookups (the starter by primary key, the replies by messages_by_thread_time): one WHERE with
        # "message_id = ? OR thread_id = ?" made SQLite scan the channel's whole log, so a mention's cost grew
        # with the channel's history (the soak bench showed 0.06 → 2.4 ms per call over 8,000 mentions).
        query = (
            f"SELECT doc, sent_us, message_id FROM messages WHERE {CH_WHERE} AND message_id = ? AND sent_us > ?"
            f" UNION SELECT doc, sent_us, message_id FROM messages WHERE {CH_WHERE} AND thread_id = ?"
            " AND sent_us > ? ORDER BY sent_us, message_id"
        )
        args = (*_ch(channel), thread_id, since_us, *_ch(channel), thread_id, since_us)
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        return [codec.decode_message(doc) for (doc, _, _) in rows]

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        query = f"SELECT doc FROM messages WHERE {CH_WHERE} ORDER BY sent_us DESC, message_id DESC LIMIT ?"
        rows = await self._db.read(lambda c: c.execute(query, (*_ch(channel), max(limit, 0))).fetchall())
        return [codec.decode_message(doc) for (doc,) in reversed(rows)]

    async def edit(self, ref: MessageRef, text: str) -> None:
        key = (*_ch(ref.channel), ref.message_id)

        def edit(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                f"SELECT doc FROM messages WHERE {CH_WHERE} AND message_id = ?", key
            ).fetchone()
            if row is not None:
                doc = codec.encode_message(replace(codec.decode_message(row[0]), text=text))
                conn.execute(f"UPDATE messages SET doc = ? WHERE {CH_WHERE} AND message_id = ?", (doc, *key))

        await self._db.write(edit)

    async def delete(self, ref: MessageRef) -> None:
        key = (*_ch(ref.channel), ref.message_id)
        await self._db.write(
            lambda c: c.execute(f"DELETE FROM messages WHERE {CH_WHERE} AND message_id = ?", key)
        )

    async def forget_user(self, user: str) -> int:
        return await _delete(self._db, "DELETE FROM messages WHERE author = ?", (user,))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await _delete(self._db, f"DELETE FROM messages WHERE {CH_WHERE}", _ch(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await _delete(self._db, "DELETE FROM messages WHERE sent_us < ?", (codec.to_us(cutoff),))

    async def count(self) -> int:
        return await _count(self._db, "messages")


class SqliteInquiries:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, inquiry: Inquiry) -> None:
        row = (*_ch(inquiry.channel), inquiry.message_id, inquiry.author, codec.to_us(inquiry.asked_at))
        doc = codec.encode_inquiry(inquiry)
        await self._db.write(
            lambda c: c.execute("INSERT OR REPLACE INTO inquiries VALUES (?,?,?,?,?,?,?)", (*row, doc))
        )

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        query = f"SELECT doc FROM inquiries WHERE {CH_WHERE} AND asked_us >= ? ORDER BY asked_us, message_id"
        rows = await self._db.read(lambda c: c.execute(query, (*_ch(channel), codec.to_us(since))).fetchall())
        return [codec.decode_inquiry(doc) for (doc,) in rows]

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        await _delete(
            self._db,
            f"DELETE FROM inquiries WHERE {CH_WHERE} AND message_id = ?",
            (*_ch(channel), message_id),
        )

    async def forget_user(self, user: str) -> int:
        return await _delete(self._db, "DELETE FROM inquiries WHERE author = ?", (user,))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await _delete(self._db, f"DELETE FROM inquiries WHERE {CH_WHERE}", _ch(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await _delete(self._db, "DELETE FROM inquiries WHERE asked_us < ?", (codec.to_us(cutoff),))

    async def count(self) -> int:
        return await _count(self._db, "inquiries")


class SqliteLedger:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, record: LedgerRecord) -> None:
        record = codec.normalise_record(record)
        sums = codec.record_increments(record)
        row = (
            record.id,
            codec.to_us(record.at),
            codec.day_of(record.at).isoformat(),
            *codec.record_cell(record),
            *(sums[name] for name in SUM_COLUMNS),
            codec.encode_record(record),
        )
        placeholders = ",".join("?" * len(row))
        # Columns by name: a migrated file has its newer columns after `doc`.
        # OR IGNORE: a record written twice (a retry after a lost reply) is kept and counted once.
        insert = f"INSERT OR IGNORE INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({placeholders})"
        await self._db.write(lambda c: c.execute(insert, row))

    async def records(
        self, *, since: datetime, until: datetime | None = None, channel: ChannelRef | None = None
    ) -> list[LedgerRecord]:
        query = "SELECT doc FROM ledger WHERE at_us >= ? AND at_us < ?"
        args: tuple[object, ...] = (codec.to_us(since), codec.to_us(until) if until is not None else 2**62)
        if channel is not None:
            query += f" AND {CH_WHERE}"
            args += _ch(channel)
        query += " ORDER BY at_us, id"
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        return [codec.decode_record(doc) for (doc,) in rows]

    async def daily(self, *, since: date, channel: ChannelRef | None = None) -> list[SpendRow]:
        cells = ", ".join(CELL_COLUMNS)
        sums = ", ".join(f"SUM({name})" for name in SUM_COLUMNS)
        query = f"SELECT day, {cells}, {sums} FROM ledger WHERE day >= ?"
        args: tuple[object, ...] = (since.isoformat(),)
        if channel is not None:
            query += f" AND {CH_WHERE}"
            args += _ch(channel)
        query += f" GROUP BY day, {cells} ORDER BY day, {cells}"
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        width = len(CELL_COLUMNS)
        return [
            codec.spend_row(
                date.fromisoformat(row[0]),
                tuple(row[1 : 1 + width]),
                dict(zip(SUM_COLUMNS, row[1 + width :], strict=True)),
            )
            for row in rows
        ]


class SqliteKeyValue:
    def __init__(self, db: _Db) -> None:
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
    def __init__(self, db: _Db) -> None:
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
        return await _delete(self._db, query, (name, token, time.time())) == 1


async def _delete(db: _Db, query: str, args: tuple[object, ...]) -> int:
    return await db.write(lambda c: c.execute(query, args).rowcount)


async def _count(db: _Db, table: str) -> int:
    row = await db.read(lambda c: c.execute(f"SELECT COUNT(*) FROM {table}").fetchone())
    return int(row[0])


class SqliteStore:
    """``store = await SqliteStore(path).open()``; ``path`` may be ``":memory:"`` for a throwaway store."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = _Db(path)
        # Typed as the protocols: Store's members are plain attributes, which mypy matches invariantly.
        self.claims: EventClaims = SqliteClaims(self._db)
        self.messages: MessageLog = SqliteMessages(self._db)
        self.inquiries: InquiryLog = SqliteInquiries(self._db)
        self.ledger: Ledger = SqliteLedger(self._db)
        self.kv: KeyValue = SqliteKeyValue(self._db)
        self.locks: Locks = SqliteLocks(self._db)
        self.budgets: RateBudgets = sqlite_live.SqliteBudgets(self._db)
        self.live: LiveReplies = sqlite_live.SqliteLiveReplies(self._db)

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
