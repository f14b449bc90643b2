"""Benchmark: tokens sent per thread summary against the thread's own token count, and an incremental update
(after new messages) against a full re-summary, on real Ubuntu IRC support threads. Prints one JSON object.

    python -m tests.bench.summary [--data DIR_WITH_*.raw.txt_AND_*.annotation.txt] [--min-messages 20]

Threads are the conversations of the IRC disentanglement annotations (reply-to links, connected components).
Each thread is replayed through the console adapter against the fake model: summary of the first 80 % of its
messages, then an incremental summary after the rest arrive, then (in a second store) a full summary of all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.console import Console, ConsolePlatform
from bot import prompts
from bot.app import App, build_app
from bot.settings import load_settings
from llm.tokens import count_tokens
from tests.fakes.llm_server import FakeLLMServer
from tests.transcripts import FIXTURES, irc_lines

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ubuntu-irc" / "dev"


def _finder(parent: list[int]) -> Callable[[int], int]:
    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    return root


def threads(data: Path, min_messages: int) -> list[list[tuple[str, str]]]:
    """Conversations from every *.annotation.txt beside its *.raw.txt (line-number reply links)."""
    found = []
    for annotation in sorted(data.glob("*.annotation.txt")):
        lines = irc_lines(annotation.with_name(annotation.name.replace(".annotation.", ".raw.")))
        parent = list(range(len(lines)))
        root = _finder(parent)
        for row in annotation.read_text(encoding="utf-8").split("\n"):
            parts = row.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                a, b = int(parts[0]), int(parts[1])
                if a < len(lines) and b < len(lines):
                    parent[root(a)] = root(b)
        groups: dict[int, list[int]] = {}
        for i, spoken in enumerate(lines):
            if spoken is not None:
                groups.setdefault(root(i), []).append(i)
        for members in groups.values():
            convo = [lines[i] for i in sorted(members)]
            messages = [m for m in convo if m is not None]
            if len(messages) >= min_messages:
                found.append(messages)
    return found


async def summarize(app: App, messages: list[tuple[str, str]], *, start: int) -> None:
    """Messages ``start``… of the thread (message i sent at 1000 + i s), then a mention just after the last."""
    console = Console(app, ConsolePlatform(out=io.StringIO()), out=io.StringIO())
    for i, (user, text) in enumerate(messages[start:], start):
        await console.handle(
            channel="ubuntu",
            user=user,
            text=text,
            thread=None if i == 0 else "1000.000000",
            ts=f"{1000 + i}.000000",
        )
    mention_ts = f"{1000 + len(messages) - 0.5:.6f}"
    await console.handle(
        channel="ubuntu", user="asker", text="@bot summarize", thread="1000.000000", ts=mention_ts
    )


async def sent_tokens(app: App, since: datetime) -> int:
    records = await app.store.ledger.records(since=since)
    return sum(r.usage.total_input for r in records)


async def run(data: Path, min_messages: int) -> dict[str, Any]:
    convos = threads(data, min_messages)
    rows = []
    async with FakeLLMServer() as server:
        for n, convo in enumerate(convos):
            own = sum(count_tokens(f"{u}: {t}") for u, t in convo)
            cut = int(len(convo) * 0.8)
            with tempfile.TemporaryDirectory() as tmp:
                keys = {"openai_api_key": "sk-bench", "openai_base_url": server.openai_base_url}
                inc_app = await build_app(load_settings(db=f"{tmp}/a.db", redis_url=None, **keys))
                full_app = await build_app(load_settings(db=f"{tmp}/b.db", redis_url=None, **keys))
                t0 = datetime.now(UTC) - timedelta(seconds=1)
                await summarize(inc_app, convo[:cut], start=0)
                first = await sent_tokens(inc_app, t0)
                t1 = datetime.now(UTC)
                await summarize(inc_app, convo, start=cut)
                incremental = await sent_tokens(inc_app, t1)
                await summarize(full_app, convo, start=0)
                full = await sent_tokens(full_app, t0)
                await inc_app.close()
                await full_app.close()
            rows.append(
                {
                    "thread": n,
                    "messages": len(convo),
                    "thread_tokens": own,
                    "first_summary_sent": first,
                    "full_resummary_sent": full,
                    "incremental_sent": incremental,
                }
            )
    sent_over_own = [r["full_resummary_sent"] / r["thread_tokens"] for r in rows]
    inc_over_full = [r["incremental_sent"] / r["full_resummary_sent"] for r in rows]
    # The system prompt is the same fixed prefix in every call (and prompt-cached): what varies is the rest.
    system = count_tokens(prompts.SUMMARY_SYSTEM)
    inc_over_full_var = [(r["incremental_sent"] - system) / (r["full_resummary_sent"] - system) for r in rows]
    return {
        "benchmark": "summary",
        "data": str(data),
        "threads": len(rows),
        "messages_p50": statistics.median(r["messages"] for r in rows) if rows else 0,
        "sent_over_thread_tokens_p50": round(statistics.median(sent_over_own), 3) if rows else None,
        "sent_over_thread_tokens_max": round(max(sent_over_own), 3) if rows else None,
        "incremental_over_full_p50": round(statistics.median(inc_over_full), 3) if rows else None,
        "incremental_over_full_max": round(max(inc_over_full), 3) if rows else None,
        "system_prompt_tokens": system,
        "incremental_over_full_excluding_system_p50": round(statistics.median(inc_over_full_var), 3)
        if rows
        else None,
        "per_thread": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else FIXTURES / "ubuntu-irc")
    ap.add_argument("--min-messages", type=int, default=20)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.data, args.min_messages))))


if __name__ == "__main__":
    main()
