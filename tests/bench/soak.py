"""Soak bench: ``python -m tests.bench.soak [--mentions 20000]`` prints ONE JSON object.

Many mentions through one process — the console adapter, the assistant, the live reply, the production model router
and the SQLite store — with the in-process provider (tests/fakes/inprocess_llm.py: short answers at once, no
sockets; the response cache is off and every mention is in a thread of its own, so each one makes a model call).
RSS (VmRSS from /proc/self/status, after a garbage collection) is sampled every ``--sample-every`` mentions; the
figure is the slope over the second half (least squares, bytes per mention): the first half includes warm-up
(imports, SQLite's page cache, the allocator's arenas), the second half should be flat.

Time per mention is read the same way: ``slowdown`` is the last sampling interval's ms per mention over the first's.
Near 1 means a mention costs the same however much the store holds; work that grows with history (a query that sums
or scans a growing table) shows as a ratio that climbs with ``--mentions`` (it was 3.8 at 20,000 mentions while the
spike check summed the day's ledger records on every mention). A timing: read it, never assert it.

Alongside the RSS: how many objects made for one mention are still alive at the end (LiveReply, Mention, model
Request), and how many asyncio tasks are left; both must be zero for a process that runs for months.

The console keeps a transcript of everything said and shown (``ConsolePlatform.posted``/``history``,
``Console.replies``): that is the point of a terminal session, not state a server keeps, so it is cleared between
batches unless ``--keep-console-transcript`` is given (then the slope shows the transcript's growth too).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.console import Console, ConsolePlatform
from bot.live_reply import LiveReply
from bot.settings import load_settings
from bot.stores.sqlite import SqliteStore
from bot.types import Mention
from llm.types import Request
from tests.fakes.inprocess_llm import InProcessProvider, inprocess_app

MENTIONS = 20_000
SAMPLE_EVERY = 1_000
# Mentions in flight at once: a busy process serves several; the console's 0.05 s edit floor would otherwise make
# the run mostly sleep.
CONCURRENCY = 25
CHANNELS = 8
USERS = 200
# What "flat" means here: under this many bytes per mention over the second half (20,000 mentions → < 2 MB), within
# the noise of an allocator that returns memory in pages and arenas.
FLAT_BYTES_PER_MENTION = 100.0
PER_MENTION_TYPES: tuple[type, ...] = (LiveReply, Mention, Request)


class _Discard(io.StringIO):
    """Where the console prints: nowhere (a StringIO would keep every reply)."""

    def write(self, text: str) -> int:
        return len(text)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def alive(types: tuple[type, ...]) -> dict[str, int]:
    gc.collect()
    counts = dict.fromkeys((t.__name__ for t in types), 0)
    for obj in gc.get_objects():
        for t in types:
            if type(obj) is t:
                counts[t.__name__] += 1
    return counts


async def run(
    *, mentions: int = MENTIONS, sample_every: int = SAMPLE_EVERY, concurrency: int = CONCURRENCY,
    keep_transcript: bool = False,
) -> dict[str, Any]:  # fmt: skip
    logging.getLogger().setLevel(logging.WARNING)
    sink = _Discard()
    with tempfile.TemporaryDirectory(prefix="supportbot-soak-") as tmp:
        settings = load_settings(
            db=str(Path(tmp) / "bot.db"),
            redis_url=None,
            openai_api_key="sk-inprocess",
            user_requests_per_hour=10**9,  # the soak is one process's worth of traffic, not one person's
        )
        store = await SqliteStore(settings.db).open()
        provider = InProcessProvider(keep_requests=0)
        app = inprocess_app(settings, store, provider, cache=False)
        platform = ConsolePlatform(out=sink)
        console = Console(app, platform, out=sink)
        tasks_before = len(asyncio.all_tasks())

        async def one(i: int) -> None:
            thread = f"{1_700_000_000 + i}.000100"
            channel, user = f"support-{i % CHANNELS}", f"user{i % USERS}"
            await console.handle(
                channel=channel, user=user, text=f"Question {i}: the deploy fails, why?", ts=thread
            )
            await console.handle(
                channel=channel, user=f"user{(i + 1) % USERS}", text="@bot summarize", thread=thread
            )

        samples: list[tuple[int, int]] = [(0, rss_bytes())]
        sampled_at: list[float] = [0.0]
        started = time.perf_counter()
        cpu_started = time.process_time()
        ok = counted = 0
        done = 0
        while done < mentions:
            batch = range(done, min(done + concurrency, mentions))
            await asyncio.gather(*(one(i) for i in batch))
            done = batch.stop
            ok += sum(1 for r in console.replies[counted:] if not r.startswith("⚠️"))
            counted = len(console.replies)
            if not keep_transcript:
                platform.posted.clear()
                platform.history.clear()
                console.replies.clear()
                counted = 0
            if done % sample_every == 0 or done == mentions:
                gc.collect()
                samples.append((done, rss_bytes()))
                sampled_at.append(time.perf_counter() - started)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        leftover_tasks = len(asyncio.all_tasks()) - tasks_before
        registry_left = len(await store.live.stale(older_than_s=0))
        await app.close()
        left_alive = alive(PER_MENTION_TYPES)

    second_half = [p for p in samples if p[0] >= mentions / 2]
    per_mention = slope(second_half)
    # Seconds per mention in the first and the last sampling interval: a per-mention cost that grows with what the
    # store holds shows here (timing: read it, never assert it).
    first_ms, last_ms = ((sampled_at[k] - sampled_at[k - 1]) / (samples[k][0] - samples[k - 1][0]) * 1000
                         for k in (1, len(samples) - 1))  # fmt: skip
    return {
        "bench": "soak",
        "path": "console adapter → assistant → live reply → model router → in-process provider; SQLite store",
        "mentions": mentions,
        "concurrency": concurrency,
        "console_transcript_kept": keep_transcript,
        "model_calls": provider.calls,
        "replies_ok": ok,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "mentions_per_s": round(mentions / seconds, 1) if seconds else None,
        "ms_per_mention_first_interval": round(first_ms, 2),
        "ms_per_mention_last_interval": round(last_ms, 2),
        "slowdown": round(last_ms / first_ms, 2) if first_ms else None,
        "rss_start_mb": round(samples[0][1] / 2**20, 1),
        "rss_end_mb": round(samples[-1][1] / 2**20, 1),
        "rss_peak_sampled_mb": round(max(b for _, b in samples) / 2**20, 1),
        "slope_bytes_per_mention_second_half": round(per_mention, 1),
        "flat": abs(per_mention) < FLAT_BYTES_PER_MENTION,
        "flat_threshold_bytes_per_mention": FLAT_BYTES_PER_MENTION,
        "alive_after": left_alive,
        "tasks_left": leftover_tasks,
        "live_registry_left": registry_left,
        "rss_samples_mb": [[i, round(b / 2**20, 2)] for i, b in samples],
        "sampled_at_s": [round(t, 1) for t in sampled_at],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak")
    parser.add_argument("--mentions", type=int, default=MENTIONS)
    parser.add_argument("--sample-every", type=int, default=SAMPLE_EVERY)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--keep-console-transcript", action="store_true")
    args = parser.parse_args(argv)
    if args.mentions < 1 or args.sample_every < 1 or args.concurrency < 1:
        parser.error("--mentions, --sample-every and --concurrency must be at least 1")
    result = asyncio.run(
        run(
            mentions=args.mentions,
            sample_every=args.sample_every,
            concurrency=args.concurrency,
            keep_transcript=args.keep_console_transcript,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
