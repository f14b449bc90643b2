"""The Slack half of ``python -m tests.bench.stream --platform slack``.

Three processes per run, so the bot's CPU and memory are its own: the fakes (FakeSlack at Slack's real tiers —
chat.update 50/min per workspace, chat.postMessage ~1/s per channel — and the fake model at 0.4 s to first token
and 50 tokens/s, which also delivers the signed mention events), the bot under test, and this orchestrator.

Variants: ``ours`` is SlackAdapter + LiveReply with the workspace-wide edit budget; ``ours_native`` is the same
with Slack's native streaming on (settings.slack_native_streaming: chat.startStream/appendStream/stopStream, which
the fake limits at their own tier and the bot paces from their own budget), to show whether streaming relieves the
chat.update budget; ``baseline`` is a plain Bolt app that posts a placeholder and awaits ``chat.update`` after every
20 chunks, with slack_sdk's rate-limit retry handler (one retry after Retry-After), as popular Slack bots stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.connection
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.stream_common import (
    BASELINE_EVERY_CHUNKS,
    TOKENS_PER_S,
    TTFT_S,
    Child,
    ReplyTrace,
    Usage,
    aggregate,
    bot_main,
    channel_of,
    fake_model,
    figures,
    model_text,
    ratios,
)

SECRET = "bench-signing-secret"
TEAM = "T0FAKE"
PLACEHOLDER = "…writing"
MARKER = " ▍"


@dataclass(frozen=True)
class RunSpec:
    variant: str  # "ours", "ours_native" or "baseline"
    mentions: int
    channels: int
    words: int  # length of the model's answer
    # "workspace": chat.update at Tier 3 per workspace (Slack's documented limit); "per_channel": the same Tier 3
    # bucket per channel instead (FACTS.md: a per-channel limit is unverified); "restricted": the workspace as
    # above with the restricted history tier (1 call a minute, 15 messages a page).
    regime: str = "workspace"
    # Thread length; 0: the bot saw each thread (3 messages in its log); otherwise the threads exist only on Slack.
    unseen_thread: int = 0
    stem: str = "point"  # model_text's word stem ("w": ~5 characters a token, 400 tokens fit one message)
    settings: tuple[tuple[str, Any], ...] = ()  # Settings overrides (the "before" run pins main's history pace)
    # The fake Slack's rate (calls per minute; None: its own) and burst for these methods instead of its guess
    # (tests/fakes/slack_rates.py): Slack documents no burst sizes, and the stream methods' tiers are unverified
    # (FACTS.md), so the bench can check that ours holds up under other ones.
    fake_rates: tuple[tuple[str, float | None, int], ...] = ()



ROOTS: dict[int, str] = {}  # in the fakes' process: each unseen thread's parent ts


def root_ts(k: int) -> str:
    return ROOTS.get(k) or f"{1_700_000_000 + k}.000100"



# ---- process 1: the fakes --------------------------------------------------------------------------------------


def fakes_main(conn: multiprocessing.connection.Connection, spec: RunSpec) -> None:
    asyncio.run(_fakes(conn, spec))


async def _fakes(conn: multiprocessing.connection.Connection, spec: RunSpec) -> None:
    from tests.fakes import slack_payloads as payloads
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.slack_signing import SlackDelivery

    text = model_text(spec.words, stem=spec.stem)
    loop = asyncio.get_running_loop()
    async with (
        FakeSlack(restricted_history=spec.regime == "restricted") as slack,
        fake_model(spec.words, stem=spec.stem) as llm,
    ):
        if spec.regime == "per_channel":
            slack.limiter.per_channel.add("chat.update")
        for method, per_minute, burst in spec.fake_rates:
            rate = slack.limiter.rates[method]
            slack.limiter.rates[method] = replace(rate, per_minute=per_minute or rate.per_minute, burst=burst)
        for c in range(spec.channels):
            slack.add_channel(channel_of(c, spec.channels))
        slack.add_user("U1", display_name="Ada")
        slack.add_user("U2", display_name="Grace")
        slack.add_user("U3", display_name="Linus")
        if spec.unseen_thread:
            for k in range(spec.mentions):
                parent = slack.seed_thread(
                    channel_of(k, spec.channels), replies=spec.unseen_thread - 1, user="U2",
                    text=f"thread-{k:03d} message {{i}}: the export keeps failing",
                )  # fmt: skip
                ROOTS[k] = parent.ts
        conn.send({"api_url": slack.api_url, "bot_token": slack.bot_token, "llm_url": llm.openai_base_url})
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if request[0] == "stop":
                return
            if request[0] == "deliver":
                url = request[1]
                async with SlackDelivery(url, SECRET) as delivery:

                    async def send(k: int, delivery: SlackDelivery = delivery) -> tuple[int, float, int]:
                        event = payloads.app_mention(
                            channel=channel_of(k, spec.channels),
                            user="U1",
                            text="<@UBOT> summarize",
                            thread_ts=root_ts(k),
                        )
                        sent = time.monotonic()
                        result = await delivery.send_event(payloads.event_callback(event))
                        return k, sent, result.status

                    conn.send(await asyncio.gather(*(send(k) for k in range(spec.mentions))))
            if request[0] == "collect":
                conn.send(_collect(slack, llm, spec, text))
            if request[0] == "roots":
                conn.send({k: root_ts(k) for k in range(spec.mentions)})


def _collect(slack: Any, llm: Any, spec: RunSpec, text: str) -> dict[str, Any]:
    from tests.fakes.llm_wire import split_pieces

    pieces = split_pieces(text)
    ends = [sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces))]
    gap = 1.0 / TOKENS_PER_S
    starts: dict[int, float] = {}
    for rec in llm.received:
        if rec.structured:
            continue
        for k in range(spec.mentions):
            if f"thread-{k:03d} " in rec.user_text and k not in starts:
                starts[k] = rec.at
    replies: dict[int, dict[str, Any]] = {}
    for k in range(spec.mentions):
        channel = channel_of(k, spec.channels)
        msgs = [m for m in slack.bot_messages(channel) if m.thread_ts == root_ts(k)]
        versions = [(v.at, v.text, v.kind) for m in msgs for v in m.versions]
        replies[k] = {
            "versions": sorted(versions),
            "final": "".join(m.text for m in msgs),
            # A reply whose model call never happened has no pieces to time; it still counts as lost.
            "piece_ends": ends if k in starts else [],
            "piece_times": [starts[k] + TTFT_S + i * gap for i in range(len(pieces))] if k in starts else [],
        }
    calls: dict[str, int] = {}
    for call in slack.calls:
        if call.method.startswith("chat."):
            calls[call.method] = calls.get(call.method, 0) + 1
    return {
        "replies": replies,
        "rate_limited": slack.count_429(),
        "by_method": dict(slack.rate_limited),
        "calls_by_method": calls,
        "calls": len(slack.calls),
        "history_pages": len([c for c in slack.calls_to("conversations.replies") if c.status == 200]),
        "status_lines": sorted({v.text for k in replies for v in _versions(slack, spec, k) if "Reading" in v.text}),
    }


def _versions(slack: Any, spec: RunSpec, k: int) -> list[Any]:
    msgs = [m for m in slack.bot_messages(channel_of(k, spec.channels)) if m.thread_ts == root_ts(k)]
    return [v for m in msgs for v in m.versions]


# ---- process 2: the bot ----------------------------------------------------------------------------------------


async def _bot(conn: multiprocessing.connection.Connection, spec: RunSpec, urls: dict[str, str]) -> None:
    from pydantic import SecretStr

    from bot.app import build_app
    from bot.settings import Settings
    from bot.types import ChannelRef, ChatMessage, MessageRef

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = dict(spec.settings)
        if spec.variant != "ours_default":
            overrides["slack_native_streaming"] = spec.variant == "ours_native"
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=urls["llm_url"],
            slack_bot_token=SecretStr(urls["bot_token"]),
            slack_signing_secret=SecretStr(SECRET),
            slack_api_url=urls["api_url"],
            db=str(Path(tmp) / "bench.db"),
            **overrides,
        )
        app = await build_app(settings)
        # Each mention's thread is already in the bot's log (it saw it as message events) unless it is unseen.
        for k in range(0 if spec.unseen_thread else spec.mentions):
            channel = ChannelRef("slack", TEAM, channel_of(k, spec.channels))
            for j in range(3):
                ts = f"{1_700_000_000 + k}.{100 + j:06d}"  # j == 0 is root_ts(k)
                await app.assistant.record(
                    ChatMessage(
                        ref=MessageRef(channel, ts, root_ts(k)),
                        author="U1",
                        author_name="Ada",
                        text=f"thread-{k:03d} message {j}: the export keeps failing",
                        sent_at=datetime.fromtimestamp(float(ts), UTC),
                    )
                )
        server = _Baseline(app, urls) if spec.variant == "baseline" else _Ours(app)
        runner = await server.serve()
        port = runner.addresses[0][1]
        usage = Usage()
        usage.start()
        conn.send(f"http://127.0.0.1:{port}/slack/events")
        request = await loop.run_in_executor(None, conn.recv)
        assert request[0] == "drain"
        await server.idle()
        cpu_s, rss_mb = usage.stop()
        conn.send({"cpu_s": cpu_s, "peak_rss_mb": rss_mb})
        await loop.run_in_executor(None, conn.recv)  # "stop"
        await runner.cleanup()
        await app.close()


class _Ours:
    def __init__(self, app: Any) -> None:
        from adapters.slack.intake import SlackAdapter

        self.adapter = SlackAdapter(app)

    async def serve(self) -> Any:
        return await self.adapter.serve_http(host="127.0.0.1", port=0)

    async def idle(self) -> None:
        await self.adapter.idle()


class _Baseline:
    """How popular Slack bots stream: a placeholder, then `await chat.update` every 20 chunks, no pacing."""

    def __init__(self, app: Any, urls: dict[str, str]) -> None:
        from aiohttp import web
        from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
        from slack_bolt.app.async_app import AsyncApp
        from slack_sdk.http_retry.builtin_async_handlers import (
            AsyncConnectionErrorRetryHandler,
            AsyncRateLimitErrorRetryHandler,
        )
        from slack_sdk.web.async_client import AsyncWebClient

        self.app = app
        self.client = AsyncWebClient(
            token=urls["bot_token"],
            base_url=urls["api_url"],
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=1),
            ],
        )
        from adapters.slack.identity import BotIdentity

        # The same one-auth.test authorize as ours: the comparison is about streaming, not about Bolt's lazy
        # auth.test burst (which makes a default Bolt app lose events under a burst of first mentions).
        self.bolt = AsyncApp(
            client=self.client,
            authorize=BotIdentity(self.client).authorize,
            signing_secret=SECRET,
            process_before_response=True,
        )
        self.tasks: set[asyncio.Task[None]] = set()

        async def on_mention(event: dict[str, Any]) -> None:
            task = asyncio.create_task(self.reply(event))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self.bolt.event("app_mention")(on_mention)

        async def handle(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await self.bolt.async_dispatch(await to_bolt_request(request)))

        self.web_app = web.Application()
        self.web_app.router.add_post("/slack/events", handle)

    async def serve(self) -> Any:
        from aiohttp import web

        runner = web.AppRunner(self.web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def reply(self, event: dict[str, Any]) -> None:
        from slack_sdk.errors import SlackApiError

        from bot.types import ChannelRef, ChatMessage, Mention, MessageRef
        from llm.types import Attribution

        channel = ChannelRef("slack", TEAM, event["channel"])
        thread = event["thread_ts"]
        try:
            posted = await self.client.chat_postMessage(
                channel=event["channel"], thread_ts=thread, text=PLACEHOLDER
            )
        except SlackApiError:
            return  # the reply is lost: what a naive bot does after its one retry
        ts = posted["ts"]
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        mention = Mention(
            ChatMessage(
                MessageRef(channel, event["ts"], thread), "U1", "Ada", event["text"], datetime.now(UTC)
            )
        )
        platform = _NaiveHistory(self.client)

        async def produce() -> None:
            try:
                await self.app.assistant.summarizer.summarize(
                    mention,
                    platform,
                    bill_to=Attribution("slack", TEAM, channel.channel, "U1", "summary"),
                    on_text=queue.put_nowait,
                    on_status=lambda _: None,
                )
            finally:
                queue.put_nowait(None)

        producer = asyncio.create_task(produce())
        text, chunks = "", 0
        while (chunk := await queue.get()) is not None:
            text += chunk
            chunks += 1
            if chunks % BASELINE_EVERY_CHUNKS == 0:
                with contextlib.suppress(SlackApiError):
                    await self.client.chat_update(channel=event["channel"], ts=ts, text=text)
        await producer
        with contextlib.suppress(SlackApiError):
            await self.client.chat_update(channel=event["channel"], ts=ts, text=text)


class _NaiveHistory:
    """What a popular bot does for a thread it has not seen: page conversations.replies as fast as it can, 1,000 a
    page, with slack_sdk's 429 retry handler (one retry after Retry-After) doing all the waiting."""

    def __init__(self, client: Any) -> None:
        from adapters.slack.platform import SlackPlatform

        self.client = client
        self._translate = SlackPlatform(client, team_id=TEAM)  # only its payload → ChatMessage translation

    async def fetch_thread(self, ref: Any, *, since: Any = None, progress: Any = None) -> list[Any]:
        from adapters.slack.events import read_message

        thread = ref.thread_id or ref.message_id
        out, cursor = [], None
        while True:
            page = await self.client.conversations_replies(
                channel=ref.channel.channel, ts=thread, limit=1000, cursor=cursor
            )
            for raw in page.get("messages") or []:
                message = read_message(raw)
                if message is not None:
                    out.append(await self._translate.to_chat_message(ref.channel, message, thread_id=thread))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return out


