"""SQLite ledger: daily() reads per-day totals kept beside the records, so its cost follows the number of
(day, cell) pairs asked for, not the number of records — the per-mention spike check reads a channel's last week on
every mention, and a GROUP BY over the records made each mention slower as the day's traffic grew."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bot.stores.sqlite import SqliteStore
from bot.stores.sqlite.ledger import daily_query
from tests.test_store_contract import GENERAL, HELP, T0, expected_daily, mixed_records, record


def plan(path: Path, query: str, args: tuple[object, ...]) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", args)]
    finally:
        conn.close()


def days_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ledger_days").fetchone()[0])
    finally:
        conn.close()


async def test_a_channels_days_are_one_range_of_the_totals_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    await store.close()
    query, args = daily_query(since=T0.date(), channel=GENERAL)
    steps = plan(path, query, args)
    # One range search of the totals, in the order asked for: no scan, no sort, and the records are not read.
    assert steps == [
        "SEARCH ledger_days USING PRIMARY KEY (platform=? AND workspace=? AND channel=? AND day>?)"
    ]


async def test_all_channels_days_are_found_by_the_day_index(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    await store.close()
    query, args = daily_query(since=T0.date(), channel=None)
    steps = plan(path, query, args)
    assert steps[0] == "SEARCH ledger_days USING INDEX ledger_days_by_day (day>?)"
    assert not any("ledger " in step or step.startswith("SCAN") for step in steps)


async def test_the_totals_hold_one_row_per_day_and_cell_however_many_records(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    records = [record(i / 10, id=f"g{i}") for i in range(300)]  # one channel, one day, one cell
    records += [record(i / 10, id=f"h{i}", channel=HELP) for i in range(50)]
    # The next day, and another cell:
    records += [record(60 * 24 + i, id=f"n{i}", model="claude-haiku-4-5") for i in range(20)]
    for r in records:
        await store.ledger.add(r)
    await store.ledger.add(records[0])  # a retried write adds nothing to the totals either
    assert days_rows(path) == 3
    assert await store.ledger.daily(since=T0.date()) == expected_daily(records, since=T0.date())
    general = [r for r in records if r.channel == GENERAL.channel]
    since = T0.date()
    assert await store.ledger.daily(since=since, channel=GENERAL) == expected_daily(general, since=since)
    await store.close()


async def test_a_file_without_totals_gets_them_built_from_its_records(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    records = mixed_records()
    for r in records:
        await store.ledger.add(r)
    stored = await store.ledger.records(since=T0 - timedelta(days=1))
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE ledger_days")  # a file written before the totals existed
    conn.commit()
    conn.close()
    for _ in range(2):  # opening it again finds nothing left to do
        store = await SqliteStore(str(path)).open()
        assert await store.ledger.daily(since=T0.date()) == expected_daily(stored, since=T0.date())
        await store.close()
    store = await SqliteStore(str(path)).open()
    late = replace(record(5, id="late"), feature="faq")
    await store.ledger.add(late)
    assert await store.ledger.daily(since=T0.date()) == expected_daily([*stored, late], since=T0.date())
    await store.close()


async def test_totals_of_another_shape_are_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    records = mixed_records()
    for r in records:
        await store.ledger.add(r)
    stored = await store.ledger.records(since=T0 - timedelta(days=1))
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE ledger_days DROP COLUMN self_hosted")  # as a version that did not count it
    conn.execute("UPDATE ledger_days SET calls = 0")
    conn.commit()
    conn.close()
    store = await SqliteStore(str(path)).open()
    assert await store.ledger.daily(since=T0.date()) == expected_daily(stored, since=T0.date())
    await store.close()


async def test_records_an_older_version_wrote_are_counted_on_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await SqliteStore(str(path)).open()
    await store.ledger.add(record(0, id="new"))
    await store.close()
    # A process of the version before the totals writes a record (a copy of this one) and leaves them untouched.
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(ledger)")]
    copied = {"id": "'old'", "doc": "json_set(doc, '$.id', 'old')"}
    picked = ", ".join(copied.get(c, c) for c in columns)
    conn.execute(f"INSERT INTO ledger ({', '.join(columns)}) SELECT {picked} FROM ledger WHERE id = 'new'")
    conn.commit()
    conn.close()
    store = await SqliteStore(str(path)).open()
    [row] = await store.ledger.daily(since=T0.date())
    assert row.calls == 2
    stored = await store.ledger.records(since=T0)
    assert [row] == expected_daily(stored, since=T0.date())
    await store.close()
