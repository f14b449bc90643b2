"""SQLite: the spend ledger. One row per record, with its aggregate columns beside the document, so daily() is
one GROUP BY; ``migrate`` adds the columns an older file lacks, filled from what its rows already hold."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

from bot.stores import codec
from bot.stores.base import SpendRow
from bot.stores.sqlite.db import CH_WHERE, Db, channel_args
from bot.types import ChannelRef
from llm.types import LedgerRecord

SCHEMA = """
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


def migrate(conn: sqlite3.Connection) -> None:
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


class SqliteLedger:
    def __init__(self, db: Db) -> None:
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
            args += channel_args(channel)
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
            args += channel_args(channel)
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
