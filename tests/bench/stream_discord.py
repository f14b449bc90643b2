"""The Discord half of ``python -m tests.bench.stream --platform discord``.

Three processes per run, as for Slack (stream_slack.py), so the bot's CPU and memory are its own: the fakes
(FakeDiscord with its edit bucket at 5 edits per 5 s per channel, and the fake model at 0.4 s to first token and
50 tokens/s, which also dispatches the mentions over the gateway), the bot under test (the real discord.py client
in adapters/discord/run.py), and this orchestrator. Every figure comes from what the fakes saw, with times: each
version of each reply as Discord stored it, and each model piece as it left the model (stream_common.py).

Each mention replies to a message of its own in one of the channels, so each summary covers a small reply chain
of its own while all replies of a channel share the channel's edit bucket.

Variants: ``ours`` is the adapter with LiveReply and its channel pacer (the first message waits up to
FIRST_POST_GRACE_S for the model's first text while the typing indicator shows, so ``to_placeholder_s`` is the
first message, usually already carrying text). ``baseline`` swaps only the live reply for
how llmcord streams (llmcord.py: ``EDIT_DELAY_SECONDS = 1`` and a module-global ``last_task_time``): it posts when
the first text arrives, then on each chunk edits only if its previous edit finished and a second has passed since
the last edit of *any* reply; the final edit is awaited. discord.py's bucket handling is underneath both.
"""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing.connection
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.discord.platform import DiscordPlatform
from bot.live_reply import WRITING_MARKER, ReplyStats
from bot.ports import ChatPlatform
from bot.safety import defang_mass_mentions
from bot.types import ChannelRef, MessageRef, PlatformRateLimited
from tests.bench.stream_common import (
    TOKENS_PER_S,
    TTFT_S,
    Child,
    ReplyTrace,
    Usage,
    aggregate,
    bot_main,
    fake_model,
    figures,
    model_text,
    ratios,
)

EDIT_BUCKET = (5, 5.0)  # the figure: 5 edits per 5 s per channel
BASELINE_EDIT_DELAY_S = 1.0  # llmcord's EDIT_DELAY_SECONDS
GUILD_READY_TIMEOUT = 0.05  # discord.py's wait after the last GUILD_CREATE (default 2 s)
HEADER = "-# Summary of this reply chain\n"  # adapters/discord_render.SCOPE_HEADERS["reply chain"]


@dataclass(frozen=True)
class RunSpec:
    variant: str  # "ours" or "baseline"
    mentions: int
    channels: int
    words: int



def tag(k: int) -> str:
    return f"chain-{k:03d}"


# ---- the baseline live reply (runs in the bot process) ---------------------------------------------------------


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
    def unreachable(self) -> bool:
        return False  # the bench's channels always exist

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
                await self._write(final, len(self._text), final=True)
                break
            except PlatformRateLimited as e:
                await asyncio.sleep(e.retry_after_s)
        self.stats.completed = True
        self.stats.finished_at = time.monotonic()
        return self.refs

    async def fail(self, reason: str) -> list[MessageRef]:
        self._text += f"\n\n⚠️ Stopped: {reason}"
        return await self.finish()

    async def _write(self, text: str, visible: int, *, final: bool = False) -> None:
        """Post or edit; only the final text raises on a 429 (the caller retries it)."""
        try:
            if self._ref is None:
                self._ref = await self._platform.post(
                    self._channel, defang_mass_mentions(text), thread_id=self._thread_id
                )
                self.stats.posted_at = time.monotonic()
                self.stats.parts = 1
            else:
                await self._platform.edit(self._ref, defang_mass_mentions(text), final=final)
                self.stats.edits += 1
        except PlatformRateLimited:
            self.stats.rate_limited += 1
            if final:
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


# ---- process 1: the fakes --------------------------------------------------------------------------------------


def fakes_main(conn: multiprocessing.connection.Connection, spec: RunSpec) -> None:
    asyncio.run(_fakes(conn, spec))


