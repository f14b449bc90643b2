"""/faq's writing: the categories with answers in the channel → entries, several small categories per call on the
strong route (or the cheap one for brief topics), each entry held to the replies it cites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import BaseModel

from bot import prompts
from bot.faq_doc import Faq, FaqState
from bot.faq_sort import AskAll
from bot.faq_topics import Category, Labels, Section
from llm.ports import BatchJob
from llm.types import Attribution, Request, Task

PACK_TOKENS = 4_000  # questions and replies per writing call (several small categories share one call) …
PACK_MAX = 6  # … and categories per writing call
# A category written on the cheap route (Task.FAQ_BRIEF): one entry from at most this many tokens of questions and
# replies — a question or two with a short answer, which the cheap model restates as well as the strong one.
BRIEF_TOKENS = 200


class Entry(BaseModel):
    category: str
    question: str
    answer: str
    sources: list[str]
    replaces: str  # the label of the current entry this one replaces ("E2"), "" for a new entry


class Entries(BaseModel):
    entries: list[Entry]


async def write_entries(
ask_all: AskAll,
    write: list[tuple[Category, int]],
    everything: list[Category],
    state: FaqState,
    bill_to: Attribution,
    progress: Callable[[str], None],
    job: BatchJob | None,
) -> tuple[dict[str, list[Faq]], dict[str, list[str]], int]:
    """Entries per category key; per category key the questions of entries rejected for citing nothing that
    was sent; how many made-up sources were dropped."""
    if not write:
        return {}, {}, 0
    fresh = prompts.faq_context([(c.name, c.count) for c in everything if c.answered])
    sections = [
        Section(c, n, state.entries.get(c.key, []), state.written.get(c.key, {})) for c, n in write
    ]
    # Entries to write from a few short replies each need no strong model: the cheap one restates them as
    # well, and every entry is held to its sources the same way whichever model wrote it.
    # Brief ones are packed first, so they fill calls of their own; the pack where they meet the rest goes to
    # the strong route rather than costing a call more.
    brief = [s for s in sections if s.tokens <= BRIEF_TOKENS * s.entries]
    ordered = brief + [s for s in sections if s not in brief]
    rendered: list[tuple[Task, list[Section], Labels, Request]] = []
    # An update (current entries and what is new) is an edit: its call carries the short instructions.
    for update in (False, True):
        system = prompts.FAQ_UPDATE_SYSTEM if update else fresh
        for pack in packs([s for s in ordered if bool(s.current) is update]):
            task = Task.FAQ_BRIEF if all(s in brief for s in pack) else Task.FAQ
            labels = Labels()
            body = "\n\n".join(s.render(labels) for s in pack)
            request = Request.of(system, prompts.transcript([body]), prompt_version=prompts.FAQ_VERSION)
            rendered.append((task, pack, labels, request))
    done = dropped = 0
    out: dict[str, list[Faq]] = {}
    refused: dict[str, list[str]] = {}

    def written(i: int, answer: Entries) -> None:
        nonlocal done, dropped
        _, pack, labels, _ = rendered[i]
        done += len(pack)
        progress(f"wrote FAQ entries for {done} of {len(write)} categories…")
        by_key = {s.category.key: s for s in pack}
        for e in answer.entries:
            section = by_key.get(e.category.strip().lower())
            if section is None:  # an entry for a category not asked for is dropped, not misfiled
                continue
            sources, unknown = labels.resolve(e.sources, allowed=section.labels)
            dropped += unknown
            if not sources:  # claims an answer without anything sent to back it
                refused.setdefault(section.category.key, []).append(e.question)
                continue
            got = out.setdefault(section.category.key, list(section.current))
            # How often it was asked and how urgent it is follow from what it cites and from the sorting, not
            # from the writer's say-so (and cost no output tokens).
            cat = section.category
            entry = Faq(e.question, e.answer, cat.name, cat.priority, section.covers(sources), sources)
            slot = section.slot(e.replaces)
            if slot is not None and slot < len(got):
                got[slot] = entry
            elif len(got) < section.entries:
                got.append(entry)
        for section in pack:  # an update that changed nothing keeps the current entries
            if section.current:
                out.setdefault(section.category.key, list(section.current))

    async def ask(task: Task) -> None:
        mine = [i for i, (t, _, _, _) in enumerate(rendered) if t is task]
        if mine:
            requests = [rendered[i][3] for i in mine]
            await ask_all(task, requests, Entries, bill_to, lambda j, answer: written(mine[j], answer), job)

    await asyncio.gather(ask(Task.FAQ_BRIEF), ask(Task.FAQ))
    return out, refused, dropped



def packs(sections: list[Section]) -> list[list[Section]]:
    """Several small categories share one writing call (one system prompt, one call overhead)."""
    packs: list[list[Section]] = []
    used = 0
    for s in sections:
        if packs and used + s.tokens <= PACK_TOKENS and len(packs[-1]) < PACK_MAX:
            packs[-1].append(s)
            used += s.tokens
        else:
            packs.append([s])
            used = s.tokens
    return packs


