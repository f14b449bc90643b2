"""/faq: the channel's collected inquiries → FAQ entries.

Cheap route sorts the questions into categories in batches (many questions per call, structured output); the
strong route writes the FAQs per category with one shared, cached system prompt.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from bot import prompts
from bot.stores.base import Store
from bot.types import ChannelRef, Inquiry
from llm.router import ModelRouter
from llm.tokens import count_tokens
from llm.types import Attribution, Request, Task

BATCH_TOKENS = 6_000  # questions per classification call, by tokens (and at most BATCH_MAX questions)
BATCH_MAX = 200
MAX_CATEGORIES = 12  # FAQ calls per run at most; smaller categories are left to a later run
QUESTIONS_PER_CATEGORY = 40  # questions shown to the writer per category (the rest are counted)
PARALLEL_CALLS = 4
RESULT_TTL_S = 30 * 86400
LOCK_TTL_S = 15 * 60

Priority = Literal["high", "medium", "low"]


class Label(BaseModel):
    n: int = Field(description="the question's number")
    category: str
    priority: Priority


class Labels(BaseModel):
    items: list[Label]


class Entry(BaseModel):
    question: str
    answer: str
    priority: Priority
    covers: int


class Entries(BaseModel):
    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class Faq:
    question: str
    answer: str
    category: str
    priority: str
    covers: int


@dataclass(frozen=True, slots=True)
class FaqResult:
    faqs: list[Faq]
    inquiries: int
    unique: int
    categories: int
    made_at: str

    def to_text(self) -> str:
        if not self.faqs:
            return "No questions were collected in this channel for that period, so there is no FAQ to write yet."
        order = {"high": 0, "medium": 1, "low": 2}
        lines = [f"*FAQ* — from {self.inquiries:,} questions ({self.unique:,} distinct) in {self.categories} categories"]
        category = None
        for f in sorted(self.faqs, key=lambda f: (f.category, order.get(f.priority, 3), -f.covers)):
            if f.category != category:
                category = f.category
                lines.append(f"\n*{category}*")
            lines.append(f"• *{f.question}* ({f.priority}, {f.covers} asked)\n  {f.answer}")
        return "\n".join(lines)


class FaqBusy(Exception):
    """Another /faq run holds this channel's lock."""


def batches(items: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    out: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    used = 0
    for n, text in items:
        cost = count_tokens(text) + 4
        if current and (used + cost > BATCH_TOKENS or len(current) >= BATCH_MAX):
            out.append(current)
            current, used = [], 0
        current.append((n, text))
        used += cost
    if current:
        out.append(current)
    return out


class FaqWriter:
    def __init__(self, *, llm: ModelRouter, store: Store) -> None:
        self._llm = llm
        self._store = store

    async def run(
        self, channel: ChannelRef, *, days: int, bill_to: Attribution, progress: Callable[[str], None]
    ) -> FaqResult:
        token = await self._store.locks.acquire(f"faq:{channel.key}", ttl_s=LOCK_TTL_S)
        if token is None:
            raise FaqBusy("An FAQ run is already under way in this channel; its result will be posted here.")
        try:
            since = datetime.now(UTC) - timedelta(days=days)
            result = await self._make(await self._store.inquiries.list(channel, since=since), bill_to, progress)
            await self._store.kv.put(f"faq:{channel.key}", json.dumps(asdict(result)), ttl_s=RESULT_TTL_S)
            return result
        finally:
            await self._store.locks.release(f"faq:{channel.key}", token)

    async def _make(
        self, inquiries: list[Inquiry], bill_to: Attribution, progress: Callable[[str], None]
    ) -> FaqResult:
        now = datetime.now(UTC).isoformat()
        # Near-duplicates are sorted once: one representative per group, counted by group size.
        groups: dict[str, list[Inquiry]] = defaultdict(list)
        for inq in inquiries:
            groups[inq.group or inq.message_id].append(inq)
        reps = [(i + 1, g[0].text[:500]) for i, g in enumerate(groups.values())]
        sizes = {i + 1: len(g) for i, g in enumerate(groups.values())}
        if not reps:
            return FaqResult([], 0, 0, 0, now)
        labels = await self._classify(reps, bill_to, progress, total=len(inquiries), sizes=sizes)
        by_category: dict[str, list[tuple[str, int]]] = defaultdict(list)
        priorities: dict[str, Counter[str]] = defaultdict(Counter)
        for n, text in reps:
            category, priority = labels.get(n, ("Other", "low"))
            by_category[category].append((text, sizes[n]))
            priorities[category][priority] += sizes[n]
        ranked = sorted(by_category.items(), key=lambda kv: -sum(s for _, s in kv[1]))[:MAX_CATEGORIES]
        progress(f"sorted {len(inquiries):,} questions into {len(by_category)} categories; writing FAQs…")
        done = 0
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def write(category: str, questions: list[tuple[str, int]]) -> list[Faq]:
            nonlocal done
            questions = sorted(questions, key=lambda q: -q[1])
            shown = "\n".join(f"- ({count}×) {text}" for text, count in questions[:QUESTIONS_PER_CATEGORY])
            total = sum(c for _, c in questions)
            user = f"Category: {category}\nQuestions asked: {total}\n{prompts.transcript([shown])}"
            async with gate:
                answer = await self._llm.structured(
                    Task.FAQ, Request.of(prompts.FAQ_SYSTEM, user, prompt_version=prompts.FAQ_VERSION), Entries,
                    bill_to=bill_to,
                )
            done += 1
            progress(f"wrote FAQs for {done} of {len(ranked)} categories…")
            return [Faq(e.question, e.answer, category, e.priority, min(e.covers, total)) for e in answer.entries]

        written = await asyncio.gather(*(write(c, q) for c, q in ranked))
        return FaqResult([f for group in written for f in group], len(inquiries), len(reps), len(ranked), now)

    async def _classify(
        self,
        reps: list[tuple[int, str]],
        bill_to: Attribution,
        progress: Callable[[str], None],
        *,
        total: int,
        sizes: dict[int, int],
    ) -> dict[int, tuple[str, str]]:
        labels: dict[int, tuple[str, str]] = {}
        sorted_count = 0
        known: list[str] = []

        async def classify(batch: list[tuple[int, str]]) -> None:
            nonlocal sorted_count
            listing = "\n".join(f"{n}. {text}" for n, text in batch)
            hint = f"Labels in use: {', '.join(known)}\n" if known else ""
            request = Request.of(
                prompts.CLASSIFY_SYSTEM, hint + prompts.transcript([listing]), prompt_version=prompts.FAQ_VERSION
            )
            result = await self._llm.structured(Task.CLASSIFY, request, Labels, bill_to=bill_to)
            wanted = {n for n, _ in batch}
            for item in result.items:
                if item.n in wanted:
                    labels[item.n] = (item.category.strip() or "Other", item.priority)
            sorted_count += sum(sizes[n] for n in wanted)
            progress(f"sorted {min(sorted_count, total):,} of {total:,} questions…")

        work = batches(reps)
        # The first batch alone sets the label vocabulary; the rest run in parallel and reuse it.
        await classify(work[0])
        known.extend(sorted({c for c, _ in labels.values()}))
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def gated(batch: list[tuple[int, str]]) -> None:
            async with gate:
                await classify(batch)

        await asyncio.gather(*(gated(b) for b in work[1:]))
        return labels
