"""Mention → summary of the thread (or of the recent conversation outside a thread).

Every message reaches the model: a thread that does not fit one call's token budget is summarized in parts whose
notes are combined. A second mention reuses the last summary and sends only the messages written since.

The budget comes from the model's context window as the router knows it (setting, server, learned, table). When
the server still says the prompt is too long (our token count is not the server's), the router learns the
smaller window and the summary is planned again in smaller parts. When one part call fails, its siblings are
cancelled: their notes would be thrown away anyway. An answer cut short by the output limit says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bot import prompts
from bot.ports import ChatPlatform
from bot.stores.base import Store, StoreUnavailable
from bot.types import ChatMessage, Mention
from llm.ports import LLM
from llm.tokens import count_tokens
from llm.types import Answer, Attribution, LLMError, Request, Task

RECENT_LIMIT = 200  # outside a thread: the last messages of the channel
STATE_TTL_S = 14 * 24 * 3600  # how long the last summary of a thread is kept for incremental updates
PARALLEL_PARTS = 4  # part summaries in flight at once for a long thread (the router may allow fewer per server)
# A prompt the server still finds too long is planned again with at most half the budget, this many times.
MAX_REPLANS = 3
MIN_PART_TOKENS = 200  # below this a part carries too little conversation to be worth a call
CUT_SHORT = "… (cut short: the model's output limit)"
NOTES_CUT_SHORT = "\n(These notes were cut short by the model's output limit.)"
REPLANNING = "the conversation is longer than the model can read at once; reading it in smaller parts…"
log = logging.getLogger(__name__)
_FRESH = re.compile(r"\b(fresh|again|full|from scratch|restart)\b", re.IGNORECASE)


def wants_fresh(text: str) -> bool:
    return bool(_FRESH.search(text))


@dataclass(frozen=True, slots=True)
class SummaryState:
    summary: str
    last_sent_at: str  # ISO time of the newest message covered
    covered: int  # messages covered so far


@dataclass(frozen=True, slots=True)
class SummaryResult:
    text: str
    scope: str  # "thread" or "channel"
    messages: int  # messages sent to the model in this run
    incremental: bool
    parts: int  # model calls that read the transcript (1 unless the thread was split)


def format_lines(messages: list[ChatMessage]) -> list[str]:
    """One line per message, "name: text"; the time is written only when it changes (to the minute), and the
    date only when the day changes: timestamps on every line would cost more tokens than short messages do."""
    lines = []
    last_day = last_minute = ""
    for m in messages:
        day, minute = f"{m.sent_at:%Y-%m-%d}", f"{m.sent_at:%H:%M}"
        stamp = f"[{day} {minute}] " if day != last_day else f"[{minute}] " if minute != last_minute else ""
        last_day, last_minute = day, minute
        lines.append(f"{stamp}{m.author_name or m.author}: {m.text}")
    return lines


def pack(lines: list[str], budget: int) -> list[list[str]]:
    """Greedy packing of lines into parts of at most ``budget`` tokens; a line larger than a whole part is cut
    into pieces rather than dropped."""
    parts: list[list[str]] = []
    current: list[str] = []
    used = 0
    for line in lines:
        cost = count_tokens(line) + 1
        if cost > budget:
            pieces = _cut(line, budget)
        else:
            pieces = [line]
        for piece in pieces:
            c = count_tokens(piece) + 1 if len(pieces) > 1 else cost
            if current and used + c > budget:
                parts.append(current)
                current, used = [], 0
            current.append(piece)
            used += c
    if current:
        parts.append(current)
    return parts


def combine_groups(notes: list[str], budget: int) -> list[list[str]]:
    """Consecutive notes grouped for one combine call each: within ``budget`` where possible, but never fewer
    than two notes a group, so every round has fewer notes than the last and the combining always ends (notes are
    whole model answers, never cut; two of them fit any real context window)."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for note in notes:
        cost = count_tokens(note) + 1
        if len(current) >= 2 and used + cost > budget:
            groups.append(current)
            current, used = [], 0
        current.append(note)
        used += cost
    if len(current) == 1 and groups:
        groups[-1].append(current[0])
    elif current:
        groups.append(current)
    return groups


