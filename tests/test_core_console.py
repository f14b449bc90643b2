"""The conversation core end to end through the console adapter, the real SDKs and the fake provider server."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.console import replay
from bot.app import App, build_app
from bot.settings import load_settings
from bot.types import ChannelRef
from llm.types import LedgerRecord, Outcome, Usage
from tests.fakes.faq_model import faq_responder
from tests.fakes.llm_server import FakeLLMServer
from tests.transcripts import banking_inquiries, irc_messages, korean_questions, transcript_lines, write_jsonl


async def make_app(tmp_path: Path, server: FakeLLMServer | None, **overrides: object) -> App:
    keys: dict[str, object] = {}
    if server is not None:
        keys = {"openai_api_key": "sk-test", "openai_base_url": server.openai_base_url}
    settings = load_settings(db=str(tmp_path / "bot.db"), redis_url=None, **keys, **overrides)
    return await build_app(settings)


async def run(app: App, tmp_path: Path, items: list[dict[str, object]], name: str = "t.jsonl") -> str:
    out = io.StringIO()
    await replay(app, str(write_jsonl(tmp_path / name, items)), show_edits=False, out=out)
    return out.getvalue()


def sent_text(server: FakeLLMServer) -> str:
    return "\n".join(json.dumps(r.messages, ensure_ascii=False) for r in server.received)


async def ledger(app: App) -> list:
    return await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


async def test_ubuntu_thread_of_160_messages_is_summarized_and_every_message_reaches_the_model(
    tmp_path, server
) -> None:
    app = await make_app(tmp_path, server)
    messages = irc_messages()[:160]
    items = transcript_lines(messages) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize please", "thread": "1700000000.000000"}
    ]
    out = await run(app, tmp_path, items)
    assert "--- bot in #support ---\nSummary:" in out
    sent = "\n".join(r.user_text for r in server.received)
    missing = [text for _, text in messages if text not in sent]
    assert missing == []
    for nick in {n for n, _ in messages}:
        assert f"{nick}: " in sent  # people are named by display name
    [rec] = await ledger(app)
    assert rec.outcome is Outcome.OK and rec.feature == "summary" and rec.channel == "support"
    await app.close()


async def test_second_mention_sends_only_what_is_new(tmp_path, server) -> None:
    app = await make_app(tmp_path, server)
    messages = irc_messages()[:170]
    thread = "1700000000.000000"
    first = transcript_lines(messages[:160]) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize", "thread": thread, "ts": "1700000500.0"}
    ]
    await run(app, tmp_path, first, "a.jsonl")
    later = [
        {"channel": "support", "user": n, "text": t, "thread": thread, "ts": f"{1700000600 + i}.0"}
        for i, (n, t) in enumerate(messages[160:170])
    ] + [{"channel": "support", "user": "alice", "text": "@bot update?", "thread": thread, "ts": "1700000700.0"}]
    out = await run(app, tmp_path, later, "b.jsonl")
    assert out.count("--- bot in #support ---") == 1
    full, incremental = await ledger(app)
    assert incremental.usage.total_input <= 0.25 * full.usage.total_input
    update_request = server.received[-1].user_text
    assert "Previous summary" in update_request
    assert all(t in update_request for _, t in messages[160:170])
    assert messages[0][1] not in update_request
    # Asked for a fresh one, everything is sent again.
    await run(
        app, tmp_path,
        [{"channel": "support", "user": "alice", "text": "@bot summarize again from scratch", "thread": thread,
          "ts": "1700000800.0"}],
        "c.jsonl",
    )
    assert messages[0][1] in server.received[-1].user_text
    await app.close()


async def test_thread_too_long_for_one_call_is_summarized_in_parts_without_dropping_anything(
    tmp_path, server
) -> None:
    app = await make_app(tmp_path, server, summary_input_tokens=1500)
    messages = irc_messages()[:300]
    items = transcript_lines(messages) + [
        {"channel": "support", "user": "bob", "text": "@bot summarize", "thread": "1700000000.000000"}
    ]
    out = await run(app, tmp_path, items)
    assert "--- bot in #support ---" in out
    part_requests = [r for r in server.received if "compact notes" in r.system]
    combine = [r for r in server.received if "combine notes" in r.system]
    assert len(part_requests) >= 3 and len(combine) >= 1
    sent = "\n".join(r.user_text for r in part_requests)
    assert [t for _, t in messages if t not in sent] == []
    records = await ledger(app)
    assert len(records) == len(server.received)
    await app.close()


async def test_korean_thread_is_budgeted_in_tokens(tmp_path, server) -> None:
    app = await make_app(tmp_path, server, summary_input_tokens=800)
    questions = korean_questions()[:120]
    items = transcript_lines([(f"사용자{i % 5}", q) for i, q in enumerate(questions)], channel="kr") + [
        {"channel": "kr", "user": "사용자0", "text": "@bot 요약해 주세요", "thread": "1700000000.000000"}
    ]
    out = await run(app, tmp_path, items)
    assert "--- bot in #kr ---" in out
    parts = [r for r in server.received if "compact notes" in r.system]
    assert len(parts) >= 2  # 120 Korean lines do not fit 800 tokens, though they would fit 800 characters × 3
    sent = "\n".join(r.user_text for r in server.received)
    assert all(q in sent for q in questions)
    await app.close()


async def test_faq_sorts_in_batches_and_lists_questions_nobody_answered(tmp_path, server) -> None:
    rows = banking_inquiries(limit=300)
    server.responder = faq_responder({text[:500]: cat for text, cat in rows})
    app = await make_app(tmp_path, server, routes={"classify": ["openai:gpt-4o-mini"], "faq": ["openai:gpt-4.1"]})
    now = datetime.now(UTC).timestamp()
    items = [
        {"channel": "bank", "user": f"u{i % 40}", "text": t, "ts": f"{now - 3600 + i}"} for i, (t, _) in enumerate(rows)
    ]
    out = await run(app, tmp_path, items + [{"channel": "bank", "user": "admin", "text": "/faq 36500"}])
    assert "Usage: /faq" in out  # out of range: a clear usage line, no model call
    assert server.received == []
    out = await run(app, tmp_path, [{"channel": "bank", "user": "admin", "text": "/faq"}], "faq.jsonl")
    classify = [r for r in server.received if r.schema_name == "sorting"]
    write = [r for r in server.received if r.schema_name == "entries"]
    stored = await app.store.inquiries.list(app_channel("bank"), since=datetime(2000, 1, 1, tzinfo=UTC))
    assert len(stored) >= 250  # banking77 rows are questions and requests: nearly all are collected
    assert 1 <= len(classify) <= 3  # many inquiries per call, never one per inquiry
    # Nobody answered any of them in the channel: nothing is written as if answered, every topic is listed open.
    assert write == []
    assert "*Asked but not answered yet*" in out and "0 answered from the team's replies" in out
    counts = Counter(c.replace("_", " ").title() for _, c in rows)
    assert all(f"**{c}** — " in out for c in counts)
    await app.close()


async def test_faq_entries_cite_the_replies_and_a_second_faq_with_nothing_new_says_so(tmp_path, server) -> None:
    server.responder = faq_responder(label=lambda text: "Packages" if "install" in text else "Other")
    app = await make_app(tmp_path, server)
    now = datetime.now(UTC).timestamp() - 600
    ask, answer, thanks, other = (f"{now + k:.6f}" for k in range(4))
    items: list[dict[str, object]] = [
        {"channel": "help", "user": "ann", "text": "how do I install the nvidia driver?", "ts": ask},
        {"channel": "help", "user": "bob", "text": "sudo apt install nvidia-driver-550 then reboot", "ts": answer,
         "thread": ask},
        {"channel": "help", "user": "ann", "text": "thanks bob, works", "ts": thanks, "thread": ask},
        {"channel": "help", "user": "cat", "text": "why is my wifi so slow on 24.04?", "ts": other},
    ]
    out = await run(app, tmp_path, items + [{"channel": "help", "user": "admin", "text": "/faq 7"}])
    assert "*Packages*" in out and "nvidia-driver-550" in out and f"Sources: #{answer}" in out
    assert "*Asked but not answered yet*" in out and "wifi so slow" in out
    calls = len(server.received)
    out = await run(app, tmp_path, [{"channel": "help", "user": "admin", "text": "/faq 7"}], "f2.jsonl")
    assert "No new questions or answers since the last FAQ" in out and "nvidia-driver-550" in out
    assert len(server.received) == calls  # nothing new: no model call
    await app.close()


def app_channel(name: str) -> ChannelRef:
    return ChannelRef("console", "local", name)


async def test_faq_progress_is_shown_while_it_works(tmp_path, server) -> None:
    rows = banking_inquiries(limit=450)  # three classification batches
    server.responder = faq_responder({t[:500]: c for t, c in rows})
    server.ttft_s = 0.3  # a model that takes a moment, so progress edits have time to land
    app = await make_app(tmp_path, server)
    now = datetime.now(UTC).timestamp()
    items = [{"channel": "bank", "user": "u", "text": t, "ts": f"{now - 100 + i}"} for i, (t, _) in enumerate(rows)]
    items.append({"channel": "bank", "user": "admin", "text": "/faq 7"})
    out = io.StringIO()
    await replay(app, str(write_jsonl(tmp_path / "p.jsonl", items)), show_edits=True, out=out)
    text = out.getvalue()
    assert "Writing an FAQ" in text and re.search(r"sorted \d+ of \d+ questions", text)
    await app.close()


async def test_llmcost_reports_spend_by_model_and_feature(tmp_path, server) -> None:
    # The fake server stands in for OpenAI itself, so its list prices apply (tests/test_spend_marks.py: otherwise).
    app = await make_app(tmp_path, server, admins=["boss"], base_url_is_provider=True)
    items = transcript_lines(irc_messages()[:20]) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize", "thread": "1700000000.000000"},
        {"channel": "support", "user": "alice", "text": "/llmcost today"},
        {"channel": "support", "user": "alice", "text": "/llmcost 30d all"},
        {"channel": "support", "user": "boss", "text": "/llmcost 7d all"},
        {"channel": "support", "user": "alice", "text": "/llmcost yesterdayish"},
    ]
    out = await run(app, tmp_path, items)
    assert "LLM spend — support, today" in out and "gpt-5.4-mini" in out and "summary" in out
    assert "Only admins can see the spend of all channels" in out
    assert "LLM spend — all channels, 7d" in out
    assert "unknown period" in out
    [rec] = await ledger(app)
    assert f"${rec.cost_usd:.4f}" in out or f"${rec.cost_usd:,.2f}" in out
    await app.close()


async def test_spent_budget_answers_without_calling_a_model(tmp_path, server) -> None:
    app = await make_app(
        tmp_path, server, channel_budgets_usd={"support": Decimal("0.0000001")}, base_url_is_provider=True
    )
    items = transcript_lines(irc_messages()[:10]) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize", "thread": "1700000000.000000"},
        {"channel": "support", "user": "alice", "text": "@bot summarize again", "thread": "1700000000.000000"},
    ]
    out = await run(app, tmp_path, items)
    assert len(server.received) == 1
    assert "used its monthly LLM budget" in out
    await app.close()


async def test_budget_warning_at_80_percent(tmp_path, server) -> None:
    app = await make_app(tmp_path, server, monthly_budget_usd=Decimal("1"))
    items = transcript_lines(irc_messages()[:10]) + [
        {"channel": "support", "user": "alice", "text": "@bot summarize", "thread": "1700000000.000000"}
    ]
    # Most of the month's budget already spent in this channel.
    await app.store.ledger.add(
        LedgerRecord(
            at=datetime.now(UTC), provider="openai", model="gpt-4.1", task="faq", platform="console",
            workspace="local", channel="support", user="u", feature="faq", usage=Usage(input=1, output=1),
            cost_usd=Decimal("0.85"), latency_s=1.0, ttft_s=0.5, outcome=Outcome.OK,
        )
    )
    out = await run(app, tmp_path, items)
    assert "has used 85% of its monthly LLM budget" in out
    await app.close()


async def test_without_a_provider_key_the_console_says_what_to_set(tmp_path) -> None:
    app = await make_app(tmp_path, None)
    items = [
        {"channel": "general", "user": "alice", "text": "how do I reset my password?"},
        {"channel": "general", "user": "alice", "text": "@bot summarize"},
    ]
    out = await run(app, tmp_path, items)
    assert "OPENAI_API_KEY" in out and "Traceback" not in out
    await app.close()


async def test_malformed_transcript_lines_are_reported_not_fatal(tmp_path, server) -> None:
    app = await make_app(tmp_path, server)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"channel": "c", "user": "u", "text": "hello there"}\nnot json\n{"user": "x"}\n', encoding="utf-8")
    out = io.StringIO()
    assert await replay(app, str(path), show_edits=False, out=out) == 0
    assert "line 2: skipped" in out.getvalue() and "line 3: skipped" in out.getvalue()
    await app.close()


async def test_one_person_cannot_run_up_the_bill(tmp_path, server) -> None:
    app = await make_app(tmp_path, server, user_requests_per_hour=2, admins=["boss"])
    thread = "1700000000.000000"
    items = transcript_lines(irc_messages()[:5]) + [
        {"channel": "support", "user": who, "text": f"@bot summarize fresh {i}", "thread": thread}
        for i, who in enumerate(["mallory", "mallory", "mallory", "boss", "boss", "boss"])
    ]
    out = await run(app, tmp_path, items)
    assert out.count("the most one person can") == 1
    assert len(server.received) == 5  # mallory twice, the boss (an admin) three times
    await app.close()


async def test_interactive_console_prints_every_kind_of_reply(tmp_path, server) -> None:
    from adapters.console import interactive

    app = await make_app(tmp_path, server)
    typed = iter(["my export fails with a timeout", "@bot summarize", "/llmcost", "/faq 0", "/llmcost all",
                  "/frobnicate", "/channel"])  # fmt: skip

    def read(prompt: str) -> str:
        out.write(prompt)
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    try:
        assert await interactive(app, out=out, read=read, log_file=str(tmp_path / "console.log")) == 0
    finally:
        await app.close()
    shown = out.getvalue()
    assert "bot> Summary:" in shown  # streamed
    assert "bot> LLM spend — general, 7d (since" in shown  # a report, never posted: printed whole
    assert "bot> Usage: /faq [days]" in shown  # a one-line reply posted by the core
    assert "bot> Only admins can see the spend of all channels" in shown  # a refusal
    assert "Unknown or incomplete command /frobnicate. Commands:" in shown
    assert "Unknown or incomplete command /channel." in shown  # a move without its argument is not a message
    assert f"Logs go to {tmp_path / 'console.log'}" in shown
