"""Real conversations from tests/fixtures turned into console transcripts and inquiries (see fixtures/SOURCES.md)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
UBUNTU_RAW = FIXTURES / "ubuntu-irc" / "2004-11-15_03.raw.txt"
BANKING_SAMPLE = FIXTURES / "banking77" / "train-sample-1000.csv"
KOREAN_SAMPLE = FIXTURES / "korean" / "ChatbotData-300.csv"
_IRC_LINE = re.compile(r"^\[(\d\d):(\d\d)\] <([^>]+)> (.*)$")


def irc_lines(path: Path = UBUNTU_RAW) -> list[tuple[str, str] | None]:
    """Per line of an IRC log, (nick, text) when someone spoke, else None (joins, parts, /me): the annotations
    refer to lines by number."""
    out: list[tuple[str, str] | None] = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        m = _IRC_LINE.match(line)
        out.append((m.group(3), m.group(4).strip()) if m and m.group(4).strip() else None)
    return out


def irc_messages(path: Path = UBUNTU_RAW) -> list[tuple[str, str]]:
    """(nick, text) for every spoken line of an IRC log."""
    return [m for m in irc_lines(path) if m is not None]


def transcript_lines(
    messages: list[tuple[str, str]], *, channel: str = "support", start_ts: float = 1_700_000_000
) -> list[dict[str, object]]:
    """One Slack-style thread: every message's ts is its id and time; replies carry the root's ts as thread."""
    root = f"{start_ts:.6f}"
    lines: list[dict[str, object]] = []
    for i, (user, text) in enumerate(messages):
        item: dict[str, object] = {
            "channel": channel,
            "user": user,
            "text": text,
            "ts": f"{start_ts + i:.6f}",
        }
        if i:
            item["thread"] = root
        lines.append(item)
    return lines


def write_jsonl(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


def banking_inquiries(path: Path = BANKING_SAMPLE, *, limit: int | None = None) -> list[tuple[str, str]]:
    """(text, category) rows of banking77."""
    with path.open(encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


def korean_questions(path: Path = KOREAN_SAMPLE) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [r["Q"] for r in csv.DictReader(f)]
