"""Measurement code shared by the streaming benches (Slack: stream_slack.py; Discord can add stream_discord.py).

A platform half supplies, per reply, when its mention was sent, when each model piece left the fake model, and
every visible version of the reply's message(s) with its time; this module turns those into the figures the
bench prints, and runs code in child processes so the bot's CPU and memory are measured apart from the fakes.

All times are ``time.monotonic()`` values: CLOCK_MONOTONIC is shared by every process on the machine, so times
taken by the fakes' process and by the bot's process can be compared directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The fake model's pacing the issue asks for: 0.4 s to the first token, then 50 tokens per second.
TTFT_S = 0.4
TOKENS_PER_S = 50.0
# The naive strategy other Slack bots use: edit after every 20 chunks, no pacing.
BASELINE_EVERY_CHUNKS = 20
# A piece that never became visible is infinitely stale; JSON has no infinity, so percentiles print "never".
NEVER = float("inf")


@dataclass
class ReplyTrace:
    """What one reply looked like from outside the bot."""

    event_at: float  # the mention left the fake platform
    model_text: str  # what the model sent
    piece_ends: list[int]  # cumulative length of the model text after each piece
    piece_times: list[float]  # when each piece left the model
    versions: list[tuple[float, str]]  # (time, visible model text) for every version, in order
    edits: int  # edit calls that landed (updates / appends)
    final_text: str  # the visible model text at the end
    first_version_at: float | None  # the placeholder (or first message) appeared


@dataclass
class ReplyFigures:
    to_placeholder_s: float | None
    to_first_text_s: float | None
    staleness_s: list[float] = field(default_factory=list)  # per model piece that became visible
    never_visible: int = 0  # model pieces that were never shown
    staleness_counting_lost_s: list[float] = field(default_factory=list)  # lost pieces count as NEVER
    first_text_after_first_token_s: float | None = None
    edits: int = 0
    final_ok: bool = False


def common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def figures(trace: ReplyTrace) -> ReplyFigures:
    shown = [(at, common_prefix_len(text, trace.model_text)) for at, text in trace.versions]
    first_text = next((at for at, n in shown if n > 0), None)
    staleness: list[float] = []
    counting_lost: list[float] = []
    never = 0
    j = 0
    for end, left_at in zip(trace.piece_ends, trace.piece_times, strict=True):
        while j < len(shown) and shown[j][1] < end:
            j += 1
        if j == len(shown):
            never += 1
            counting_lost.append(NEVER)
        else:
            # A version can land before the scheduled send time only by clock noise; clamp at 0.
            staleness.append(max(0.0, shown[j][0] - left_at))
            counting_lost.append(staleness[-1])
    return ReplyFigures(
        to_placeholder_s=None if trace.first_version_at is None else trace.first_version_at - trace.event_at,
        to_first_text_s=None if first_text is None else first_text - trace.event_at,
        staleness_s=staleness,
        never_visible=never,
        staleness_counting_lost_s=counting_lost,
        first_text_after_first_token_s=(
            None if first_text is None or not trace.piece_times else first_text - trace.piece_times[0]
        ),
        edits=trace.edits,
        final_ok=trace.final_text == trace.model_text,
    )


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _r(value: float | None, digits: int = 3) -> float | str | None:
    if value == NEVER:
        return "never"
    return None if value is None else round(value, digits)


def aggregate(
    replies: list[ReplyFigures], *, rate_limited: int, cpu_s: float, peak_rss_mb: float
) -> dict[str, Any]:
    placeholder = [f.to_placeholder_s for f in replies if f.to_placeholder_s is not None]
    first_text = [f.to_first_text_s for f in replies if f.to_first_text_s is not None]
    stale = [s for f in replies for s in f.staleness_s]
    stale_all = [s for f in replies for s in f.staleness_counting_lost_s]
    after_token = [
        f.first_text_after_first_token_s for f in replies if f.first_text_after_first_token_s is not None
    ]
    return {
        "replies": len(replies),
        "to_placeholder_s": {"p50": _r(percentile(placeholder, 50)), "p95": _r(percentile(placeholder, 95))},
        "to_first_text_s": {"p50": _r(percentile(first_text, 50)), "p95": _r(percentile(first_text, 95))},
        "first_text_after_first_token_s": {
            "p50": _r(percentile(after_token, 50)),
            "p95": _r(percentile(after_token, 95)),
        },
        "staleness_s": {"p50": _r(percentile(stale, 50)), "p95": _r(percentile(stale, 95))},
        # The same with pieces never shown counted as infinitely stale ("never" once they pass the percentile).
        "staleness_counting_lost_s": {
            "p50": _r(percentile(stale_all, 50)),
            "p95": _r(percentile(stale_all, 95)),
        },
        "pieces_never_visible": sum(f.never_visible for f in replies),
        "edits_per_reply": _r(sum(f.edits for f in replies) / len(replies), 2) if replies else None,
        "rate_limited_429": rate_limited,
        "final_text_ok": sum(f.final_ok for f in replies),
        "final_text_wrong_or_lost": sum(not f.final_ok for f in replies),
        "bot_cpu_s": round(cpu_s, 3),
        "bot_peak_rss_mb": round(peak_rss_mb, 1),
    }


def ratios(ours: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """ours / baseline for the figures where lower is better."""

    def pick(d: dict[str, Any], path: str) -> float | None:
        value = _at(d, path)
        return float(value) if isinstance(value, int | float) else None

    out: dict[str, float | None] = {}
    for path in (
        "to_first_text_s.p95",
        "staleness_s.p50",
        "staleness_s.p95",
        "staleness_counting_lost_s.p95",
        "edits_per_reply",
        "rate_limited_429",
        "bot_cpu_s",
        "bot_peak_rss_mb",
    ):
        a, b = pick(ours, path), pick(baseline, path)
        if a is not None and b is None and _at(baseline, path) == "never":
            out[path] = 0.0  # ours became visible; the baseline's never did
            continue
        out[path] = None if a is None or b is None or b == 0 else round(a / b, 3)
    return out


def _at(d: dict[str, Any], path: str) -> Any:
    value: Any = d
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


# ---- the bot's own resources -----------------------------------------------------------------------------------


class Usage:
    """CPU seconds (user + system) spent between start() and stop(), and the process's peak RSS."""

    def __init__(self) -> None:
        self._cpu0 = 0.0

    @staticmethod
    def _cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    def start(self) -> None:
        self._cpu0 = self._cpu()

    def stop(self) -> tuple[float, float]:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return self._cpu() - self._cpu0, peak_kib / 1024