async def _fakes(conn: multiprocessing.connection.Connection, spec: RunSpec) -> None:
    from tests.fakes.discord_api import FakeDiscord, RateLimitConfig
    from tests.fakes.discord_ratelimit import BucketRule

    loop = asyncio.get_running_loop()
    limits = RateLimitConfig(edit_message=BucketRule(*EDIT_BUCKET))
    async with (
        FakeDiscord(rate_limits=limits) as fake,
        fake_model(spec.words) as llm,
    ):
        written_at: list[float] = []  # time of each fake.writes entry, same index
        record_write = fake.record_write

        def timed_record_write(kind: str, message: Any, body: Any) -> None:
            record_write(kind, message, body)
            written_at.append(time.monotonic())

        fake.record_write = timed_record_write  # type: ignore[method-assign]
        guild = fake.add_guild(name="bench")
        channels = [fake.add_text_channel(guild, name=f"help-{c}") for c in range(spec.channels)]
        user = fake.add_member(guild, username="ada")
        conn.send({"token": fake.token, "api": fake.api_base, "gateway": str(fake.gateway_url),
                   "llm_url": llm.openai_base_url})
        roots: dict[int, int] = {}
        mentions: dict[int, int] = {}
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if request[0] == "stop":
                return
            if request[0] == "seed":  # the messages the mentions reply to; the bot records them as they come
                for k in range(spec.mentions):
                    root = await fake.user_message(channels[k % spec.channels], author_id=user,
                                                   content=f"{tag(k)} the export keeps failing")
                    roots[k] = int(root["id"])
                conn.send("seeded")
            if request[0] == "deliver":
                sent = []
                for k in range(spec.mentions):
                    at = time.monotonic()
                    m = await fake.user_message(channels[k % spec.channels], author_id=user,
                                                content=f"<@{fake.bot_user_id}> fresh summary please",
                                                reply_to=roots[k])
                    mentions[k] = int(m["id"])
                    sent.append((k, at))
                conn.send(sent)
            if request[0] == "collect":
                conn.send(_collect(fake, llm, spec, written_at, mentions))


def _collect(fake: Any, llm: Any, spec: RunSpec, written_at: list[float], mentions: dict[int, int]) -> dict[str, Any]:
    from tests.fakes.llm_wire import split_pieces

    pieces = split_pieces(model_text(spec.words))
    ends = [sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces))]
    gap = 1.0 / TOKENS_PER_S
    starts: dict[int, float] = {}
    for rec in llm.received:
        for k in range(spec.mentions):
            if not rec.structured and f"{tag(k)} " in rec.user_text and k not in starts:
                starts[k] = rec.at
    replies: dict[int, dict[str, Any]] = {}
    for k, mention_id in mentions.items():
        creates = [w.message_id for w in fake.writes if w.kind == "create"
                   and str((w.body.get("message_reference") or {}).get("message_id")) == str(mention_id)]
        ids = set(creates)
        versions = [(written_at[i], w.content or "", w.kind) for i, w in enumerate(fake.writes)
                    if w.message_id in ids and w.kind in ("create", "edit")]
        replies[k] = {
            "versions": sorted(versions),
            "final": "".join((fake.versions(m)[-1] or "").removeprefix(HEADER) for m in creates),
            "piece_ends": ends if k in starts else [],
            "piece_times": [starts[k] + TTFT_S + i * gap for i in range(len(pieces))] if k in starts else [],
        }
    return {"replies": replies, "rate_limited": fake.served_429, "end_at": time.monotonic()}


# ---- process 2: the bot ----------------------------------------------------------------------------------------


