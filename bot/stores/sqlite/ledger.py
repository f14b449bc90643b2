"""SQLite: the spend ledger. One row per record (its aggregate columns beside the document), and per-day totals per
cell in ``ledger_days``, added to in the transaction that inserts the record, so daily() reads a few rows per day
instead of summing the day's records (the way Redis keeps ``{ledger}:agg:<day>``). ``migrate`` adds the columns an
older file lacks, filled from what its rows already hold, and (re)builds the totals from the records."""

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
-- daily() read these to sum a channel's records per day, so the spike check on every mention cost time in
-- proportion to the day's traffic (soak bench: 0.24 → 2.9 ms per call over 6,000 mentions); it reads ledger_days now.
DROP INDEX IF EXISTS ledger_by_day;
DROP INDEX IF EXISTS ledger_by_channel_day;
"""

CELL_COLUMNS = ("platform", "workspace", "channel", "provider", "model", "task", "feature")
SUM_COLUMNS = ("calls", "cache_hits", *codec.USAGE_FIELDS, *codec.MONEY_FIELDS, *codec.MARK_FIELDS)
LEDGER_COLUMNS = ("id", "at_us", "day", *CELL_COLUMNS, *SUM_COLUMNS, "doc")
# ledger_days: one row per channel, day and cell. The key leads with the channel and the day, so one channel's days
# are one range of the primary key; all channels' days (the CLI's report) use ledger_days_by_day.
DAY_KEY = ("platform", "workspace", "channel", "day", "provider", "model", "task", "feature")
DAYS_COLUMNS = (*DAY_KEY, *SUM_COLUMNS)
DAYS_SCHEMA = f"""
CREATE TABLE ledger_days (
    {", ".join(f"{name} TEXT NOT NULL" for name in DAY_KEY)},
    {", ".join(f"{name} INTEGER NOT NULL" for name in SUM_COLUMNS)},
    PRIMARY KEY ({", ".join(DAY_KEY)})
) WITHOUT ROWID;
CREATE INDEX ledger_days_by_day ON ledger_days (day);
"""
_ADD_TO_DAY = (
    f"INSERT INTO ledger_days ({', '.join(DAYS_COLUMNS)}) VALUES ({','.join('?' * len(DAYS_COLUMNS))})"
    f" ON CONFLICT ({', '.join(DAY_KEY)}) DO UPDATE SET"
    f" {', '.join(f'{name} = {name} + excluded.{name}' for name in SUM_COLUMNS)}"
)

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


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _up_to_date(conn: sqlite3.Connection) -> bool:
    if not {column for column, _ in LEDGER_MIGRATIONS} <= set(_columns(conn, "ledger")):
        return False
    if tuple(_columns(conn, "ledger_days")) != DAYS_COLUMNS:
        return False
    # Every record counts one call: totals with fewer calls than there are records missed some that an older
    # version wrote to this file (a rolled-back deploy, a process not yet upgraded). One pass over an index, once
    # per process.
    same = "SELECT (SELECT COUNT(*) FROM ledger) = (SELECT coalesce(SUM(calls), 0) FROM ledger_days)"
    return bool(conn.execute(same).fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Add the ledger columns an older file lacks, filled from its rows, and build ledger_days from the records
    when it is missing, has other columns than this version sums or misses records, in one transaction (a second
    process opening the same file at the same time waits for the lock, then finds nothing left to do)."""
    if _up_to_date(conn):
        return  # the common case: no write lock taken just to look
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _up_to_date(conn):
            _migrate(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    have = set(_columns(conn, "ledger"))
    for column, fill in LEDGER_MIGRATIONS:
        if column in have:
            continue
        conn.execute(f"ALTER TABLE ledger ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        conn.execute(f"UPDATE ledger SET {column} = {fill}")
        if column == "unpriced":
            conn.execute("UPDATE ledger SET doc = json_set(doc, '$.unpriced', json('true')) WHERE unpriced")
    # The per-day totals are derived data: rebuilt whole from the records, so they agree with them exactly.
    conn.execute("DROP TABLE IF EXISTS ledger_days")
    for statement in DAYS_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    sums = ", ".join(f"SUM({name})" for name in SUM_COLUMNS)
    conn.execute(
        f"INSERT INTO ledger_days ({', '.join(DAYS_COLUMNS)})"
        f" SELECT {', '.join(DAY_KEY)}, {sums} FROM ledger GROUP BY {', '.join(DAY_KEY)}"
    )


def daily_query(*, since: date, channel: ChannelRef | None) -> tuple[str, tuple[object, ...]]:
    """daily()'s SELECT and its arguments (tests read its query plan)."""
    cells = ", ".join(CELL_COLUMNS)
    query = f"SELECT day, {cells}, {', '.join(SUM_COLUMNS)} FROM ledger_days WHERE day >= ?"
    args: tuple[object, ...] = (since.isoformat(),)
    if channel is not None:
        query += f" AND {CH_WHERE}"
        args += channel_args(channel)
    return f"{query} ORDER BY day, {cells}", args


class SqliteLedger:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, record: LedgerRecord) -> None:
        record = codec.normalise_record(record)
        sums = codec.record_increments(record)
        day = codec.day_of(record.at).isoformat()
        platform, workspace, channel, *cell = codec.record_cell(record)
        totals = tuple(sums[name] for name in SUM_COLUMNS)
        row = (record.id, codec.to_us(record.at), day, platform, workspace, channel, *cell, *totals,
               codec.encode_record(record))  # fmt: skip
        placeholders = ",".join("?" * len(row))
        # Columns by name: a migrated file has its newer columns after `doc`.
        # OR IGNORE: a record written twice (a retry after a lost reply) is kept and counted once.
        insert = f"INSERT OR IGNORE INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({placeholders})"
        day_row = (platform, workspace, channel, day, *cell, *totals)

        def add(conn: sqlite3.Connection) -> None:
            # One transaction: the totals never miss a record nor count a retried one twice.
            if conn.execute(insert, row).rowcount == 1:
                conn.execute(_ADD_TO_DAY, day_row)

        await self._db.write(add)

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
        query, args = daily_query(since=since, channel=channel)
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