# ---- process 3: the orchestrator -------------------------------------------------------------------------------


def run_one(spec: RunSpec) -> dict[str, Any]:
    fakes = Child(fakes_main, spec)
    bot: Child | None = None
    try:
        urls = fakes.recv()
        bot = Child(bot_main, (__name__, spec, urls))
        bot_url = bot.recv()
        sent = fakes.ask(("deliver", bot_url))
        resources = bot.ask(("drain",), timeout=600.0)
        data = fakes.ask(("collect",))
    finally:
        if bot is not None:
            bot.close()
        fakes.close()
    text = model_text(spec.words, stem=spec.stem)
    event_at = {k: at for k, at, _ in sent}
    traces = []
    for k, reply in data["replies"].items():
        versions = [(at, body.removesuffix(MARKER)) for at, body, _ in reply["versions"]]
        traces.append(
            ReplyTrace(
                event_at=event_at[k],
                model_text=text,
                piece_ends=reply["piece_ends"],
                piece_times=reply["piece_times"],
                versions=versions,
                # Calls that changed the text after the first message (a stream's stop carries its last text).
                edits=sum(1 for _, _, kind in reply["versions"] if kind in ("update", "stream_append", "stream_stop")),
                final_text=reply["final"],
                first_version_at=reply["versions"][0][0] if reply["versions"] else None,
            )
        )
    result = aggregate(
        [figures(t) for t in traces],
        rate_limited=data["rate_limited"],
        cpu_s=resources["cpu_s"],
        peak_rss_mb=resources["peak_rss_mb"],
    )
    result["rate_limited_by_method"] = data["by_method"]
    result["calls_by_method"] = data["calls_by_method"]
    result["wrong_finals"] = [
        {"reply": k, "chars": len(reply["final"]), "of": len(text), "last_kinds": [v[2] for v in reply["versions"]][-3:],
         "tail": reply["final"][-40:]}
        for k, reply in data["replies"].items() if reply["final"] != text
    ][:3]  # fmt: skip
    result["finished_s"] = sorted(round(t.versions[-1][0] - t.event_at, 1) for t in traces if t.versions)
    result["slack_calls"] = data["calls"]
    result["rate_limited_share"] = round(data["rate_limited"] / max(1, data["calls"]), 4)
    result["history_pages"] = data["history_pages"]
    result["status_lines"] = data["status_lines"][:3]
    result["finished_after_mention_s"] = round(
        max((t.versions[-1][0] - t.event_at for t in traces if t.versions), default=0.0), 2
    )
    return result


