"""Slack under load: ``python -m tests.bench.slack_load [--quick] [--history-per-minute N --history-page-limit N]
[--fake-burst METHOD=N ...] [--fake-rate METHOD=PER_MIN/BURST ...]`` prints ONE JSON object.

The scenario of issue 11: 20 mentions in 20 threads of 30 messages over 5 channels, threads the bot has NOT seen
(so each reply first reads its thread from conversations.replies); the model answers 400 tokens at 0.4 s to the
first token and 50 tokens/s. Regimes of the fake Slack (tests/fakes/slack_rates.py), each answered with 429 +
Retry-After the way Slack does: chat.update at Tier 3 per channel; chat.update at Tier 3 (50/min) for the whole
workspace; a single mention; and the restricted history tier (1 call a minute, 15 messages a page) for one
mention in a 30-message thread. Tier 3 history (with paging bursts) otherwise.

Each regime runs ours with DEFAULT settings and the popular-bot baseline (a placeholder, chat.update every 20
chunks without pacing, slack_sdk's 429 retry handler with one retry, history paged as fast as it goes) in the same
run. ``--history-per-minute``/``--history-page-limit`` override those two settings of ours (to measure a build
whose defaults would take an hour: the issue's own measurement ran main at Tier 3, 50/min and 200 a page).
``--fake-burst`` gives the fake Slack another burst for a method than its guess (Slack documents none), e.g.
``--fake-burst chat.update=10`` or ``--fake-burst chat.startStream=10``, to check that ours holds up under it;
``--fake-rate chat.startStream=100/20`` gives a method another rate and burst (the stream methods' tiers are
unverified: FACTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tests.bench.stream_common import TOKENS_PER_S, TTFT_S
from tests.bench.stream_slack import RunSpec, run_one

WORDS = 398  # 400 model tokens (the fake splits "Summary: w0 … w397." into 400 pieces), ~2,000 characters
THREAD = 30  # messages per thread, the parent included
REGIMES = {
    "per_channel": ("per_channel", 20, 5),
    "workspace_50_per_min": ("workspace", 20, 5),
    "single_mention": ("workspace", 1, 1),
    "restricted_history": ("restricted", 1, 1),
}


def table(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's table for one run."""
    return {
        "first_visible_text_after_mention_s": result["to_first_text_s"],
        "first_text_after_first_token_p95_s": result["first_text_after_first_token_s"]["p95"],
        "staleness_s": result["staleness_s"],
        "staleness_counting_lost_s": result["staleness_counting_lost_s"],
        "finals_correct": f"{result['final_text_ok']}/{result['replies']}",
        "rate_limited_429": result["rate_limited_429"],
        "slack_calls": result["slack_calls"],
        "rate_limited_share": result["rate_limited_share"],
        "rate_limited_by_method": result["rate_limited_by_method"],
        "edits_per_reply": result["edits_per_reply"],
        "calls_by_method": result["calls_by_method"],
        "history_pages": result["history_pages"],
        "finished_after_mention_s": result["finished_after_mention_s"],
        "status_lines": result["status_lines"],
        "wrong_finals": result["wrong_finals"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.slack_load")
    parser.add_argument("--quick", action="store_true", help="skip the restricted tier (it takes a minute a run)")
    parser.add_argument("--only", choices=sorted(REGIMES), action="append", help="run only these regimes")
    parser.add_argument("--history-per-minute", type=float)
    parser.add_argument("--history-page-limit", type=int)
    parser.add_argument("--fake-burst", action="append", default=[], metavar="METHOD=N",
                        help="the fake Slack's burst for METHOD (repeatable)")  # fmt: skip
    parser.add_argument("--fake-rate", action="append", default=[], metavar="METHOD=PER_MIN/BURST",
                        help="the fake Slack's rate and burst for METHOD (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    rates: list[tuple[str, float | None, int]] = []
    for method, _, n in (b.partition("=") for b in args.fake_burst):
        rates.append((method, None, int(n)))
    for method, _, rate in (r.partition("=") for r in args.fake_rate):
        per_minute, _, burst = rate.partition("/")
        rates.append((method, float(per_minute), int(burst or 1)))
    overrides: list[tuple[str, Any]] = []
    if args.history_per_minute:
        overrides.append(("slack_history_per_minute", args.history_per_minute))
    if args.history_page_limit:
        overrides.append(("slack_history_page_limit", args.history_page_limit))
    started = time.monotonic()
    out: dict[str, Any] = {
        "setup": {
            "mentions": "20 in 20 unseen threads over 5 channels (1 for single/restricted)",
            "thread_messages": THREAD,
            "model_ttft_s": TTFT_S,
            "model_tokens_per_s": TOKENS_PER_S,
            "model_tokens": WORDS + 2,
            "ours": "default settings" + (f" except {dict(overrides)}" if overrides else ""),
            "fake_rates": {m: {"per_minute": r or "the fake's", "burst": b} for m, r, b in rates}
            or "the fake's own (tests/fakes/slack_rates.py)",
            "baseline": "placeholder + chat.update every 20 chunks unpaced, slack_sdk 429 retry x1, naive paging",
        },
        "regimes": {},
    }
    for name, (regime, mentions, channels) in REGIMES.items():
        if (args.only and name not in args.only) or (args.quick and regime == "restricted"):
            continue
        runs = {}
        for variant in ("ours_default", "baseline"):
            spec = RunSpec(
                variant, mentions, channels, WORDS, regime=regime, unseen_thread=THREAD, stem="w",
                settings=tuple(overrides) if variant == "ours_default" else (), fake_rates=tuple(rates),
            )  # fmt: skip
            runs["ours" if variant == "ours_default" else "baseline"] = table(run_one(spec))
        out["regimes"][name] = runs
    out["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
