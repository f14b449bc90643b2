"""/faq's sorting: the channel's questions into categories on the cheap route, in batches of numbered questions
(a group of numbers per category, not a label per question: output tokens cost 4–5× input); the first batch sets
the label vocabulary, the rest reuse it, and a refresh's few new questions are placed one label each."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from bot import prompts
from bot.faq_doc import FaqState
from bot.types import Inquiry
from llm.ports import BatchJob
from llm.tokens import count_tokens
from llm.types import Attribution, Request, Task

BATCH_TOKENS = 6_000  # questions per classification call, by tokens …
BATCH_MAX = 200  # … and by count: the answer must list every number
# Up to this many questions to sort with the labels known (a refresh) are answered one label each (Placing): a
# smaller schema, and for a few questions no more output than groups of numbers.
PLACE_MAX = 30
_PRIORITY = re.compile(r"^(.*?)\s*\((high|medium|low)\)\s*$", re.IGNORECASE)
_PRIORITY = re.compile(r"^(.*?)\s*\((high|medium|low)\)\s*$", re.IGNORECASE)
M = TypeVar("M", bound=BaseModel)
Priority = Literal["high", "medium", "low"]


class AskAll(Protocol):
    """Every request's answer, handed to ``answered`` with the request's index (FaqWriter: one call each, a few at
    a time, or all of them as one batch)."""

    async def __call__(
        self,
        task: Task,
        requests: list[Request],
        schema: type[M],
        bill_to: Attribution,
        answered: Callable[[int, M], None],
        job: BatchJob | None = None,
    ) -> None: ...


class Group(BaseModel):
    category: str
    priority: Priority
    questions: list[int]


class Sorting(BaseModel):
    groups: list[Group]


# A refresh's few new questions, one label each in the order given (a new label carries its priority: "Printer Jams
# (high)"): fewer schema and output tokens than groups when the labels are known. (No docstring: pydantic would send
# it with the schema, as tokens on every call.)
class Placing(BaseModel):
    labels: list[str]


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



async def sort_groups(
ask_all: AskAll,
    unlabelled: list[tuple[str, list[Inquiry]]],
    state: FaqState,
    bill_to: Attribution,
    progress: Callable[[str], None],
    *,
    total: int,
    job: BatchJob | None,
) -> None:
    """Labels for the groups no run sorted yet, into ``state.labels``."""
    reps = [(i + 1, g[0].text[:500]) for i, (_, g) in enumerate(unlabelled)]
    keys = {i + 1: k for i, (k, _) in enumerate(unlabelled)}
    sizes = {i + 1: len(g) for i, (_, g) in enumerate(unlabelled)}
    known: list[str] = sorted({label for label, _ in state.labels.values()})
    done = 0

    def request(batch: list[tuple[int, str]], system: str = prompts.CLASSIFY_SYSTEM) -> Request:
        listing = "\n".join(f"{n}. {text}" for n, text in batch)
        hint = f"Labels in use: {', '.join(known)}\n" if known else ""
        return Request.of(system, hint + prompts.transcript([listing]), prompt_version=prompts.FAQ_VERSION)

    priority_of = {label: priority for label, priority in state.labels.values()}

    def placed(batch: list[tuple[int, str]], result: Placing) -> None:
        groups: dict[str, Group] = {}
        for (n, _), raw in zip(batch, result.labels, strict=False):
            m = _PRIORITY.match(raw.strip())
            label = (m.group(1) if m else raw).strip() or "Other"
            level = m.group(2).lower() if m else priority_of.get(label, "medium")
            group = groups.setdefault(label, Group(category=label, priority=level, questions=[]))  # type: ignore[arg-type]
            group.questions.append(n)
        sorted_(batch, Sorting(groups=list(groups.values())))

    def sorted_(batch: list[tuple[int, str]], result: Sorting) -> None:
        nonlocal done
        wanted = {n for n, _ in batch}
        for group in result.groups:
            for n in group.questions:
                if n in wanted and keys[n] not in state.labels:
                    state.labels[keys[n]] = (group.category.strip() or "Other", group.priority)
        for n in wanted:  # a number the model left out still counts, as "Other"
            state.labels.setdefault(keys[n], ("Other", "low"))
        done += sum(sizes[n] for n in wanted)
        progress(f"sorted {min(done, total):,} of {total:,} questions…")

    work = batches(reps, max_tokens=BATCH_TOKENS, max_items=BATCH_MAX)
    # The first batch alone sets the label vocabulary; the rest run in parallel and reuse it.
    if not known:
        first = work.pop(0)
        await ask_all(Task.CLASSIFY, [request(first)], Sorting, bill_to, lambda _, r: sorted_(first, r), job)
        known.extend(sorted({label for label, _ in state.labels.values()}))
    # With labels in use (a refresh, or the batches after the first) the short instructions suffice, and a
    # refresh's few questions are placed one label each.
    if len(reps) <= PLACE_MAX and work:
        await ask_all(
            Task.CLASSIFY,
            [request(b, prompts.PLACE_SYSTEM) for b in work],
            Placing,
            bill_to,
            lambda i, r: placed(work[i], r),
            job,
        )
        return
    requests = [request(b, prompts.CLASSIFY_MORE_SYSTEM) for b in work]
    await ask_all(Task.CLASSIFY, requests, Sorting, bill_to, lambda i, r: sorted_(work[i], r), job)

