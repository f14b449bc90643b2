"""What each model server speaks and takes, per route entry: set by the admin, or learned from the server's own
answers and remembered in the store (so every replica shares what one of them learned).

Servers differ from the documentation and from each other (FACTS.md, "OpenAI-compatible servers"): llama.cpp
answers 500 to a ``json_schema`` response format but takes ``json_object`` with a schema, cuts a running stream
when a second request arrives, and streams back nothing for a prompt past its context. So for each entry we keep:

- the structured-output dialect (``StructuredMode``), downgraded one step when the server refuses a mode and
  remembered once the next mode produced an answer;
- the context window: setting, else learned from an overflow, else what the server reports, else the table;
- how many calls it takes at once: setting, else learned when streams get cut while sibling calls run.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from llm.ports import ResponseCache
from llm.routes import RouteEntry

log = logging.getLogger(__name__)

# What was learned about a server is re-learned after this long: servers get upgraded and reconfigured.
LEARNED_TTL_S = 7 * 86400
# A context window the server reported is asked again after this long (it changes only on a server restart).
REPORTED_CONTEXT_TTL_S = 3600.0
# After an overflow, the window is believed to be this share of what the failed prompt needed in our own token
# count: our tokenizer (o200k) and the server's differ by 10-30 % on chat text, so a margin is needed.
OVERFLOW_MARGIN = 0.85


class StructuredMode(enum.StrEnum):
    """How a structured answer is asked for, strongest first; a refusal moves one step down."""

    JSON_SCHEMA = "json_schema"  # OpenAI strict structured outputs
    JSON_OBJECT = "json_object"  # JSON mode with the schema attached (llama.cpp turns it into a grammar)
    TOOL = "tool"  # a forced function/tool call whose parameters are the schema (Anthropic's usual way)
    PROMPT = "prompt"  # no server support: the schema goes in the prompt, the answer is parsed leniently


DOWNGRADE: dict[StructuredMode, StructuredMode | None] = {
    StructuredMode.JSON_SCHEMA: StructuredMode.JSON_OBJECT,
    StructuredMode.JSON_OBJECT: StructuredMode.TOOL,
    StructuredMode.TOOL: StructuredMode.PROMPT,
    StructuredMode.PROMPT: None,
}


@dataclass(frozen=True, slots=True)
class EntryOptions:
    """Per route entry settings (``SUPPORTBOT_MODEL_SERVERS``); None means "learn it / use the default"."""

    structured_output: StructuredMode | None = None
    context_window: int | None = None
    max_concurrency: int | None = None
    first_token_timeout_s: float | None = None


def options_for(options: dict[str, EntryOptions], entry: RouteEntry) -> EntryOptions:
    """The options of ``provider:model``, else of ``provider:*``, else defaults."""
    return options.get(f"{entry.provider}:{entry.model}") or options.get(f"{entry.provider}:*") or EntryOptions()


@dataclass(frozen=True, slots=True)
class EntryKey:
    """One model on one server: what learned facts are keyed by (never a string parsed back)."""

    provider: str
    model: str
    base_url: str

    @property
    def store_key(self) -> str:
        return "llm:server:" + json.dumps([self.provider, self.model, self.base_url], separators=(",", ":"))


@dataclass
class Learned:
    structured_output: StructuredMode | None = None
    context_window: int | None = None  # in our own token count (see OVERFLOW_MARGIN)
    max_concurrency: int | None = None


class ServerMemory:
    """Learned facts per entry: in memory for this process, and in the store's kv for every replica."""

    def __init__(self, kv: ResponseCache | None) -> None:
        self._kv = kv
        self._learned: dict[EntryKey, tuple[float, Learned]] = {}
        self._reported: dict[EntryKey, tuple[float, int | None]] = {}
        self._locks: dict[EntryKey, asyncio.Lock] = {}

    async def get(self, key: EntryKey) -> Learned:
        cached = self._learned.get(key)
        # Re-read the store now and then so what another replica learned reaches this one.
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        learned = Learned()
        if self._kv is not None:
            try:
                raw = await self._kv.get(key.store_key)
                if raw:
                    doc = json.loads(raw)
                    mode = doc.get("structured_output")
                    learned = Learned(
                        StructuredMode(mode) if mode in set(StructuredMode) else None,
                        _positive(doc.get("context_window")),
                        _positive(doc.get("max_concurrency")),
                    )
            except Exception:  # the store being down must not stop a model call
                log.warning("could not read what was learned about %s", key.model, exc_info=True)
                learned = cached[1] if cached is not None else Learned()
        self._remember(key, learned)
        return learned

    async def update(self, key: EntryKey, **changes: Any) -> Learned:
        learned = await self.get(key)
        for name, value in changes.items():
            setattr(learned, name, value)
        self._remember(key, learned)
        log.warning("learned about %s at %s: %s", key.model, key.base_url or key.provider, changes)
        if self._kv is not None:
            doc = {
                "structured_output": learned.structured_output.value if learned.structured_output else None,
                "context_window": learned.context_window,
                "max_concurrency": learned.max_concurrency,
            }
            try:
                await self._kv.put(key.store_key, json.dumps(doc), ttl_s=LEARNED_TTL_S)
            except Exception:
                log.warning("could not remember what was learned about %s", key.model, exc_info=True)
        return learned

    def _remember(self, key: EntryKey, learned: Learned) -> None:
        if len(self._learned) > 256:  # one entry per configured model: only a misconfiguration grows this
            self._learned.clear()
        self._learned[key] = (time.monotonic(), learned)

    def reported_context(self, key: EntryKey) -> tuple[bool, int | None]:
        """(known, window) of what the server said about its context, while still fresh."""
        hit = self._reported.get(key)
        if hit is None or time.monotonic() - hit[0] > REPORTED_CONTEXT_TTL_S:
            return False, None
        return True, hit[1]

    def set_reported_context(self, key: EntryKey, window: int | None) -> None:
        if len(self._reported) > 256:
            self._reported.clear()
        self._reported[key] = (time.monotonic(), window)

    def lock(self, key: EntryKey) -> asyncio.Lock:
        """One probe of a server at a time (parallel part calls all want the context window at once)."""
        return self._locks.setdefault(key, asyncio.Lock())


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class ConcurrencyGate:
    """At most ``limit`` calls at once to one entry (None: no limit). The limit can be lowered while calls run;
    the calls already running finish, and new ones wait until fewer than the new limit are in flight."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.active = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> ConcurrencyGate:
        async with self._changed:
            await self._changed.wait_for(lambda: self.limit is None or self.active < self.limit)
            self.active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.active -= 1
            self._changed.notify_all()

    async def set_limit(self, limit: int | None) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


# "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (…)" — OpenAI's wording,
# copied by llama-cpp-python (server/errors.py) and vLLM; Anthropic: "prompt is too long: 210000 tokens > 200000".
_MAX_CONTEXT = re.compile(r"maximum context length is (\d+)[^.]*\.\s*However, you requested (\d+)", re.I)
_ANTHROPIC_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+)", re.I)
_OVERFLOW_WORDS = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|context window|prompt is too long|too many tokens", re.I
)


def is_context_overflow(message: str, code: str | None = None) -> bool:
    return code == "context_length_exceeded" or bool(_OVERFLOW_WORDS.search(message))


def overflow_ratio(message: str) -> float | None:
    """The server's window divided by what the prompt needed in the server's count, when the message says."""
    for pattern, window_group, asked_group in ((_MAX_CONTEXT, 1, 2), (_ANTHROPIC_TOO_LONG, 2, 1)):
        m = pattern.search(message)
        if m:
            window, asked = int(m.group(window_group)), int(m.group(asked_group))
            if asked > 0:
                return window / asked
    return None


def window_after_overflow(needed: int, message: str) -> int:
    """The context window to believe from now on, in our own token count, after a prompt that needed ``needed``
    (prompt plus answer, counted by us) overflowed."""
    ratio = overflow_ratio(message)
    share = min(ratio * 0.97, OVERFLOW_MARGIN) if ratio is not None else OVERFLOW_MARGIN
    return max(256, int(needed * share))
