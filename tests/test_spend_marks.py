"""What the spend reports may not hide: calls nobody prices, token counts the bot estimated, calls that failed —
in /llmcost (console, Slack, Discord renderings), `supportbot spend` (text and --json), and an old SQLite ledger
migrated so its history says the same."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.discord.render import spend_embed
from adapters.slack.render import spend_blocks
from bot.app import App, build_app
from bot.settings import load_settings
from bot.spend import SpendReport, build_report, plain, report_json
from bot.stores.base import Store
from bot.stores.redis import RedisStore
from bot.stores.sqlite import SqliteStore
from llm.types import LedgerRecord, Outcome, Usage
from tests.fakes.llm_server import Fault
from tests.test_cli import run
from tests.test_core_console import run as replay
from tests.transcripts import irc_messages, transcript_lines

NOW = datetime.now(UTC).replace(microsecond=0)


def rec(n: int, **kw: object) -> LedgerRecord:
    base = LedgerRecord(
        at=NOW - timedelta(minutes=n), provider="openai", model="gpt-5.4-mini", task="summarize",
        platform="slack", workspace="T1", channel="C1", user="U1", feature="summary",
        usage=Usage(input=1000, output=200), cost_usd=Decimal("0.00165"), latency_s=1.0, ttft_s=0.2,
        outcome=Outcome.OK, price_source="genai-prices 0.2.3", id=f"r{n}",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


MIXED = [
    rec(1),
    # a local server the price file does not name: unpriced, and it sent no usage (estimated)
    rec(2, provider="openai", model="llama-local", cost_usd=Decimal(0), unpriced=True, self_hosted=True,
        usage=Usage(input=3000, output=400, estimated=True), price_source=""),
    # a stream cut off: failed, its partial usage estimated but priced
    rec(3, outcome=Outcome.INTERRUPTED, usage=Usage(input=1000, output=50, estimated=True),
        cost_usd=Decimal("0.000975"), error="connection"),
    rec(4, outcome=Outcome.ERROR, usage=Usage(), cost_usd=Decimal(0), price_source="", error="rate_limited"),
    rec(5, outcome=Outcome.CACHED, cache_hit=True, usage=Usage(), cost_usd=Decimal(0), saved_usd=Decimal("0.00165"),
        price_source=""),
]


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = await SqliteStore(str(tmp_path / "s.db")).open()
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        s = await RedisStore(url, prefix=prefix).open()
    yield s
    await s.close()


async def report_of(store: Store) -> SpendReport:
    for r in MIXED:
        await store.ledger.add(r)
    return await build_report(store.ledger, period="today", days=1, channel=None)


async def test_report_counts_answered_failed_estimated_and_unpriced(store) -> None:
    report = await report_of(store)
    assert (report.calls, report.answered, report.failed, report.cache_hits) == (5, 3, 2, 1)
    assert (report.unpriced_calls, report.unpriced_tokens) == (1, 3400)
    assert (report.estimated_calls, report.estimated_tokens, report.estimated_usd) == (2, 4450, Decimal("0.000975"))
    assert report.total_usd == Decimal("0.002625")
    text = report.to_text()
    assert "Total: ~$0.0026 + unpriced over 5 call(s): 3 answered (1 from cache), 2 failed" in text
    assert "llama-local (self-hosted) unpriced (1)" in text and "gpt-5.4-mini ~$0.0026 (4)" in text
    assert "Tokens: ~5,000 in, 0 cache read, 0 cache write, 650 out" in text
    assert "Unpriced: 1 call(s), 3,400 tokens" in text
    assert "~ Estimated: 2 call(s), 4,450 tokens ($0.0010)" in text


async def test_spend_json_has_plain_decimals_and_the_marks(store) -> None:
    report = await report_of(store)
    doc = report_json(report)
    flat = json.dumps(doc)
    assert "E-" not in flat and "E+" not in flat  # "0E-12" was printed for a zero total
    assert doc["total_usd"] == "0.002625" and doc["response_cache_saved_usd"] == "0.00165"
    assert doc["prompt_cache_saved_usd"] == "0" and (doc["answered"], doc["failed"]) == (3, 2)
    assert doc["unpriced"] == {"calls": 1, "tokens": 3400}
    assert doc["estimated"] == {"calls": 2, "tokens": 4450, "cost_usd": "0.000975"}
    assert doc["by_model"]["llama-local"] == {"cost_usd": "0", "calls": 1, "estimated": True, "unpriced_calls": 1,
                                              "self_hosted": True}


def test_plain_decimals() -> None:
    assert [plain(Decimal(x)) for x in ("0E-12", "1.500000000000", "100", "0.000000000001")] == [
        "0", "1.5", "100", "0.000000000001"]


async def test_slack_and_discord_renderings_carry_the_marks(store) -> None:
    report = await report_of(store)
    slack = json.dumps(spend_blocks(report), ensure_ascii=False)
    assert "~$0.0026 + unpriced" in slack and "3 answered (1 from cache), 2 failed" in slack
    assert "llama-local (self-hosted)" in slack and "Unpriced: 1 call(s), 3,400 tokens" in slack
    embed = spend_embed(report).to_dict()
    values = json.dumps(embed, ensure_ascii=False)
    assert "~$0.0026 + unpriced" in values and "~ Estimated: 2 call(s)" in values


def test_cli_spend_shows_the_marks_in_text_and_json(tmp_path: Path) -> None:
    import asyncio

    db = str(tmp_path / "cli.db")

    async def seed() -> None:
        s = await SqliteStore(db).open()
        for r in MIXED:
            await s.ledger.add(r)
        await s.close()

    asyncio.run(seed())
    text = run(["spend", "--days", "1"], {"SUPPORTBOT_DB": db})
    assert text.returncode == 0, text.stderr
    assert "Unpriced: 1 call(s), 3,400 tokens" in text.stdout and "~$0.0026 + unpriced" in text.stdout
    doc = json.loads(run(["spend", "--days", "1", "--json"], {"SUPPORTBOT_DB": db}).stdout)
    assert doc["unpriced"]["calls"] == 1 and doc["estimated"]["calls"] == 2 and "E-" not in json.dumps(doc)


# ---- an old SQLite ledger -----------------------------------------------------------------------------------------

# The ledger table as files written before the marks existed have it (bot/stores/sqlite.py at 3e76d86).
OLD_LEDGER = """
CREATE TABLE ledger (
    id TEXT PRIMARY KEY, at_us INTEGER NOT NULL, day TEXT NOT NULL,
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL, feature TEXT NOT NULL,
    calls INTEGER NOT NULL, cache_hits INTEGER NOT NULL, input INTEGER NOT NULL, output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write_5m INTEGER NOT NULL, cache_write_1h INTEGER NOT NULL,
    cost_pico INTEGER NOT NULL, saved_pico INTEGER NOT NULL, doc TEXT NOT NULL
);
"""


def old_doc(r: LedgerRecord) -> str:
    """A record document as the old codec wrote it: no unpriced / self_hosted / price_source."""
    u = r.usage
    return json.dumps({
        "id": r.id, "at": r.at.isoformat(), "provider": r.provider, "model": r.model, "task": r.task,
        "platform": r.platform, "workspace": r.workspace, "channel": r.channel, "user": r.user, "feature": r.feature,
        "usage": {"input": u.input, "output": u.output, "cache_read": u.cache_read, "cache_write_5m": u.cache_write_5m,
                  "cache_write_1h": u.cache_write_1h, "estimated": u.estimated},
        "cost": str(r.cost_usd), "saved": str(r.saved_usd), "latency": r.latency_s, "ttft": r.ttft_s,
        "outcome": r.outcome.value, "cache_hit": r.cache_hit, "error": r.error,
    })


async def test_an_old_sqlite_ledger_is_migrated_with_its_marks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_LEDGER)
    for r in MIXED:
        u = r.usage
        conn.execute(
            "INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.id, int(r.at.timestamp() * 1e6), r.at.date().isoformat(), r.platform, r.workspace, r.channel,
             r.provider, r.model, r.task, r.feature, 1, int(r.cache_hit), u.input, u.output, u.cache_read,
             u.cache_write_5m, u.cache_write_1h, int(r.cost_usd.scaleb(12)), int(r.saved_usd.scaleb(12)), old_doc(r)),
        )
    conn.commit()
    conn.close()
    for _ in range(2):  # opening a migrated file again changes nothing
        store = await SqliteStore(str(path)).open()
        report = await build_report(store.ledger, period="today", days=1, channel=None)
        assert (report.calls, report.failed, report.cache_hits) == (5, 2, 1)
        assert (report.unpriced_calls, report.unpriced_tokens) == (1, 3400)  # the $0 call with tokens
        assert (report.estimated_calls, report.estimated_tokens) == (2, 4450)
        old = {r.id: r for r in await store.ledger.records(since=NOW - timedelta(days=1))}
        assert old["r2"].unpriced and not old["r1"].unpriced and not old["r4"].unpriced
        await store.close()
    store = await SqliteStore(str(path)).open()
    await store.ledger.add(rec(6, id="new", unpriced=True, cost_usd=Decimal(0), price_source=""))
    report = await build_report(store.ledger, period="today", days=1, channel=None)
    assert report.calls == 6 and report.unpriced_calls == 2
    await store.close()


# ---- end to end: a self-hosted server without usage ---------------------------------------------------------------


async def test_llmcost_marks_a_self_hosted_unpriced_model_and_estimated_counts(tmp_path, server) -> None:
    settings = load_settings(db=str(tmp_path / "bot.db"), redis_url=None, openai_api_key="sk-test",
                             openai_base_url=server.openai_base_url)
    app: App = await build_app(settings)
    server.enqueue_fault(Fault.disconnect(after_pieces=5))  # the first summary's stream is cut: no usage arrives
    thread = {"thread": "1700000000.000000"}
    items = transcript_lines(irc_messages()[:10]) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize", **thread},
        {"channel": "support", "user": "alice", "text": "@bot summarize again please", **thread},
        {"channel": "support", "user": "alice", "text": "/llmcost today"},
    ]
    out = await replay(app, tmp_path, items)
    records = await app.store.ledger.records(since=NOW - timedelta(hours=1))
    assert all(r.self_hosted and r.unpriced and r.cost_usd == 0 for r in records)
    assert any(r.usage.estimated for r in records) and any(r.failed for r in records)
    calls = len(records)
    assert f"Total: $0.00 + unpriced over {calls} call(s): {calls - 1} answered (0 from cache), 1 failed" in out
    assert "gpt-5.4-mini (self-hosted) unpriced" in out and f"Unpriced: {calls} call(s)" in out
    assert "~ Estimated: 1 call(s)" in out and "Tokens: ~" in out
    await app.close()


async def test_llmcost_answers_one_type_whose_refusal_replaces_the_figures(tmp_path: Path) -> None:
    from bot.types import ChannelRef, Command

    settings = load_settings(db=str(tmp_path / "bot.db"), redis_url=None, admins=["boss"])
    app = await build_app(settings)
    try:
        here = ChannelRef("console", "local", "support")
        usage = await app.assistant.spend(Command("llmcost", "yesterdayish", here, "alice"))
        others = await app.assistant.spend(Command("llmcost", "7d all", here, "alice"))
        figures = await app.assistant.spend(Command("llmcost", "7d all", here, "boss"))
    finally:
        await app.close()
    assert usage.refusal.startswith("unknown period 'yesterdayish'") and "Usage: /llmcost" in usage.refusal
    assert usage.to_text() == usage.refusal and usage.scope == "support" and usage.calls == 0
    assert others.refusal.startswith("Only admins") and others.to_text() == others.refusal
    assert not figures.refusal and figures.to_text().startswith("LLM spend — all channels, 7d (since")
