"""/faq: the channel's collected inquiries and the team's answers to them → FAQ entries with their sources.

Where the money goes and how this pipeline saves it:
- near-duplicates are sorted once (one representative per group, counted by group size), and a refresh sorts only
  the groups no earlier run labelled (the stored labels are reused, and offered to the model as "labels in use");
- the cheap route sorts questions in batches of up to 200 with structured output, answering with groups of
  question *numbers* per category rather than a label per question (output tokens cost 4–5× input);
- only categories with answers in the channel reach the strong route (the rest are listed as not answered yet,
  at no cost), each question with a few trimmed replies, several categories per call, one system prompt shared by
  every call of the run (the cached prefix); a refresh rewrites only categories with new answered questions or new
  answers, sending their current entries and the new material only, and keeps every other entry verbatim.

Sorting is in faq_sort.py, writing in faq_write.py; this module runs them (one run per channel at a time), keeps
what a run sorted and wrote for the next one (FaqState), and decides what a refresh rewrites.

Entries are grounded: each cites the replies it was drawn from by the labels it was shown; a label that was not
sent (made up) is dropped, and an entry left citing nothing is not published as an answer — its question goes to
"Asked but not answered yet".
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel

from bot.faq_answers import collect
from bot.faq_doc import Faq, FaqResult, FaqState, Source, remember_channel
from bot.faq_lease import RunLease
from bot.faq_sort import Group, Sorting, sort_groups
from bot.faq_topics import categories_of, covers, fingerprint, is_new, open_topics
from bot.faq_write import Entries, Entry, write_entries
from bot.stores.base import Store
from bot.types import ChannelRef, Inquiry, MessageRef
from llm.ports import BATCH_WAIT_S as WAIT_S
from llm.ports import LLM, BatchJob, BatchLLM
from llm.types import Attribution, BatchFailed, Request, Task

__all__ = ["Entries", "Entry", "Faq", "FaqBusy", "FaqResult", "FaqWriter", "Group", "Sorting", "plan_entries"]

# An FAQ is read by people: past a few dozen entries nobody reads on, and each entry is the strong model's output,
# the bulk of a run's cost. Entries go to the most-asked answered categories first; the rest are listed as "also
# answered".
MAX_ENTRIES = 40
PARALLEL_CALLS = 4
STATE_TTL_S = 90 * 86400  # a channel nobody asks for an FAQ for a quarter starts afresh
LOCK_TTL_S = 15 * 60
# A run through the Batch APIs waits for them (llm/batch.py gives up after WAIT_S); a replica that dies meanwhile
# leaves the channel's lock to lapse this much later.
BATCH_LOCK_TTL_S = WAIT_S * 2 + LOCK_TTL_S  # sorting and writing are a batch each
M = TypeVar("M", bound=BaseModel)

LinkFor = Callable[[MessageRef], Awaitable[str]]
# Publishes a finished FAQ where the channel keeps it: gets the result and the stored handle of the document,
# returns the result (saying where it went) and the handle to store.
Publish = Callable[[FaqResult, dict[str, str]], Awaitable[tuple[FaqResult, dict[str, str]]]]


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


class FaqBusy(Exception):
    """Another /faq run holds this channel's lock."""


async def _no_link(ref: MessageRef) -> str:
    return ""


