"""Benchmark: what the llm/ layer (routing, timeouts, accounting, ledger write, response-cache lookup) adds on top
of calling the raw SDK, against the same fake server in the same run. Prints one JSON object.

    python -m tests.bench.llm_overhead [--calls 120] [--words 300]

The fake server runs in its own process, so the figures are the client side's. Calls alternate between the raw
SDK and the router (ABAB…) so machine noise hits both alike; results are ratios, not absolute times.
Two regimes: unpaced (the server answers as fast as it can: the layer's CPU cost is most visible) and paced at
a realistic speed (what a user would feel).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import anthropic
import openai

from bot.stores.sqlite import SqliteStore
from llm import PriceTable, Timeouts, create_router
from llm.routes import Route, RouteEntry
from llm.types import Attribution, Request, Task

WHO = Attribution("bench", "W", "C", "U", "summary")


def _serve(conn: Connection, words: int, tokens_per_s: float | None, ttft_s: float) -> None:
    from tests.fakes.llm_server import FakeLLMServer, FakeReply

    text = " ".join(f"word{i % 50}" for i in range(words))

    async def main() -> None:
        async with FakeLLMServer(
            responder=lambda req: FakeReply(text), tokens_per_s=tokens_per_s, ttft_s=ttft_s
        ) as s:
            conn.send((s.openai_base_url, s.anthropic_base_url))
            await asyncio.Event().wait()

    asyncio.run(main())


async def _raw_openai(client: openai.AsyncOpenAI, model: str, prompt: str) -> int:
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Summarize."}, {"role": "user", "content": prompt}],
        max_tokens=1000,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
    return len(parts)


async def _raw_anthropic(client: anthropic.AsyncAnthropic, model: str, prompt: str) -> int:
    stream = await client.messages.create(
        model=model,
        system="Summarize.",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=1000,
        stream=True,
    )
    parts = []
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            parts.append(event.delta.text)
    return len(parts)


async def _measure(urls: tuple[str, str], calls: int, db_path: str) -> dict[str, Any]:
    store = await SqliteStore(db_path).open()
    results = {
        provider: await _measure_provider(provider, model, urls, calls, store)
        for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))
    }
    await store.close()
    return results


async def _measure_provider(
    provider: str, model: str, urls: tuple[str, str], calls: int, store: SqliteStore
) -> dict[str, Any]:
    openai_url, anthropic_url = urls
    route = {
        Task.SUMMARIZE: Route(Task.SUMMARIZE, (RouteEntry(provider, model, 1000, None),), cache_ttl_s=3600)
    }
    router = create_router(
        openai_api_key="sk-bench",
        openai_base_url=openai_url,
        anthropic_api_key="sk-bench",
        anthropic_base_url=anthropic_url,
        routes=route,
        prices=PriceTable(),
        ledger=store.ledger,
        cache=store.kv,
        timeouts=Timeouts(connect_s=5, first_token_s=30, idle_s=30),
        max_retries=0,
        base_url_is_provider=True,  # price every call at list prices, as against the real provider
    )
    raw_client: Any = (
        openai.AsyncOpenAI(api_key="sk-bench", base_url=openai_url, max_retries=0)
        if provider == "openai"
        else anthropic.AsyncAnthropic(api_key="sk-bench", base_url=anthropic_url, max_retries=0)
    )
    raw_call = _raw_openai if provider == "openai" else _raw_anthropic

    async def raw(prompt: str) -> int:
        return await raw_call(raw_client, model, prompt)

    async def ours(prompt: str) -> int:
        n = 0
        async for c in router.stream(Task.SUMMARIZE, Request.of("Summarize.", prompt), bill_to=WHO):
            n += bool(c.text)
        return n

    samples: dict[str, list[float]] = {"raw": [], "ours": []}
    cpu: dict[str, float] = {"raw": 0.0, "ours": 0.0}
    tokens = 0
    # Warm-up: connections, imports, tiktoken, SQLite pages.
    await raw("warm up")
    await ours("warm up")
    for i in range(calls):
        # Unique prompts: every router call misses the response cache, so the lookup cost is always paid.
        for name, fn in (("raw", raw), ("ours", ours))[:: 1 if i % 2 else -1]:
            prompt = f"thread {i} {name}: the build fails on arm64 after the upgrade"
            c0, t0 = time.process_time(), time.perf_counter()
            n = await fn(prompt)
            samples[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
            tokens += n if name == "ours" else 0
    await router.close()
    await raw_client.close()
    per_token = tokens / calls
    raw_ms = statistics.median(samples["raw"]) * 1000
    ours_ms = statistics.median(samples["ours"]) * 1000
    return {
        "calls": calls,
        "tokens_per_call": round(per_token, 1),
        "raw_ms_per_call_p50": round(raw_ms, 3),
        "ours_ms_per_call_p50": round(ours_ms, 3),
        "wall_ratio_p50": round(ours_ms / raw_ms, 4),
        "raw_cpu_ms_per_call": round(cpu["raw"] / calls * 1000, 3),
        "ours_cpu_ms_per_call": round(cpu["ours"] / calls * 1000, 3),
        "cpu_ratio": round(cpu["ours"] / cpu["raw"], 4),
        "overhead_ms_per_call": round(ours_ms - raw_ms, 3),
        "overhead_us_per_token": round((ours_ms - raw_ms) * 1000 / per_token, 3) if per_token else None,
    }


def _run_regime(calls: int, words: int, tokens_per_s: float | None, ttft_s: float) -> dict[str, Any]:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_serve, args=(child, words, tokens_per_s, ttft_s), daemon=True
    )
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("fake LLM server did not start")
        urls = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            return asyncio.run(_measure(urls, calls, os.path.join(tmp, "bench.db")))
    finally:
        proc.terminate()
        proc.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=120)
    ap.add_argument("--words", type=int, default=300, help="reply length in pieces (≈ tokens)")
    ap.add_argument("--paced-calls", type=int, default=6)
    args = ap.parse_args()
    unpaced = _run_regime(args.calls, args.words, None, 0.0)
    # Realistic: 0.4 s to first token, 50 tokens/s (as in the streaming benchmarks), fewer calls.
    paced = _run_regime(args.paced_calls, min(args.words, 100), 50.0, 0.4)
    worst = max(v["wall_ratio_p50"] for v in unpaced.values())
    print(
        json.dumps(
            {
                "benchmark": "llm_overhead",
                "unpaced": unpaced,
                "paced_50_tokens_per_s": paced,
                "worst_unpaced_wall_ratio": worst,
                "aim": "ours/raw wall time per streamed call < 1.10",
                "aim_met": worst < 1.10,
            }
        )
    )


if __name__ == "__main__":
    main()
