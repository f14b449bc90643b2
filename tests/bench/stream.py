"""Streaming bench: ``python -m tests.bench.stream --platform slack [--quick]`` prints ONE JSON object.

For N concurrent mentions (N=1, and N=20 over 5 channels; --quick: N=1 and N=5) it measures, per reply, the time
from the event to the placeholder and to the first text, p50/p95 staleness (a token leaving the model → visible),
edits per reply, 429s, whether the final text equals the model's, and the bot's CPU seconds and peak RSS — for
our live reply and for the naive baseline, plus ours/baseline ratios. Shared measurement code lives in
stream_common.py; each platform half is one module (stream_slack.py; a Discord half goes in stream_discord.py
with a ``run(*, quick: bool) -> dict`` function).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

PLATFORMS = {"slack": "tests.bench.stream_slack", "discord": "tests.bench.stream_discord"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.stream")
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="slack")
    parser.add_argument("--quick", action="store_true", help="a short run (N=1 and N=5, shorter answers)")
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(PLATFORMS[args.platform])
    except ModuleNotFoundError as exc:
        if exc.name != PLATFORMS[args.platform]:
            raise
        print(json.dumps({"platform": args.platform, "error": "this platform's half is not written yet"}))
        return 2
    print(json.dumps(module.run(quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
