"""Streaming benchmark, Discord half: how fresh streamed summaries look under Discord's edit buckets.

The real discord.py client (through adapters/discord.py) runs against the fake Discord over real sockets, with the
fake's edit bucket at 5 edits per 5 s per channel; the model is the fake LLM server at 0.4 s to the first token and
50 tokens/s. For N=1 and N=20 concurrent mentions over 5 channels it measures, per reply, mention event →
placeholder, → first model text, how stale the visible text was each time it changed, edits per reply, 429s and
whether the final text equals the model text; plus CPU seconds and peak traced memory of the whole process (the
fakes run in it too, alike for both sides).

The baseline replaces only the live reply with how llmcord streams (llmcord.py: ``EDIT_DELAY_SECONDS = 1`` and a
module-global ``last_task_time``): it posts when the first text arrives, and on each chunk edits only if its
previous edit finished and a second has passed since the last edit of *any* reply in the process; the final edit
is awaited. Everything else (adapter, discord.py, store, model) is the same.

    python -m tests.bench.stream --platform discord [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import bot.assistant
from adapters.discord import DiscordAdapter
from adapters.discord_render import scope_header
from bot.app import build_app
from bot.live_reply import WRITING_MARKER, LiveReply, ReplyStats
from bot.ports import ChatPlatform
from bot.safety import defang_mass_mentions
from bot.settings import Settings
from bot.types import ChannelRef, MessageRef, PlatformRateLimited
from llm.tokens import count_tokens
from tests.fakes.discord_api import FakeDiscord, RateLimitConfig, discord_py_pointed_at
from tests.fakes.discord_ratelimit import BucketRule
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest

# Offline token counting, as in tests/conftest.py: without it tiktoken tries the network before each first count.
_TIKTOKEN_CACHE = Path(__file__).parents[2] / ".." / "shared" / "tiktoken"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _TIKTOKEN_CACHE.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_TIKTOKEN_CACHE.resolve())

CHANNELS = 5
EDIT_BUCKET = BucketRule(5, 5.0)  # the figure: 5 edits per 5 s per channel
TTFT_S = 0.4
TOKENS_PER_S = 50.0
WORDS = 250  # ~5 s of streaming at 50 tokens/s, ~1,700 characters: one Discord message
QUICK_WORDS = 100
BASELINE_EDIT_DELAY_S = 1.0  # llmcord's EDIT_DELAY_SECONDS
GUILD_READY_TIMEOUT = 0.05
RUN_TIMEOUT_S = 120.0


def model_text(words: int) -> str:
    return "Summary: " + " ".join(f"word{i}" for i in range(words)) + "."


# ---- the baseline live reply -------------------------------------------------------------------------------------


class _GlobalPace:
    last_edit_at = float("-inf")  # llmcord: one module-global last_task_time for every reply


class BaselineReply:
    """The subset of LiveReply the Assistant uses, streaming the way llmcord does (see module docstring)."""

    def __init__(
        self,
        platform: ChatPlatform,
        channel: ChannelRef,
        *,
        thread_id: str | None = None,
        pacer: object = None,
    ) -> None:
        self._platform, self._channel, self._thread_id = platform, channel, thread_id
        self._text = ""
        self._ref: MessageRef | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrivals: list[int] = []
        self._arrival_times: list[float] = []
        self._visible = 0
        self.stats = ReplyStats()

    @property
    def refs(self) -> list[MessageRef]:
        return [self._ref] if self._ref else []

    @property
    def text(self) -> str:
        return self._text

    async def start(self, placeholder: str = "") -> MessageRef | None:
        return None  # llmcord posts nothing until the model's first text arrives

    def set_status(self, text: str | None) -> None:
        pass

    def append(self, delta: str) -> None:
        if not delta:
            return
        self._text += delta
        self._arrivals.append(len(self._text))
        self._arrival_times.append(time.monotonic())
        if self._task is not None and not self._task.done():
            return
        now = time.monotonic()
        if self._ref is None:
            self._task = asyncio.create_task(self._write(self._text + WRITING_MARKER, len(self._text)))
        elif now - _GlobalPace.last_edit_at >= BASELINE_EDIT_DELAY_S:
            _GlobalPace.last_edit_at = now
            self._task = asyncio.create_task(self._write(self._text + WRITING_MARKER, len(self._text)))

    async def finish(self) -> list[MessageRef]:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        final = defang_mass_mentions(self._text)
        while True:
            try:
                await self._write(final, len(self._text), raise_429=True)
                break
            except PlatformRateLimited as e:
                await asyncio.sleep(e.retry_after_s)
        self.stats.completed = True
        self.stats.finished_at = time.monotonic()
        return self.refs

    async def fail(self, reason: str) -> list[MessageRef]:
        self._text += f"\n\n⚠️ Stopped: {reason}"
        return await self.finish()

    async def _write(self, text: str, visible: int, *, raise_429: bool = False) -> None:
        try:
            if self._ref is None:
                self._ref = await self._platform.post(
                    self._channel, defang_mass_mentions(text), thread_id=self._thread_id
                )
                self.stats.posted_at = time.monotonic()
                self.stats.parts = 1
            else:
                await self._platform.edit(self._ref, defang_mass_mentions(text))
                self.stats.edits += 1
        except PlatformRateLimited:
            self.stats.rate_limited += 1
            if raise_429:
                raise
            return
        now = time.monotonic()
        if visible > self._visible:
            if self.stats.first_text_at is None:
                self.stats.first_text_at = now
            first = bisect.bisect_right(self._arrivals, self._visible)
            if first < len(self._arrivals):
                self.stats.staleness.append(now - self._arrival_times[first])
            self._visible = visible


# ---- one scenario ----------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    mode: str  # ours | baseline
    replies: int
    words: int
    replies_made: list[Any] = field(default_factory=list)


@contextmanager
def live_reply_class(factory: Callable[..., Any]) -> Iterator[None]:
    saved = bot.assistant.LiveReply
    bot.assistant.LiveReply = factory  # type: ignore[misc]
    try:
        yield
    finally:
        bot.assistant.LiveReply = saved  # type: ignore[misc]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def _dist(values: list[float]) -> dict[str, float | None]:
    return {"p50": _pct(values, 50), "p95": _pct(values, 95)}


async def run_scenario(scenario: Scenario, workdir: Path) -> dict[str, Any]:
    text = model_text(scenario.words)

    def responder(request: ReceivedRequest) -> FakeReply:
        return FakeReply(text)

    made: list[Any] = scenario.replies_made
    base_cls: Any = LiveReply if scenario.mode == "ours" else BaselineReply

    def factory(*args: Any, **kwargs: Any) -> Any:
        reply = base_cls(*args, **kwargs)
        made.append(reply)
        return reply

    _GlobalPace.last_edit_at = float("-inf")
    limits = RateLimitConfig(edit_message=EDIT_BUCKET)
    async with (
        FakeDiscord(rate_limits=limits) as fake,
        FakeLLMServer(responder=responder, ttft_s=TTFT_S, tokens_per_s=TOKENS_PER_S) as llm,
    ):
        guild = fake.add_guild(name="bench")
        channels = [fake.add_text_channel(guild, name=f"help-{i}") for i in range(CHANNELS)]
        users = [fake.add_member(guild, username=f"user{i}") for i in range(scenario.replies)]
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=llm.openai_base_url,
            anthropic_api_key=None,
            db=str(workdir / f"{scenario.mode}-{scenario.replies}.db"),
            discord_token=SecretStr(fake.token),
        )
        app = await build_app(settings)
        adapter = DiscordAdapter(app, client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT})
        with discord_py_pointed_at(fake), live_reply_class(factory):
            task = asyncio.create_task(adapter.run(fake.token))
            try:
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    await adapter.ready.wait()
                    served_429_before = fake.served_429
                    cpu0 = time.process_time()
                    tracemalloc.start()
                    events: dict[str, float] = {}
                    for i in range(scenario.replies):
                        events_at = time.monotonic()
                        msg = await fake.user_message(
                            channels[i % CHANNELS],
                            author_id=users[i],
                            content=f"<@{fake.bot_user_id}> fresh summary please",
                        )
                        events[str(msg["id"])] = events_at
                    while len(made) < scenario.replies or any(r.stats.finished_at is None for r in made):
                        await asyncio.sleep(0.05)
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                    cpu = time.process_time() - cpu0
            finally:
                await adapter.close()
                await task
                await app.close()
        expected = scope_header("channel") + defang_mass_mentions(text)
        finals_ok = all(
            len(r.refs) == 1 and fake.versions(int(r.refs[0].message_id))[-1] == expected for r in made
        )
        to_placeholder = [r.stats.posted_at - events[r._thread_id] for r in made if r.stats.posted_at]
        to_text = [r.stats.first_text_at - events[r._thread_id] for r in made if r.stats.first_text_at]
        staleness = [s for r in made for s in r.stats.staleness]
        return {
            "replies": scenario.replies,
            "channels": min(CHANNELS, scenario.replies),
            "event_to_placeholder_s": _dist(to_placeholder),
            "event_to_first_text_s": _dist(to_text),
            "staleness_s": _dist(staleness),
            "edits_per_reply": round(sum(r.stats.edits for r in made) / len(made), 2),
            "http_429": fake.served_429 - served_429_before,
            "final_text_equals_model_text": finals_ok,
            "cpu_s": round(cpu, 3),
            "peak_traced_mem_mb": round(peak / 1e6, 2),
        }


def _ratio(ours: float | None, base: float | None) -> float | None:
    if ours is None or base is None or base == 0:
        return None
    return round(ours / base, 3)


async def run(*, quick: bool = False) -> dict[str, Any]:
    words = QUICK_WORDS if quick else WORDS
    started = time.monotonic()
    out: dict[str, Any] = {
        "platform": "discord",
        "quick": quick,
        "setup": {
            "channels": CHANNELS,
            "edit_bucket": f"{EDIT_BUCKET.limit} per {EDIT_BUCKET.window_s:g} s per channel",
            "model_ttft_s": TTFT_S,
            "model_tokens_per_s": TOKENS_PER_S,
            "model_pieces": words + 2,
            "baseline": "llmcord: edit at most once per second per reply, one global last-edit time",
        },
        "ours": {},
        "baseline": {},
        "ratios_ours_over_baseline": {},
    }
    count_tokens("warm up")  # loads the tokenizer once, outside every measured run
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 20):
            for mode in ("ours", "baseline"):
                out[mode][f"n{n}"] = await run_scenario(Scenario(mode, n, words), Path(tmp))
            ours, base = out["ours"][f"n{n}"], out["baseline"][f"n{n}"]
            out["ratios_ours_over_baseline"][f"n{n}"] = {
                "event_to_placeholder_p50": _ratio(
                    ours["event_to_placeholder_s"]["p50"], base["event_to_placeholder_s"]["p50"]
                ),
                "event_to_first_text_p50": _ratio(
                    ours["event_to_first_text_s"]["p50"], base["event_to_first_text_s"]["p50"]
                ),
                "staleness_p50": _ratio(ours["staleness_s"]["p50"], base["staleness_s"]["p50"]),
                "staleness_p95": _ratio(ours["staleness_s"]["p95"], base["staleness_s"]["p95"]),
                "edits_per_reply": _ratio(ours["edits_per_reply"], base["edits_per_reply"]),
                "cpu_s": _ratio(ours["cpu_s"], base["cpu_s"]),
            }
    out["wall_s"] = round(time.monotonic() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter model answers")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(quick=args.quick))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