def run(*, quick: bool) -> dict[str, Any]:
    from tests.fakes.llm_wire import split_pieces

    started = time.monotonic()
    words = 60 if quick else 110
    scenarios = [("N=1", 1, 1), ("N=5 over 5 channels", 5, 5)]
    if not quick:
        scenarios = [("N=1", 1, 1), ("N=20 over 5 channels", 20, 5)]
    out: dict[str, Any] = {
        "platform": "slack",
        "setup": {
            "model_ttft_s": TTFT_S,
            "model_tokens_per_s": TOKENS_PER_S,
            "model_pieces_per_reply": len(split_pieces(model_text(words))),
            "slack_chat_update_per_min_per_workspace": 50,
            "slack_post_per_channel_per_s": 1,
            "slack_stream_methods_per_min_per_workspace": 100,  # the fake's guess (Tier 4); unverified
            "baseline": f"chat.update after every {BASELINE_EVERY_CHUNKS} chunks, unpaced, SDK 429 retry x1",
            "quick": quick,
        },
        "runs": {},
    }
    for name, n, channels in scenarios:
        ours = run_one(RunSpec("ours", n, channels, words))
        native = run_one(RunSpec("ours_native", n, channels, words))
        baseline = run_one(RunSpec("baseline", n, channels, words))
        out["runs"][name] = {
            "ours": ours,
            "ours_native": native,
            "baseline": baseline,
            "ours_over_baseline": ratios(ours, baseline),
            "native_over_ours": ratios(native, ours),
        }
    out["wall_s"] = round(time.monotonic() - started, 1)
    return out
