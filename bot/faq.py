"""/faq: the channel's collected inquiries → FAQ entries.

Where the money goes and how this pipeline saves it:
- near-duplicates are sorted once (one representative per group, counted by group size);
- the cheap route sorts questions in batches of up to 200 with structured output, answering with groups of
  question *numbers* per category rather than a label per question (output tokens cost 4–5× input);
- the strong route writes entries for several categories per call, as many entries as a category's volume
  deserves, with one system prompt shared by every call of the run (the cached prefix).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from bot import prompts
from bot.stores.base import Store
from bot.types import ChannelRef, Inquiry
from llm.router import ModelRouter
from llm.tokens import count_tokens
from llm.types import Attribution, Request, Task

BATCH_TOKENS = 6_000  # questions per classification call, by tokens …
BATCH_MAX = 200  # … and by count: the answer must list every number
# An FAQ is read by people: past a few dozen entries nobody reads on, and each entry is the strong model's output,
# the bulk of a run's cost. Entries go to the most-asked categories first; the rest are listed as "also asked".
MAX_ENTRIES = 40
QUESTIONS_PER_ENTRY = 8  # most-asked distinct questions shown to the writer per entry it is asked to write
PACK_TOKENS = 3_000  # question text per writing call (several small categories share one call) …
PACK_MAX = 6  # … and categories per writing call
PARALLEL_CALLS = 4
RESULT_TTL_S = 30 * 86400
LOCK_TTL_S = 15 * 60

Priority = Literal["high", "medium", "low"]


def entries_for(count: int) -> int:
    """FAQ entries a category deserves by how often it was asked: a question asked twice is not a FAQ topic
    worth three entries."""
    return 3 if count >= 15 else 2 if count >= 5 else 1


def plan_entries(counts: list[int], max_entries: int) -> list[int]:
    """Entries per category (``counts`` most asked first) within ``max_entries``, breadth first: one entry for as
    many categories as the budget allows, then a second and third for those asked often enough to deserve them."""
    plan = [0] * len(counts)
    left = max_entries
    for round_ in (1, 2, 3):
        for i, count in enumerate(counts):
            if left and entries_for(count) >= round_ and plan[i] == round_ - 1:
                plan[i] += 1
                left -= 1
    return plan


class Group(BaseModel):
    category: str
    priority: Priority
    questions: list[int]


class Sorting(BaseModel):
    groups: list[Group]


class Entry(BaseModel):
    category: str
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
    categories: int  # categories written
    also_asked: list[tuple[str, int]]  # categories beyond the entry budget, with their counts
    made_at: str

    def to_text(self) -> str:
        if not self.faqs:
            return "No questions were collected in this channel for that period, so there is no FAQ to write yet."
        order = {"high": 0, "medium": 1, "low": 2}
        lines = [
            f"*FAQ* — from {self.inquiries:,} questions ({self.unique:,} distinct) in {self.categories} categories"
        ]
        category = None
        for f in sorted(self.faqs, key=lambda f: (f.category, order.get(f.priority, 3), -f.covers)):
            if f.category != category:
                category = f.category
                lines.append(f"\n*{category}*")
            lines.append(f"• *{f.question}* ({f.priority}, {f.covers} asked)\n  {f.answer}")
        if self.also_asked:
            lines.append("\nAlso asked: " + ", ".join(f"{name} ({n})" for name, n in self.also_asked))
        return "\n".join(lines)


class FaqBusy(Exception):
    """Another /faq run holds this channel's lock."""


@dataclass
class _Category:
    name: str
    priority: str
    questions: list[tuple[str, int]]  # (representative text, times asked), most asked first

    @property
    def count(self) -> int:
        return sum(n for _, n in self.questions)


def batches(items: list[tuple[int, str]], *, max_tokens: int, max_items: int) -> list[list[tuple[int, str]]]:
    out: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    used = 0
    for n, text in items:
        cost = count_tokens(text) + 4
        if current and (used + cost > max_tokens or len(current) >= max_items):
            out.append(current)
            current, used = [], 0
        current.append((n, text))
        used += cost
    if current:
        out.append(current)
    return out


