"""``python -m tests.bench.load``: 1,000 mentions over 50 channels through the Slack HTTP path, with 1 replica and
then 2 replicas on one Redis, in the same run. Prints one JSON object.

Processes: this orchestrator (delivers the signed events like Slack and a round-robin load balancer, and
measures), one process with the fakes (FakeSlack and the fake model), redis-server, and the replicas: real
``python -m bot.cli run --platform slack`` processes (tests/replica_process.py), whose CPU time and peak memory
are read from /proc.

Scaling. Slack's Tier 3 ``chat.update`` budget (50/min per workspace) is what bounds a workspace's replies: every
reply needs at least one edit, so 1,000 replies in one workspace take 22 real minutes however many replicas run.
The run is compressed with ``--time-scale`` (default 0.05: the fake Slack's "minute" lasts 3 s, so chat.update
allows 50 per 3 s), and the replicas' budgets are scaled the same way (45 edits per scaled minute, as in
production). Mentions arrive at a steady ``--rate`` (default 12/s ≈ 36 per scaled minute, 80 % of the edit budget:
a busy but sustainable workspace). Everything else is real time: the fake model answers after 0.2 s at 200 tokens/s
(~50 tokens per reply), chat.postMessage per channel is Slack's ~1/s scaled, and the replicas' own per-channel
post pacing (54/min) stays unscaled. Five per cent of the mentions are delivered a second time with
``x-slack-retry-num: 1`` to another replica, as Slack does when an ack is slow.

Figures: ack time (request sent → response; Slack's deadline is 3 s), time to the placeholder and to the first
visible model text (from the event being sent), CPU seconds per reply (all replicas together), peak RSS per
replica, 429s, lost replies (no complete reply) and duplicate replies (more than one). ``--mentions`` scales the
run down; ``--sqlite`` adds a 1-replica run on SQLite (its shared budget is a row in the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing.connection
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.stream_common import Child, channel_of, model_text
from tests.redis_server import RedisServer
from tests.replica_process import Replica, isolated_redis_url

SECRET = "bench-signing-secret"
TEAM = "T0FAKE"
TTFT_S = 0.2
TOKENS_PER_S = 200.0
REPLY_WORDS = 24  # ~50 tokens: a short summary
RETRY_EVERY = 20  # one mention in 20 is delivered twice (x-slack-retry-num: 1), to another replica if there is one
STALL_LIMIT_S = 60.0  # no reply completed for this long: the rest are lost
# Threads started an hour ago (inside the replicas' retention window), on the hour: the fakes' process, spawned
# later, must compute the same thread ids.
THREADS_START = int(time.time()) // 3600 * 3600 - 3600



def root_ts(k: int) -> str:
    return f"{THREADS_START + k}.000100"



# ---- the fakes' process -----------------------------------------------------------------------------------------


def fakes_main(conn: multiprocessing.connection.Connection, arg: dict[str, Any]) -> None:
    asyncio.run(_fakes(conn, arg))


async def _fakes(conn: multiprocessing.connection.Connection, arg: dict[str, Any]) -> None:
    from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder
    from tests.fakes.slack_api import FakeSlack

    text = model_text(REPLY_WORDS)

    def responder(request: ReceivedRequest) -> FakeReply:
        return default_responder(request) if request.structured else FakeReply(text)

    loop = asyncio.get_running_loop()
    async with (
        FakeSlack(time_scale=arg["time_scale"]) as slack,
        FakeLLMServer(responder=responder, ttft_s=TTFT_S, tokens_per_s=TOKENS_PER_S) as llm,
    ):
        for c in range(arg["channels"]):
            slack.add_channel(channel_of(c, arg["channels"]))
        slack.add_user("U1", display_name="Ada")
        conn.send({"api_url": slack.api_url, "bot_token": slack.bot_token, "llm_url": llm.openai_base_url})
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if request[0] == "stop":
                return
            if request[0] == "progress":
                conn.send(_final_count(slack, text))
            if request[0] == "collect":
                conn.send(_collect(slack, llm, arg, text))


def _threads(slack: Any) -> dict[tuple[str, str], list[Any]]:
    found: dict[tuple[str, str], list[Any]] = {}
    for message in slack.messages.values():
        if message.bot_id is not None and message.thread_ts and not message.deleted:
            found.setdefault((message.channel, message.thread_ts), []).append(message)
    return found


def _final_count(slack: Any, text: str) -> int:
    return sum(1 for msgs in _threads(slack).values() if any(m.text == text for m in msgs))


def _collect(slack: Any, llm: Any, arg: dict[str, Any], text: str) -> dict[str, Any]:
    threads = _threads(slack)
    per_mention: dict[int, dict[str, Any]] = {}
    for k in range(arg["mentions"]):
        msgs = sorted(threads.get((channel_of(k, arg["channels"]), root_ts(k)), []), key=lambda m: float(m.ts))
        versions = sorted(v for m in msgs[:1] for v in ((v.at, v.text) for v in m.versions))
        per_mention[k] = {
            "replies": len(msgs),
            "complete": any(m.text == text for m in msgs),
            "posted_at": versions[0][0] if versions else None,
            "text_at": next((at for at, body in versions if body.startswith("Summary")), None),
        }
    return {
        "per_mention": per_mention,
        "rate_limited": slack.count_429(),
        "rate_limited_by_method": dict(slack.rate_limited),
        "chat_update_calls": len(slack.calls_to("chat.update")),
        "model_calls": len(llm.served),
    }


# ---- the orchestrator -------------------------------------------------------------------------------------------


async def _record_threads(store: Any, mentions: int, channels: int) -> None:
    from bot.types import ChannelRef, ChatMessage, MessageRef

    async def one(k: int) -> None:
        channel = ChannelRef("slack", TEAM, channel_of(k, channels))
        root = root_ts(k)
        for j in range(3):
            ts = f"{THREADS_START + k}.{100 + j:06d}"  # j == 0 is the root
            await store.messages.add(
                ChatMessage(
                    ref=MessageRef(channel, ts, root),
                    author="U1",
                    author_name="Ada",
                    text=f"thread {k} message {j}: the nightly export to bucket {k} fails with a timeout",
                    sent_at=datetime.fromtimestamp(float(ts), UTC),
                )
            )

    for start in range(0, mentions, 100):
        await asyncio.gather(*(one(k) for k in range(start, min(mentions, start + 100))))


async def _prepare_store(store_url: str | None, sqlite_path: str, mentions: int, channels: int) -> None:
    """The threads as the bot would have logged them from message events, so no history fetch is needed."""
    if store_url:
        import redis.asyncio

        from bot.stores.redis import RedisStore

        client = redis.asyncio.Redis.from_url(store_url)
        await client.flushdb()
        await client.aclose()
        store: Any = await RedisStore(store_url).open()
    else:
        from bot.stores.sqlite import SqliteStore

        store = await SqliteStore(sqlite_path).open()
    try:
        await _record_threads(store, mentions, channels)
    finally:
        await store.close()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1], 3)}


async def _deliver(replicas: list[Replica], mentions: int, channels: int, rate: float) -> dict[str, Any]:
    """Signed app_mention events at a steady rate, round robin over the replicas; some delivered twice."""
    from tests.fakes import slack_payloads as payloads
    from tests.fakes.slack_signing import SlackDelivery

    deliveries = [SlackDelivery(r.events_url, SECRET, timeout=30.0) for r in replicas]
    sent: dict[int, Any] = {}
    acks: list[float] = []
    statuses: list[int] = []

    async def one(k: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        body = payloads.event_callback(
            payloads.app_mention(
                channel=channel_of(k, channels), user="U1", text="<@UBOT> summarize", thread_ts=root_ts(k)
            )
        )
        sent_at = time.monotonic()
        result = await deliveries[k % len(deliveries)].send_event(body)
        sent[k] = sent_at
        acks.append(result.ack_seconds)
        statuses.append(result.status)
        if k % RETRY_EVERY == 0:
            again = await deliveries[(k + 1) % len(deliveries)].send_event(body, retry_num=1)
            acks.append(again.ack_seconds)
            statuses.append(again.status)

    start = time.monotonic() + 0.5
    try:
        await asyncio.gather(*(one(k, start + k / rate) for k in range(mentions)))
    finally:
        for d in deliveries:
            await d.close()
    return {"sent": sent, "acks": acks, "statuses": statuses, "delivery_s": time.monotonic() - start}


async def run_scenario(
    *, name: str, replicas: int, store: str, mentions: int, channels: int, rate: float, time_scale: float,
    redis_url: str, workdir: Path,
) -> dict[str, Any]:
    fakes = Child(fakes_main, {"time_scale": time_scale, "channels": channels, "mentions": mentions})
    group: list[Replica] = []
    try:
        urls = fakes.recv(timeout=60)
        sqlite_path = str(workdir / f"{name}.db")
        store_url = redis_url if store == "redis" else None
        await _prepare_store(store_url, sqlite_path, mentions, channels)
        scaled_minute = 1 / time_scale
        env = {
            "OPENAI_API_KEY": "x",
            "OPENAI_BASE_URL": urls["llm_url"],
            "SLACK_BOT_TOKEN": urls["bot_token"],
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": urls["api_url"],
            "SUPPORTBOT_SLACK_EDITS_PER_MINUTE": str(45 * scaled_minute),
            "SUPPORTBOT_SLACK_HISTORY_PER_MINUTE": str(scaled_minute),
            "SUPPORTBOT_USER_REQUESTS_PER_HOUR": "1000000",
            "SUPPORTBOT_LOG_LEVEL": "WARNING",
            "SUPPORTBOT_DB": sqlite_path,
        }
        if store_url:
            env["REDIS_URL"] = store_url
        group = [
            Replica(env=env, log_path=workdir / f"{name}-{i}.log", name=f"{name}-{i}").start() for i in range(replicas)
        ]
        await asyncio.gather(*(r.ready() for r in group))
        cpu_before = [r.cpu_seconds() for r in group]
        started = time.monotonic()
        delivered = await _deliver(group, mentions, channels, rate)
        # Wait for the replies: done when all are complete, lost when nothing completes for STALL_LIMIT_S.
        last, last_change = -1, time.monotonic()
        while True:
            done = fakes.ask(("progress",))
            if done != last:
                last, last_change = done, time.monotonic()
            if done >= mentions or time.monotonic() - last_change > STALL_LIMIT_S:
                break
            await asyncio.sleep(0.5)
        wall_s = time.monotonic() - started
        for _ in range(100):  # the last finals land before the tasks end; let them end
            if sum([await r.busy() for r in group]) == 0:
                break
            await asyncio.sleep(0.1)
        cpu_s = sum(r.cpu_seconds() - before for r, before in zip(group, cpu_before, strict=True))
        rss = [round(r.peak_rss_mb(), 1) for r in group]
        data = fakes.ask(("collect",))
    finally:
        for r in group:
            r.stop()
        fakes.close()
    per = data["per_mention"]
    sent = delivered["sent"]
    to_post = [v["posted_at"] - sent[k] for k, v in per.items() if v["posted_at"] is not None and k in sent]
    to_text = [v["text_at"] - sent[k] for k, v in per.items() if v["text_at"] is not None and k in sent]
    complete = sum(1 for v in per.values() if v["complete"])
    return {
        "replicas": replicas,
        "store": store,
        "mentions": mentions,
        "deliveries": len(delivered["acks"]),
        "non_200_acks": sum(1 for s in delivered["statuses"] if s != 200),
        "ack_s": _percentiles(delivered["acks"]),
        "ack_max_under_3s": max(delivered["acks"]) < 3.0,
        "to_placeholder_s": _percentiles(to_post),
        "to_first_visible_text_s": _percentiles(to_text),
        "cpu_s_per_reply": round(cpu_s / max(1, complete), 4),
        "cpu_s_total": round(cpu_s, 2),
        "peak_rss_mb_per_replica": rss,
        "rate_limited_429": data["rate_limited"],
        "rate_limited_by_method": data["rate_limited_by_method"],
        "chat_update_calls": data["chat_update_calls"],
        "model_calls": data["model_calls"],
        "lost_replies": mentions - complete,
        "duplicate_replies": sum(max(0, v["replies"] - 1) for v in per.values()),
        "delivery_s": round(delivered["delivery_s"], 1),
        "wall_s": round(wall_s, 1),
        "replies_per_s": round(complete / wall_s, 2) if wall_s else None,
        "cpu_cores_busy_per_replica": round(cpu_s / replicas / wall_s, 3) if wall_s else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    scenarios: list[tuple[str, int, str]] = [("1 replica, Redis", 1, "redis"), ("2 replicas, Redis", 2, "redis")]
    if args.sqlite:
        scenarios.insert(0, ("1 replica, SQLite", 1, "sqlite"))
    out: dict[str, Any] = {
        "bench": "load",
        "setup": {
            "mentions": args.mentions,
            "channels": args.channels,
            "arrival_rate_per_s": args.rate,
            "time_scale": args.time_scale,
            "slack_minute_lasts_s": round(60 * args.time_scale, 2),
            "slack_chat_update_per_scaled_min": 50,
            "bot_chat_update_budget_per_scaled_min": 45,
            "model_ttft_s": TTFT_S,
            "model_tokens_per_s": TOKENS_PER_S,
            "reply_words": REPLY_WORDS,
            "retried_deliveries": f"1 in {RETRY_EVERY}, x-slack-retry-num: 1, to another replica when there is one",
        },
        "runs": {},
    }
    server = RedisServer().start()
    try:
        redis_url = isolated_redis_url(server.url, 1)
        with tempfile.TemporaryDirectory(prefix="sb-load-") as tmp:
            for name, n, store in scenarios:
                out["runs"][name] = await run_scenario(
                    name=name.replace(" ", "").replace(",", "-"),
                    replicas=n,
                    store=store,
                    mentions=args.mentions,
                    channels=args.channels,
                    rate=args.rate,
                    time_scale=args.time_scale,
                    redis_url=redis_url,
                    workdir=Path(tmp),
                )
    finally:
        server.close()
    out["wall_s"] = round(time.monotonic() - started, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--mentions", type=int, default=1000)
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--rate", type=float, default=12.0, help="mentions delivered per second (steady)")
    p.add_argument("--time-scale", type=float, default=0.05, help="fake Slack minute = 60 * this seconds")
    p.add_argument("--sqlite", action="store_true", help="also run 1 replica on SQLite")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
