"""How fast a mention is answered right after a burst of malformed gateway dispatches, against the same bot's
answer time before the burst (same run, same machine).

    .venv/bin/python -m tests.bench.discord_bad_payloads [--mentions 5] [--burst 400]

The real discord.py client and the adapter against the fake Discord and the fake model (tests/test_discord_adapter
world). Each mention starts a thread of its own (a fresh summary every time). Between the two rounds the gateway
sends ``--burst`` dispatches that do not parse, in the four shapes of issue 15 (a MESSAGE_CREATE with ``mentions``
as a string, one with no author or timestamp, a partial MESSAGE_UPDATE, an INTERACTION_CREATE whose member has no
``flags``). Prints one JSON object: per round the median and worst seconds from the mention's dispatch to the
reply's first message and to its final text, their ratios after/before, and how many IDENTIFYs the gateway saw
(1: the session was never restarted).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.live_reply import WRITING_MARKER
from tests.test_discord_adapter import World, world

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "discord"


def _capture(name: str, event: str) -> dict[str, Any]:
    payloads = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(next(p["d"] for p in payloads if p["t"] == event))


def _bad(w: World, i: int, message: dict[str, Any], interaction: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = copy.deepcopy(message)
    data.update(id=str(w.fake.snowflakes.next()), channel_id=str(w.channel), guild_id=str(w.guild))
    kind = i % 4
    if kind == 0:
        return "MESSAGE_CREATE", {**data, "mentions": "<@1>"}
    if kind == 1:
        del data["author"], data["timestamp"], data["member"]
        return "MESSAGE_CREATE", data
    if kind == 2:
        return "MESSAGE_UPDATE", {k: data[k] for k in ("id", "channel_id", "guild_id", "embeds")}
    bad = copy.deepcopy(interaction)
    bad.update(id=str(w.fake.snowflakes.next()), token=secrets.token_urlsafe(12), guild_id=str(w.guild))
    del bad["member"]["flags"]
    return "INTERACTION_CREATE", bad


async def _one_mention(w: World, n: int) -> tuple[float, float]:
    fake = w.fake
    thread = await fake.create_thread(w.channel, name="q", owner_id=w.alice)
    # A different thread text each time: the response cache must not answer for the model.
    await fake.user_message(thread, author_id=w.bob, content=f"deploy {n} is stuck at 80%")
    started = time.monotonic()
    mention = await fake.user_message(thread, author_id=w.alice, content=f"<@{w.bot}> summary?")
    first = final = 0.0
    async with asyncio.timeout(60):
        while not final:
            replies = [c for c in w.bot_creates(thread)
                       if str((c.body.get("message_reference") or {}).get("message_id")) == mention["id"]]
            if replies and not first:
                first = time.monotonic() - started
            if replies and WRITING_MARKER not in (w.final(replies[0].message_id) or WRITING_MARKER):
                final = time.monotonic() - started
            await asyncio.sleep(0.005)
    return first, final


def _summary(times: list[tuple[float, float]]) -> dict[str, float]:
    firsts, finals = [t[0] for t in times], [t[1] for t in times]
    return {"first_message_median_s": round(statistics.median(firsts), 3), "first_message_max_s": round(max(firsts), 3),
            "final_text_median_s": round(statistics.median(finals), 3), "final_text_max_s": round(max(finals), 3)}


async def main(mentions: int, burst: int) -> dict[str, Any]:
    message = _capture("gateway_message_create.json", "MESSAGE_CREATE")
    interaction = _capture("gateway_interaction_create.json", "INTERACTION_CREATE")
    with tempfile.TemporaryDirectory() as tmp:
        async with world(Path(tmp)) as w:
            before = [await _one_mention(w, n) for n in range(mentions)]
            burst_started = time.monotonic()
            for i in range(burst):
                event, data = _bad(w, i, message, interaction)
                if event == "INTERACTION_CREATE":
                    await w.fake.raw_interaction(data, guild_id=w.guild)  # the fake accepts its callback
                else:
                    await w.fake.dispatch(event, data, guild_id=w.guild)
            sent_s = time.monotonic() - burst_started
            after = [await _one_mention(w, mentions + n) for n in range(mentions)]
            identifies = sum(1 for p in w.fake.gateway.received if p.get("op") == 2)
            unreadable_answers = sum(1 for c in w.fake.interaction_callbacks if c.callback_type == 4)
    b, a = _summary(before), _summary(after)
    return {
        "mentions_per_round": mentions, "burst_dispatches": burst, "burst_sent_in_s": round(sent_s, 3),
        "before": b, "after": a, "first_after_burst_s": [round(x, 3) for x in after[0]],
        "ratio_first_message_median": round(a["first_message_median_s"] / b["first_message_median_s"], 2),
        "ratio_final_text_median": round(a["final_text_median_s"] / b["final_text_median_s"], 2),
        "gateway_identifies": identifies, "unreadable_interactions_answered": unreadable_answers,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=5)
    parser.add_argument("--burst", type=int, default=400)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.mentions, args.burst))))
