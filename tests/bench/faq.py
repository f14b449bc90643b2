"""Benchmark: tokens, calls and cost of our /faq pipeline against the naive one (one classification call per
inquiry, then one generation call per category), on the same inquiries, fake model and price table, in one run.
Prints one JSON object.

    python -m tests.bench.faq [--data PATH/train.csv] [--n 1000]

The fake model sorts by the dataset's own labels and writes exactly the entries asked for: this measures cost
and plumbing, not writing quality. Both pipelines use the default routes (cheap model sorts, strong model writes)
and the same prompts; the response cache is off for both.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot import prompts
from bot.faq import Entries, FaqWriter, Sorting
from bot.inquiries import group_key
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, Inquiry
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import build_routes
from llm.types import Attribution, LedgerRecord, Request, Task
from tests.fakes.faq_model import faq_responder
from tests.fakes.llm_server import FakeLLMServer
from tests.transcripts import BANKING_SAMPLE

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "banking77" / "train.csv"
CHANNEL = ChannelRef("bench", "W", "faq")
NAIVE_ENTRIES = 3  # what a naive writer asks for per category


def load(path: Path, n: int) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    random.Random(7).shuffle(rows)
    return rows[:n]


async def naive(router: ModelRouter, rows: list[tuple[str, str]], who: Attribution) -> int:
    """Returns the number of FAQ entries written."""
    labels: dict[str, list[str]] = defaultdict(list)

    async def classify(text: str) -> None:
        request = Request.of(prompts.CLASSIFY_SYSTEM, prompts.transcript([f"1. {text[:500]}"]))
        result = await router.structured(Task.CLASSIFY, request, Sorting, bill_to=who)
        labels[result.groups[0].category if result.groups else "Other"].append(text)

    gate = asyncio.Semaphore(8)

    async def gated(text: str) -> None:
        async with gate:
            await classify(text)

    await asyncio.gather(*(gated(t) for t, _ in rows))

    async def write(category: str, questions: list[str]) -> int:
        shown = "\n".join(f"- (1×) {q}" for q in questions)
        user = f"Category: {category} — asked {len(questions)} times — write {NAIVE_ENTRIES} entries\n{shown}"
        request = Request.of(prompts.FAQ_SYSTEM, prompts.transcript([user]))
        async with gate:
            return len((await router.structured(Task.FAQ, request, Entries, bill_to=who)).entries)

    return sum(await asyncio.gather(*(write(c, qs) for c, qs in labels.items())))


def totals(records: list[LedgerRecord]) -> dict[str, Any]:
    cost = sum((r.cost_usd for r in records), Decimal(0))
    return {
        "calls": len(records),
        "input_tokens": sum(r.usage.total_input for r in records),
        "cache_read_tokens": sum(r.usage.cache_read for r in records),
        "cache_write_tokens": sum(r.usage.cache_write_5m + r.usage.cache_write_1h for r in records),
        "output_tokens": sum(r.usage.output for r in records),
        "cost_usd": str(cost.quantize(Decimal("0.000001"))),
        "by_task": {
            task: {
                "calls": sum(1 for r in records if r.task == task),
                "cost_usd": str(
                    sum((r.cost_usd for r in records if r.task == task), Decimal(0)).quantize(
                        Decimal("0.000001")
                    )
                ),
            }
            for task in sorted({r.task for r in records})
        },
    }


async def run(path: Path, n: int) -> dict[str, Any]:
    rows = load(path, n)
    truth = {t[:500]: c for t, c in rows}
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore(str(Path(tmp) / "bench.db")).open()
        async with FakeLLMServer(responder=faq_responder(truth)) as server:
            router = create_router(
                openai_api_key="sk-bench",
                openai_base_url=server.openai_base_url,
                anthropic_api_key="sk-bench",
                anthropic_base_url=server.anthropic_base_url,
                routes=build_routes(
                    providers=["openai", "anthropic"], cache_ttl_s={t.value: 0 for t in Task}
                ),
                prices=PriceTable(),
                ledger=store.ledger,
                cache=None,
                timeouts=Timeouts(5, 60, 60),
            )
            inquiries = [
                Inquiry(CHANNEL, str(i), f"u{i % 97}", t, now - timedelta(minutes=i), group=group_key(t))
                for i, (t, _) in enumerate(rows)
            ]
            ours_who = Attribution("bench", "W", "faq", "u", "faq")
            naive_who = Attribution("bench", "W", "faq", "u", "faq-naive")
            result = await FaqWriter(llm=router, store=store).make(inquiries, ours_who, lambda _: None)
            naive_entries = await naive(router, rows, naive_who)
            await router.close()
        records = await store.ledger.records(since=now - timedelta(hours=1))
        await store.close()
    ours = totals([r for r in records if r.feature == "faq"])
    base = totals([r for r in records if r.feature == "faq-naive"])
    ratio = Decimal(base["cost_usd"]) / Decimal(ours["cost_usd"])
    return {
        "benchmark": "faq",
        "data": str(path),
        "inquiries": len(rows),
        "distinct": result.unique,
        "categories": result.categories + len(result.also_asked),
        "ours": {
            **ours,
            "faq_entries": len(result.faqs),
            "categories_written": result.categories,
            # share of the inquiries whose category got FAQ entries (the rest are listed as "also asked")
            "inquiries_covered": round(1 - sum(n for _, n in result.also_asked) / len(rows), 3),
        },
        "naive": {**base, "faq_entries": naive_entries, "inquiries_covered": 1.0},
        "cost_ratio_naive_over_ours": round(float(ratio), 2),
        "token_ratio_naive_over_ours": round(
            (base["input_tokens"] + base["output_tokens"]) / (ours["input_tokens"] + ours["output_tokens"]), 2
        ),
        "calls_ratio_naive_over_ours": round(base["calls"] / ours["calls"], 2),
        # Ours posts a readable FAQ (at most MAX_ENTRIES entries, breadth first); the naive one writes three
        # entries for every category. Per entry written, the gap is what batching and caching alone buy.
        "cost_per_entry_usd": {
            "ours": str((Decimal(ours["cost_usd"]) / max(1, len(result.faqs))).quantize(Decimal("0.000001"))),
            "naive": str((Decimal(base["cost_usd"]) / max(1, naive_entries)).quantize(Decimal("0.000001"))),
        },
        "aim": "at least 5x cheaper",
        "aim_met": ratio >= 5,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else BANKING_SAMPLE)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.data, args.n))))


if __name__ == "__main__":
    main()