# ---- child processes -------------------------------------------------------------------------------------------


class Child:
    """A function run in a fresh ("spawn") process, talking over a pipe: send() a request, recv() the answer."""

    def __init__(
        self, target: Callable[[multiprocessing.connection.Connection, Any], None], arg: Any
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._proc = ctx.Process(target=target, args=(child_end, arg), daemon=True)
        self._proc.start()

    def ask(self, request: Any, *, timeout: float = 240.0) -> Any:
        self._conn.send(request)
        return self.recv(timeout=timeout)

    def recv(self, *, timeout: float = 240.0) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError("child process did not answer")
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        try:
            self._conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


def elapsed_since(start: float) -> float:
    return round(time.monotonic() - start, 1)


def model_text(words: int, *, stem: str = "point") -> str:
    # Plain words: the rendered text equals the model text on every platform, so "final == model text" is exact.
    return "Summary: " + " ".join(f"{stem}{i}" for i in range(words)) + "."


def channel_of(k: int, channels: int) -> str:
    return f"C{k % channels:02d}"


def fake_model(words: int, *, stem: str = "point") -> Any:
    """The bench's fake model server: always the same answer of ``words`` words, at TTFT_S and TOKENS_PER_S."""
    from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder

    text = model_text(words, stem=stem)

    def responder(request: ReceivedRequest) -> FakeReply:
        return default_responder(request) if request.structured else FakeReply(text)

    return FakeLLMServer(responder=responder, ttft_s=TTFT_S, tokens_per_s=TOKENS_PER_S)


def bot_main(conn: multiprocessing.connection.Connection, arg: tuple[str, Any, dict[str, str]]) -> None:
    """Process 2 of a streaming bench: runs ``_bot(conn, spec, urls)`` of the platform half named by ``arg``."""
    module, spec, urls = arg
    logging.basicConfig(level=logging.ERROR, format="%(relativeCreated)8.0f %(name)s %(message)s")
    for name in filter(None, os.environ.get("BENCH_DEBUG_LOGGERS", "").split(",")):  # e.g. adapters.slack
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        asyncio.run(importlib.import_module(module)._bot(conn, spec, urls))
    except BaseException as exc:  # the orchestrator must hear about it rather than time out
        with contextlib.suppress(Exception):
            conn.send(RuntimeError(f"bot process failed: {exc!r}"))
        raise
