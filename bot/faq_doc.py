"""The channel's FAQ as a document: its entries (each with the messages it was drawn from), the questions nobody
answered yet, and the state a refresh starts from — kept in the store's key-value space so every replica shares it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.stores.base import Store
from bot.types import ChannelRef

# How many distinct questions each "not answered yet" topic shows as examples.
OPEN_EXAMPLES = 2
# Bump when the stored shape changes: an older state is ignored and the next run is a full one.
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Source:
    message_id: str
    link: str  # the platform's link to the message, "" where the platform has none (the console)


@dataclass(frozen=True, slots=True)
class Faq:
    question: str
    answer: str
    category: str
    priority: str
    covers: int
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenTopic:
    """Questions of one category that nobody in the channel answered (or whose entry cited nothing real)."""

    category: str
    count: int  # inquiries
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FaqResult:
    faqs: list[Faq]
    inquiries: int
    unique: int
    categories: int  # categories with entries
    also_asked: list[tuple[str, int]]  # answered categories beyond the entry budget, with their counts
    made_at: str
    unanswered: list[OpenTopic] = field(default_factory=list)  # most asked first
    new_inquiries: int = 0  # inquiries this run sorted (the rest reused their labels)
    rewritten: int = 0  # categories whose entries this run wrote
    kept: int = 0  # categories whose entries were kept verbatim
    rejected: int = 0  # entries dropped because they cited no answer that was sent
    dropped_sources: int = 0  # cited ids that were never sent (made up), removed from entries
    unchanged: bool = False  # nothing new since the last run: this is the stored FAQ
    where: str = ""  # where the FAQ is published (the platform's kind of document, "reply" or "message")
    link: str = ""  # the published document's link, when the platform gives one
    note: str = ""  # why it is not where it should be (a missing permission), for the person who asked
    place: str = ""  # where the document is, in the platform's words ("" when it is not kept as one)

    @property
    def open_questions(self) -> int:
        return sum(t.count for t in self.unanswered)

    def to_text(self) -> str:
        if not self.faqs and not self.unanswered:
            return "No questions were collected in this channel for that period, so there is no FAQ to write yet."
        order = {"high": 0, "medium": 1, "low": 2}
        lines = [
            f"**FAQ** — from {self.inquiries:,} questions ({self.unique:,} distinct); "
            f"{len(self.faqs)} answered from the team's replies, {self.open_questions:,} not answered yet"
        ]
        category = None
        for f in sorted(self.faqs, key=lambda f: (f.category, order.get(f.priority, 3), -f.covers)):
            if f.category != category:
                category = f.category
                lines.append(f"\n**{category}**")
            lines.append(
                f"• **{f.question}** ({f.covers} asked)\n  {f.answer}\n  Sources: {_sources(f.sources)}"
            )
        if self.also_asked:
            lines.append(
                "\nAlso answered in the channel: " + ", ".join(f"{n} ({k})" for n, k in self.also_asked)
            )
        if self.unanswered:
            lines.append("\n**Asked but not answered yet**")
            for t in self.unanswered:
                shown = "; ".join(f"“{_one_line(e)}”" for e in t.examples)
                lines.append(f"• **{t.category}** — {t.count} asked, e.g. {shown}")
        return "\n".join(lines)


def _sources(sources: tuple[Source, ...]) -> str:
    return " ".join(f"[{i}]({s.link})" if s.link else f"#{s.message_id}" for i, s in enumerate(sources, 1))


def _one_line(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class FaqState:
    """What the last run saw and wrote, for the next run to start from."""

    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # group key → (category, priority)
    seen: set[str] = field(default_factory=set)  # inquiry message ids sorted so far
    # category (lower-case) → {group key: answer ids} its entries were written from
    written: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    entries: dict[str, list[Faq]] = field(default_factory=dict)  # category (lower-case) → its entries
    result: FaqResult | None = None
    document: dict[str, Any] = field(default_factory=dict)  # where it is published (opaque to bot/faq.py)
    refreshed_at: str = ""  # ISO time of the last run that finished (a scheduled refresh counts from it)

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": STATE_VERSION,
                "labels": self.labels,
                "seen": sorted(self.seen),
                "written": self.written,
                "entries": {k: [asdict(f) for f in v] for k, v in self.entries.items()},
                "result": asdict(self.result) if self.result else None,
                "document": self.document,
                "refreshed_at": self.refreshed_at,
            },
            ensure_ascii=False,
        )

    @classmethod
    def loads(cls, raw: str | None) -> FaqState:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            return cls()
        result = data.get("result")
        return cls(
            labels={k: (v[0], v[1]) for k, v in data["labels"].items()},
            seen=set(data["seen"]),
            written=data["written"],
            entries={k: [_faq(f) for f in v] for k, v in data["entries"].items()},
            result=_result(result) if result else None,
            document=data.get("document") or {},
            refreshed_at=str(data.get("refreshed_at") or ""),
        )


def _faq(d: dict[str, Any]) -> Faq:
    return Faq(**{**d, "sources": tuple(Source(**s) for s in d["sources"])})


def _result(d: dict[str, Any]) -> FaqResult:
    return FaqResult(
        **{
            **d,
            "faqs": [_faq(f) for f in d["faqs"]],
            "also_asked": [(n, k) for n, k in d["also_asked"]],
            "unanswered": [
                OpenTopic(t["category"], t["count"], tuple(t["examples"])) for t in d["unanswered"]
            ],
        }
    )


# The channels whose FAQ a scheduled refresh keeps up to date: every channel where /faq ran, with its period.
CHANNELS_KEY = "faq:channels"
CHANNELS_TTL_S = 90 * 86400  # as long as a channel's state (bot/faq.py STATE_TTL_S): renewed by every run
_CHANNELS_LOCK = "faq:channels"


async def faq_channels(store: Store) -> dict[ChannelRef, int]:
    """The channels /faq ran in, with the period (days) it last covered."""
    raw = await store.kv.get(CHANNELS_KEY)
    try:
        rows = json.loads(raw) if raw else []
    except ValueError:
        return {}
    return {ChannelRef(r["platform"], r["workspace"], r["channel"]): int(r["days"]) for r in rows}


async def remember_channel(store: Store, channel: ChannelRef, days: int) -> None:
    """Add ``channel`` to the channels a scheduled refresh keeps up to date (one read when it is there already)."""
    for _ in range(20):  # another channel's run may be updating the list this very moment
        known = await faq_channels(store)
        if known.get(channel) == days:
            return
        token = await store.locks.acquire(_CHANNELS_LOCK, ttl_s=10)
        if token is None:
            await asyncio.sleep(0.05)
            continue
        try:
            known = await faq_channels(store)
            known[channel] = days
            rows = [{"platform": c.platform, "workspace": c.workspace, "channel": c.channel, "days": d}
                    for c, d in known.items()]  # fmt: skip
            await store.kv.put(CHANNELS_KEY, json.dumps(rows), ttl_s=CHANNELS_TTL_S)
            return
        finally:
            await store.locks.release(_CHANNELS_LOCK, token)