class FaqWriter:
    def __init__(
        self,
        *,
        llm: LLM,
        store: Store,
        max_entries: int = MAX_ENTRIES,
        support_staff: frozenset[str] = frozenset(),
        batch: BatchLLM | None = None,
    ) -> None:
        """``batch``: send every model call through the providers' Batch APIs (a scheduled refresh)."""
        self._llm = llm
        self._store = store
        self._max_entries = max_entries
        self._staff = support_staff
        self._batch = batch
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # what a run's lease is timed by

    @staticmethod
    def state_key(channel: ChannelRef) -> str:
        return f"faq:{channel.key}"

    async def state(self, channel: ChannelRef) -> FaqState:
        return FaqState.loads(await self._store.kv.get(self.state_key(channel)))

    async def save(self, channel: ChannelRef, state: FaqState) -> None:
        await self._store.kv.put(self.state_key(channel), state.dumps(), ttl_s=STATE_TTL_S)

    async def remember_document(self, channel: ChannelRef, handle: dict[str, str]) -> None:
        """Store where the FAQ was published after the run (a reply kept as the document)."""
        token = await self._store.locks.acquire(f"faq:{channel.key}", ttl_s=LOCK_TTL_S)
        if token is None:  # a newer run is under way and will publish its own
            return
        try:
            state = await self.state(channel)
            state.document = {**state.document, **handle}
            await self.save(channel, state)
        finally:
            await self._store.locks.release(f"faq:{channel.key}", token)

    async def run(
        self,
        channel: ChannelRef,
        *,
        days: int,
        bill_to: Attribution,
        progress: Callable[[str], None],
        link_for: LinkFor = _no_link,
        publish: Publish | None = None,
    ) -> FaqResult:
        """One run per channel at a time (a lock shared by every replica); starts from the stored state and,
        with ``publish``, updates the channel's FAQ document in place before the lock is released."""
        ttl = BATCH_LOCK_TTL_S if self._batch is not None else LOCK_TTL_S
        token = await self._store.locks.acquire(f"faq:{channel.key}", ttl_s=ttl)
        if token is None:
            raise FaqBusy("an FAQ run is already under way in this channel; its result will be posted here")
        job = BatchJob(self._store.kv, f"faq:{channel.key}") if self._batch is not None else None
        lease = RunLease(self._store.kv, channel, self.clock) if self._batch is not None else None
        holding = None
        try:
            if lease is not None:
                holding = await lease.hold(token, ttl_s=BATCH_LOCK_TTL_S)
            since = datetime.now(UTC) - timedelta(days=days)
            inquiries = await self._store.inquiries.list(channel, since=since)
            state = await self.state(channel)
            if state.document.get("days") != str(days):  # another period: recount, even with nothing new
                state.result = None
            try:
                result = await self.make(inquiries, bill_to, progress, state=state, link_for=link_for, job=job)
            except BatchFailed:
                # What the sorting batch paid for is kept (labels, questions seen); the entries and the document
                # stay as they were, and the next run writes what this one could not.
                await self.save(channel, state)
                raise
            if publish is not None:
                result, state.document = await publish(result, state.document)
            state.document = {**state.document, "days": str(days)}
            state.refreshed_at = datetime.now(UTC).isoformat()
            await self.save(channel, state)
            await remember_channel(self._store, channel, days)
            return result
        finally:
            if lease is not None and holding is not None:
                await holding.stop()
                await lease.end()
            await self._store.locks.release(f"faq:{channel.key}", token)

    async def dead_run(self, channel: ChannelRef) -> str | None:
        """The id of a batch run in ``channel`` that died holding its lock, if any (bot/faq_lease.py)."""
        return await RunLease(self._store.kv, channel, self.clock).dead()

    async def take_over(self, channel: ChannelRef, run: str) -> None:
        """Frees the lock of the dead run ``run``: the next run resumes the batches it left in flight."""
        await self._store.locks.release(f"faq:{channel.key}", run)
        await RunLease(self._store.kv, channel, self.clock).end()

    async def make(
        self,
        inquiries: list[Inquiry],
        bill_to: Attribution,
        progress: Callable[[str], None],
        *,
        state: FaqState | None = None,
        link_for: LinkFor = _no_link,
        job: BatchJob | None = None,
    ) -> FaqResult:
        """The FAQ for ``inquiries``; ``state`` (updated in place) holds what an earlier run sorted and wrote;
        ``job`` is where batches in flight are noted (a run through the Batch APIs)."""
        state = state if state is not None else FaqState()
        now = datetime.now(UTC).isoformat()
        groups: dict[str, list[Inquiry]] = defaultdict(list)
        for inq in inquiries:
            groups[inq.group or inq.message_id].append(inq)
        if not groups:
            return FaqResult([], 0, 0, 0, [], now)
        new = [i for i in inquiries if i.message_id not in state.seen]
        progress(f"reading the team's answers to {len(inquiries):,} questions…")
        answers = await collect(self._store.messages, inquiries, staff=self._staff)
        unlabelled = [(k, g) for k, g in groups.items() if k not in state.labels]
        if unlabelled:
            await sort_groups(self._ask_all, unlabelled, state, bill_to, progress, total=sum(len(g) for _, g in unlabelled), job=job)
        # What the next run starts from, for this period's questions only (older ones leave with retention).
        state.seen = {i.message_id for i in inquiries}
        state.labels = {k: v for k, v in state.labels.items() if k in groups}
        categories = categories_of(groups, answers, state)
        answered = [c for c in categories if c.answered]
        plan = plan_entries([len(c.answered) for c in answered], self._max_entries)
        planned = [(c, n) for c, n in zip(answered, plan, strict=True) if n]
        # A category is rewritten when what a full run would show its writer changed: new answered questions
        # among its most-asked, or new answers to them. Every other category keeps its entries verbatim.
        touched = {c.key for c, n in planned if is_new(fingerprint(c.shown(n)), state.written.get(c.key, {}))}
        if not new and not touched and state.result is not None:
            return replace(
                state.result, unchanged=True, new_inquiries=0, rewritten=0, rejected=0, dropped_sources=0
            )
        keep = [c for c, _ in planned if c.key not in touched and c.key in state.entries]
        kept = {c.key for c in keep}
        write = [(c, n) for c, n in planned if c.key not in kept]
        if write:
            progress(
                f"sorted {len(inquiries):,} questions into {len(categories)} categories; writing the FAQ…"
            )
        written, refused, dropped = await write_entries(self._ask_all, write, categories, state, bill_to, progress, job)
        refs = {a.ref.message_id: a.ref for found in answers.values() for a in found}
        for key, entries in written.items():
            written[key] = [await _linked(f, refs, link_for) for f in entries]
        faqs: list[Faq] = []
        with_entries: set[str] = set()
        for c in keep:  # kept verbatim; only how often it was asked is recounted
            written_from = state.written.get(c.key, {})
            state.entries[c.key] = [
                replace(f, covers=covers(c, f.sources, written_from)) for f in state.entries[c.key]
            ]
            faqs.extend(state.entries[c.key])
            with_entries.add(c.key)
        for c, n in write:
            if written.get(c.key):
                state.entries[c.key] = written[c.key]
                state.written[c.key] = fingerprint(c.shown(n))
                faqs.extend(written[c.key])
                with_entries.add(c.key)
            elif state.entries.get(c.key):
                # an update that brought nothing grounded: the current entries stay
                faqs.extend(state.entries[c.key])
                with_entries.add(c.key)
            else:  # nothing grounded came back: no entry, its questions are listed as not answered
                state.written.pop(c.key, None)
        also = [(c.name, c.count) for c, n in zip(answered, plan, strict=True) if not n]
        result = FaqResult(
            faqs=faqs,
            inquiries=len(inquiries),
            unique=len(groups),
            categories=len(with_entries),
            also_asked=also,
            made_at=now,
            unanswered=open_topics(categories, with_entries, refused),
            new_inquiries=len(new),
            rewritten=sum(1 for c, _ in write if c.key in with_entries),
            kept=len(keep),
            rejected=sum(len(v) for v in refused.values()),
            dropped_sources=dropped,
        )
        state.result = result
        return result

    async def _ask_all(
        self,
        task: Task,
        requests: list[Request],
        schema: type[M],
        bill_to: Attribution,
        answered: Callable[[int, M], None],
        job: BatchJob | None = None,
    ) -> None:
        """Every request's answer, handed to ``answered`` (with the request's index) as it arrives: one call
        each, a few at a time — or, for a run nobody waits for, all of them as one batch at the batch price."""
        if self._batch is not None:
            answers = await self._batch.structured_batch(task, requests, schema, bill_to=bill_to, job=job)
            for i, answer in enumerate(answers):
                answered(i, answer)
            return
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def ask(i: int, request: Request) -> None:
            async with gate:
                answer = await self._llm.structured(task, request, schema, bill_to=bill_to)
            answered(i, answer)

        await asyncio.gather(*(ask(i, r) for i, r in enumerate(requests)))

async def _linked(faq: Faq, refs: dict[str, MessageRef], link_for: LinkFor) -> Faq:
    """The entry with the platform's link on each new source (a failed lookup leaves the id alone)."""
    sources = []
    for s in faq.sources:
        if not s.link and s.message_id in refs:
            try:
                s = Source(s.message_id, await link_for(refs[s.message_id]))
            except Exception:  # a link is a convenience: the entry stands without it
                pass
        sources.append(s)
    return replace(faq, sources=tuple(sources))