def _cut(line: str, budget: int) -> list[str]:
    # Token counts grow roughly linearly with length; halve the piece size until each piece fits.
    size = max(1, len(line) * budget // (count_tokens(line) + 1))
    while True:
        pieces = [line[i : i + size] for i in range(0, len(line), size)]
        if all(count_tokens(p) + 1 <= budget for p in pieces) or size == 1:
            return pieces
        size = max(1, size // 2)


class ThreadSummarizer:
    def __init__(self, *, llm: LLM, store: Store, max_input_tokens: int = 24_000) -> None:
        self._llm = llm
        self._store = store
        self._max_input_tokens = max_input_tokens

    async def input_budget(self) -> int:
        """Tokens of transcript one call may carry: the smaller of the setting and what the models' context
        windows (summarize and combine routes) leave after the system prompt and the answer."""
        window = min(await self._llm.context_budget(Task.SUMMARIZE), await self._llm.context_budget(Task.COMBINE))
        return max(MIN_PART_TOKENS, min(self._max_input_tokens, window) - count_tokens(prompts.SUMMARY_SYSTEM))

    async def gather(
        self, mention: Mention, platform: ChatPlatform, *, progress: Callable[[str], None] | None = None
    ) -> tuple[list[ChatMessage], str]:
        """The conversation to summarize; ``progress`` hears from a platform that reads slowly."""
        ref = mention.message.ref
        try:
            messages, scope = await self._gather_from_log(mention, platform, progress)
        except StoreUnavailable as exc:
            # The shared store is down: the platform still has the conversation (slower, but the reply comes).
            log.warning("summary in %s reads from the platform: %s", ref.channel.key, exc)
            messages = await platform.fetch_thread(ref, progress=progress)
            scope = "thread" if ref.thread_id else "channel"
        # The bot's own replies (earlier summaries) are not part of the conversation.
        return [m for m in messages if not m.is_bot], scope

    async def _gather_from_log(
        self, mention: Mention, platform: ChatPlatform, progress: Callable[[str], None] | None
    ) -> tuple[list[ChatMessage], str]:
        ref = mention.message.ref
        if ref.thread_id:
            messages = await self._store.messages.thread(ref.channel, ref.thread_id)
            if not any(m.ref.message_id == ref.thread_id for m in messages):
                # The bot never saw the thread start (joined later, or was down): fetch what it lacks, once.
                fetched = await platform.fetch_thread(ref, progress=progress)
                known = {m.ref.message_id for m in messages}
                for m in fetched:
                    if m.ref.message_id not in known:
                        await self._store.messages.add(m)
                messages = await self._store.messages.thread(ref.channel, ref.thread_id)
            scope = "thread"
        else:
            messages = await self._store.messages.recent(ref.channel, limit=RECENT_LIMIT)
            scope = "channel"
        return messages, scope

    async def summarize(
        self,
        mention: Mention,
        platform: ChatPlatform,
        *,
        bill_to: Attribution,
        on_text: Callable[[str], None],
        on_status: Callable[[str], None],
    ) -> SummaryResult:
        messages, scope = await self.gather(mention, platform, progress=on_status)
        ref = mention.message.ref
        state_key = f"summary:{ref.channel.key}:{ref.thread_id or '-'}"
        state = None if mention.fresh else await self._load(state_key)
        budget = await self.input_budget()
        replans = 0
        while True:  # returns the summary, or raises what re-planning cannot help
            try:
                return await self._summarize(messages, scope, mention, state, state_key, budget, bill_to,
                                             on_text, on_status)
            except LLMError as exc:
                if exc.kind != "context_length_exceeded" or exc.partial_text or replans == MAX_REPLANS:
                    raise
                # The router learned the server's smaller window; plan again within it, and at most half as much.
                smaller = min(budget // 2, await self.input_budget())
                if smaller < MIN_PART_TOKENS:
                    raise
                log.info("summary in %s re-planned: budget %d → %d tokens", ref.channel.key, budget, smaller)
                budget = smaller
                replans += 1
                on_status(REPLANNING)

    async def _summarize(
        self,
        messages: list[ChatMessage],
        scope: str,
        mention: Mention,
        state: SummaryState | None,
        state_key: str,
        budget: int,
        bill_to: Attribution,
        on_text: Callable[[str], None],
        on_status: Callable[[str], None],
    ) -> SummaryResult:
        ref = mention.message.ref
        if state is not None:
            since = datetime.fromisoformat(state.last_sent_at)
            new = [m for m in messages if m.sent_at > since and m.ref.message_id != ref.message_id]
            if not new:
                text = state.summary + "\n\n_No new messages since my last summary._"
                on_text(text)
                return SummaryResult(text, scope, 0, True, 0)
            lines = format_lines(new)
            update = f"{prompts.UPDATE_NOTE}\n\nPrevious summary:\n{state.summary}\n\nNew messages:\n"
            if count_tokens(update) + sum(count_tokens(x) + 1 for x in lines) <= budget:
                request = Request.of(
                    prompts.SUMMARY_SYSTEM, update + prompts.transcript(lines), prompt_version=prompts.SUMMARY_VERSION
                )
                text = await self._stream(Task.SUMMARIZE, request, bill_to, on_text)
                await self._save(state_key, text, messages, state.covered + len(new))
                return SummaryResult(text, scope, len(new), True, 1)
            # Too much new text for one call: summarize it in parts, with the old summary as the first notes.
            text, parts = await self._in_parts(lines, budget, bill_to, on_text, on_status, prior=state.summary)
            await self._save(state_key, text, messages, state.covered + len(new))
            return SummaryResult(text, scope, len(new), True, parts)
        if not messages:
            text = "There is nothing to summarize here yet."
            on_text(text)
            return SummaryResult(text, scope, 0, False, 0)
        lines = format_lines(messages)
        if sum(count_tokens(x) + 1 for x in lines) <= budget:
            request = Request.of(
                prompts.SUMMARY_SYSTEM, prompts.transcript(lines), prompt_version=prompts.SUMMARY_VERSION
            )
            text = await self._stream(Task.SUMMARIZE, request, bill_to, on_text)
            parts = 1
        else:
            text, parts = await self._in_parts(lines, budget, bill_to, on_text, on_status, prior=None)
        await self._save(state_key, text, messages, len(messages))
        return SummaryResult(text, scope, len(messages), False, parts)

    async def _in_parts(
        self,
        lines: list[str],
        budget: int,
        bill_to: Attribution,
        on_text: Callable[[str], None],
        on_status: Callable[[str], None],
        *,
        prior: str | None,
    ) -> tuple[str, int]:
        chunks = pack(lines, budget)
        done = 0
        gate = asyncio.Semaphore(PARALLEL_PARTS)
        on_status(f"reading a long conversation: part 0 of {len(chunks)}…")

        async def notes_for(chunk: list[str]) -> str:
            nonlocal done
            async with gate:
                request = Request.of(
                    prompts.PARTIAL_SYSTEM, prompts.transcript(chunk), prompt_version=prompts.SUMMARY_VERSION
                )
                answer: Answer = await self._llm.answer(Task.SUMMARIZE, request, bill_to=bill_to)
            done += 1
            on_status(f"reading a long conversation: part {done} of {len(chunks)}…")
            return answer.text + (NOTES_CUT_SHORT if answer.truncated else "")

        notes = await _all_or_none([notes_for(c) for c in chunks])
        if prior:
            notes.insert(0, f"(Summary of the earlier conversation)\n{prior}")
        # Notes of very long threads may themselves exceed one call: combine them level by level.
        while sum(count_tokens(n) + 1 for n in notes) > budget and len(notes) > 1:
            groups = combine_groups(notes, budget)
            combined = []
            for g in groups:
                joined = "\n\n---\n\n".join(g)
                request = Request.of(prompts.COMBINE_SYSTEM, joined, prompt_version=prompts.SUMMARY_VERSION)
                combined.append((await self._llm.answer(Task.COMBINE, request, bill_to=bill_to)).text)
            notes = combined
        on_status("")
        request = Request.of(
            prompts.COMBINE_SYSTEM,
            "\n\n---\n\n".join(f"Notes on part {i + 1}:\n{n}" for i, n in enumerate(notes)),
            prompt_version=prompts.SUMMARY_VERSION,
        )
        return await self._stream(Task.COMBINE, request, bill_to, on_text), len(chunks)

    async def _stream(
        self, task: Task, request: Request, bill_to: Attribution, on_text: Callable[[str], None]
    ) -> str:
        parts: list[str] = []
        async for chunk in self._llm.stream(task, request, bill_to=bill_to):
            if chunk.text:
                parts.append(chunk.text)
                on_text(chunk.text)
            if chunk.truncated:  # the reader must not take a summary that stops mid-sentence for the whole
                parts.append(CUT_SHORT)
                on_text(CUT_SHORT)
        return "".join(parts)

    async def _load(self, key: str) -> SummaryState | None:
        raw = await self._store.kv.get(key)
        return SummaryState(**json.loads(raw)) if raw else None

    async def _save(self, key: str, text: str, messages: list[ChatMessage], covered: int) -> None:
        newest = max((m.sent_at for m in messages), default=None)
        text = text.removesuffix(CUT_SHORT)  # the marker is for the reader, not for the next update's prompt
        if newest is None or not text.strip():
            return
        state = SummaryState(text, newest.isoformat(), covered)
        await self._store.kv.put(key, json.dumps(asdict(state)), ttl_s=STATE_TTL_S)


async def _all_or_none(calls: list[Coroutine[Any, Any, str]]) -> list[str]:
    """Every result in order, or — as soon as one call fails — the siblings cancelled (their answers would be
    thrown away, and they would keep a busy server from the re-planned calls) and that failure raised."""
    tasks: list[asyncio.Task[str]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in calls]
    except BaseExceptionGroup as failed:
        first = next((e for e in failed.exceptions if isinstance(e, LLMError)), failed.exceptions[0])
        raise first from None
    return [t.result() for t in tasks]