async def _bot(conn: multiprocessing.connection.Connection, spec: RunSpec, urls: dict[str, str]) -> None:
    from pydantic import SecretStr

    import bot.assistant
    from adapters.discord.endpoints import point_discord_py
    from adapters.discord.run import DiscordAdapter
    from bot.app import build_app
    from bot.settings import Settings
    from llm.tokens import count_tokens

    count_tokens("warm up")  # load the tokenizer before anything is measured
    if spec.variant == "baseline":
        bot.assistant.LiveReply = BaselineReply  # type: ignore[misc,assignment]
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(openai_api_key=SecretStr("x"), openai_base_url=urls["llm_url"], anthropic_api_key=None,
                            discord_token=SecretStr(urls["token"]), discord_api_url=urls["api"],
                            discord_gateway_url=urls["gateway"], db=str(Path(tmp) / "bench.db"))
        app = await build_app(settings)
        point_discord_py(settings)
        adapter = DiscordAdapter(app, client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT})
        task = asyncio.create_task(adapter.run(urls["token"]))
        await adapter.ready.wait()
        usage = Usage()
        usage.start()
        conn.send("ready")
        request = await loop.run_in_executor(None, conn.recv)
        assert request[0] == "drain"
        await _idle(adapter)
        cpu_s, rss_mb = usage.stop()
        conn.send({"cpu_s": cpu_s, "peak_rss_mb": rss_mb})
        await loop.run_in_executor(None, conn.recv)  # "stop"
        await adapter.close()
        await task
        await app.close()


async def _idle(adapter: Any) -> None:
    """Until every mention's reply is final: the events have arrived and the adapter's work is done."""
    await asyncio.sleep(1.0)
    await adapter.idle()


# ---- process 3: the orchestrator -------------------------------------------------------------------------------


def run_one(spec: RunSpec) -> dict[str, Any]:
    fakes = Child(fakes_main, spec)
    bot: Child | None = None
    try:
        urls = fakes.recv()
        bot = Child(bot_main, (__name__, spec, urls))
        assert bot.recv() == "ready"
        fakes.ask(("seed",))
        sent = fakes.ask(("deliver",))
        resources = bot.ask(("drain",))
        data = fakes.ask(("collect",))
    finally:
        if bot is not None:
            bot.close()
        fakes.close()
    text = model_text(spec.words)
    event_at = dict(sent)
    traces = []
    # stream_common.py is the Slack helper's and still moving: pass end_at only while ReplyTrace takes it.
    extra = {"end_at": data["end_at"]} if "end_at" in ReplyTrace.__dataclass_fields__ else {}
    for k, reply in data["replies"].items():
        versions = [(at, body.removeprefix(HEADER).removesuffix(WRITING_MARKER)) for at, body, _ in reply["versions"]]
        traces.append(
            ReplyTrace(
                event_at=event_at[k],
                model_text=text,
                piece_ends=reply["piece_ends"],
                piece_times=reply["piece_times"],
                versions=versions,
                edits=sum(1 for _, _, kind in reply["versions"] if kind == "edit"),
                final_text=reply["final"],
                first_version_at=reply["versions"][0][0] if reply["versions"] else None,
                **extra,
            )
        )
    return aggregate([figures(t) for t in traces], rate_limited=data["rate_limited"],
                     cpu_s=resources["cpu_s"], peak_rss_mb=resources["peak_rss_mb"])


def run(*, quick: bool) -> dict[str, Any]:
    from tests.fakes.llm_wire import split_pieces

    started = time.monotonic()
    words = 60 if quick else 110  # as the Slack half, so the two platforms' figures compare
    scenarios = [("N=1", 1, 1), ("N=5 over 5 channels", 5, 5)]
    if not quick:
        scenarios = [("N=1", 1, 1), ("N=20 over 5 channels", 20, 5)]
    out: dict[str, Any] = {
        "platform": "discord",
        "setup": {
            "model_ttft_s": TTFT_S,
            "model_tokens_per_s": TOKENS_PER_S,
            "model_pieces_per_reply": len(split_pieces(model_text(words))),
            "discord_edit_bucket": f"{EDIT_BUCKET[0]} per {EDIT_BUCKET[1]:g} s per channel",
            "baseline": "llmcord: edit at most once per second per reply, one global last-edit time",
            "ours_first_post_grace_s": DiscordPlatform.limits.first_post_grace_s,
            "quick": quick,
        },
        "runs": {},
    }
    for name, n, channels in scenarios:
        ours = run_one(RunSpec("ours", n, channels, words))
        baseline = run_one(RunSpec("baseline", n, channels, words))
        out["runs"][name] = {"ours": ours, "baseline": baseline, "ours_over_baseline": ratios(ours, baseline)}
    out["wall_s"] = round(time.monotonic() - started, 1)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=2))