class FaqWriter:
    def __init__(self, *, llm: ModelRouter, store: Store, max_entries: int = MAX_ENTRIES) -> None:
        self._llm = llm
        self._store = store
        self._max_entries = max_entries

    async def run(
        self, channel: ChannelRef, *, days: int, bill_to: Attribution, progress: Callable[[str], None]
    ) -> FaqResult:
        token = await self._store.locks.acquire(f"faq:{channel.key}", ttl_s=LOCK_TTL_S)
        if token is None:
            raise FaqBusy("an FAQ run is already under way in this channel; its result will be posted here")
        try:
            since = datetime.now(UTC) - timedelta(days=days)
            result = await self.make(await self._store.inquiries.list(channel, since=since), bill_to, progress)
            await self._store.kv.put(f"faq:{channel.key}", json.dumps(asdict(result)), ttl_s=RESULT_TTL_S)
            return result
        finally:
            await self._store.locks.release(f"faq:{channel.key}", token)

    async def make(self, inquiries: list[Inquiry], bill_to: Attribution, progress: Callable[[str], None]) -> FaqResult:
        now = datetime.now(UTC).isoformat()
        groups: dict[str, list[Inquiry]] = defaultdict(list)
        for inq in inquiries:
            groups[inq.group or inq.message_id].append(inq)
        reps = [(i + 1, g[0].text[:500]) for i, g in enumerate(groups.values())]
        sizes = {i + 1: len(g) for i, g in enumerate(groups.values())}
        if not reps:
            return FaqResult([], 0, 0, 0, [], now)
        categories = await self._sort(reps, sizes, bill_to, progress, total=len(inquiries))
        plan = plan_entries([c.count for c in categories], self._max_entries)
        written = [(c, n) for c, n in zip(categories, plan, strict=True) if n]
        rest = [c for c, n in zip(categories, plan, strict=True) if not n]
        progress(f"sorted {len(inquiries):,} questions into {len(categories)} categories; writing the FAQ…")
        faqs = await self._write(written, categories, bill_to, progress)
        return FaqResult(faqs, len(inquiries), len(reps), len(written), [(c.name, c.count) for c in rest], now)

    async def _sort(
        self,
        reps: list[tuple[int, str]],
        sizes: dict[int, int],
        bill_to: Attribution,
        progress: Callable[[str], None],
        *,
        total: int,
    ) -> list[_Category]:
        texts = dict(reps)
        placed: dict[int, tuple[str, str]] = {}
        known: list[str] = []
        done = 0

        async def sort(batch: list[tuple[int, str]]) -> None:
            nonlocal done
            listing = "\n".join(f"{n}. {text}" for n, text in batch)
            hint = f"Labels in use: {', '.join(known)}\n" if known else ""
            request = Request.of(
                prompts.CLASSIFY_SYSTEM, hint + prompts.transcript([listing]), prompt_version=prompts.FAQ_VERSION
            )
            result = await self._llm.structured(Task.CLASSIFY, request, Sorting, bill_to=bill_to)
            wanted = {n for n, _ in batch}
            for group in result.groups:
                for n in group.questions:
                    if n in wanted and n not in placed:
                        placed[n] = (group.category.strip() or "Other", group.priority)
            for n in wanted - placed.keys():  # a number the model left out still counts, as "Other"
                placed[n] = ("Other", "low")
            done += sum(sizes[n] for n in wanted)
            progress(f"sorted {min(done, total):,} of {total:,} questions…")

        work = batches(reps, max_tokens=BATCH_TOKENS, max_items=BATCH_MAX)
        # The first batch alone sets the label vocabulary; the rest run in parallel and reuse it.
        await sort(work[0])
        known.extend(sorted({c for c, _ in placed.values()}))
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def gated(batch: list[tuple[int, str]]) -> None:
            async with gate:
                await sort(batch)

        await asyncio.gather(*(gated(b) for b in work[1:]))
        by_name: dict[str, _Category] = {}
        for n, (name, priority) in placed.items():
            cat = by_name.setdefault(name.lower(), _Category(name, priority, []))
            cat.questions.append((texts[n], sizes[n]))
        for cat in by_name.values():
            cat.questions.sort(key=lambda q: -q[1])
        return sorted(by_name.values(), key=lambda c: (-c.count, c.name))

    async def _write(
        self,
        written: list[tuple[_Category, int]],
        everything: list[_Category],
        bill_to: Attribution,
        progress: Callable[[str], None],
    ) -> list[Faq]:
        system = prompts.faq_context([(c.name, c.count) for c in everything])
        packs: list[list[tuple[_Category, int]]] = []
        used = 0
        for cat, n in written:
            cost = sum(count_tokens(t) + 6 for t, _ in cat.questions[: QUESTIONS_PER_ENTRY * n])
            if packs and used + cost <= PACK_TOKENS and len(packs[-1]) < PACK_MAX:
                packs[-1].append((cat, n))
                used += cost
            else:
                packs.append([(cat, n)])
                used = cost
        done = 0
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def write(pack: list[tuple[_Category, int]]) -> list[Faq]:
            nonlocal done
            sections = []
            for cat, n in pack:
                shown = "\n".join(f"- ({k}×) {t}" for t, k in cat.questions[: QUESTIONS_PER_ENTRY * n])
                sections.append(
                    f"Category: {cat.name} — asked {cat.count} times — write {n} entr{'y' if n == 1 else 'ies'}\n"
                    f"{shown}"
                )
            request = Request.of(
                system, prompts.transcript(["\n\n".join(sections)]), prompt_version=prompts.FAQ_VERSION
            )
            async with gate:
                answer = await self._llm.structured(Task.FAQ, request, Entries, bill_to=bill_to)
            done += len(pack)
            progress(f"wrote FAQ entries for {done} of {len(written)} categories…")
            names = {c.name.lower(): c for c, _ in pack}
            faqs = []
            for e in answer.entries:
                found = names.get(e.category.strip().lower())
                if found is not None:  # an entry for a category not asked for is dropped, not misfiled
                    faqs.append(Faq(e.question, e.answer, found.name, e.priority, max(0, min(e.covers, found.count))))
            return faqs

        results = await asyncio.gather(*(write(p) for p in packs))
        return [f for group in results for f in group]
