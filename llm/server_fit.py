"""How the router fits each call to the server that will answer it: the structured-output mode it takes, an answer
limit within its context window, no more calls at once than it bears, its timeouts — and what to change after a
failure before asking again. What it learns goes to ``ServerMemory`` (llm/servers.py), shared by every replica."""

from __future__ import annotations

import logging
from dataclasses import replace

from llm.models import capabilities
from llm.ports import ResponseCache
from llm.provider import ErrorInfo, Provider, StructuredSpec, Timeouts, self_hosted_timeouts
from llm.routes import RouteEntry
from llm.servers import (
    DOWNGRADE,
    ConcurrencyGate,
    EntryKey,
    EntryOptions,
    ServerMemory,
    options_for,
    window_after_overflow,
)
from llm.tokens import count_tokens
from llm.types import Request

log = logging.getLogger(__name__)

# When the context window is known, an answer is never allowed more room than the window leaves after the
# prompt (servers count prompt + max_tokens against it) — unless that leaves less than this, then it is left to
# the server to refuse (and the caller re-plans in smaller parts).
MIN_ANSWER_TOKENS = 256

# What to change before asking again at once ("": nothing; the usual retry rules apply).
FEWER_AT_ONCE = "fewer at once"
WHOLE = "whole"  # ask without streaming: the server says in an error what an empty stream hid
DOWNGRADE_MODE = "downgrade"


class ServerFit:
    def __init__(
        self, *, providers: dict[str, Provider], options: dict[str, EntryOptions], kv: ResponseCache | None
    ) -> None:
        self._providers = providers
        self._options = options
        self.memory = ServerMemory(kv)
        self._gates: dict[EntryKey, ConcurrencyGate] = {}

    def where(self, entry: RouteEntry, provider: Provider) -> EntryKey:
        return EntryKey(entry.provider, entry.model, provider.base_url)

    def options(self, entry: RouteEntry) -> EntryOptions:
        return options_for(self._options, entry)

    def timeouts(self, entry: RouteEntry, provider: Provider, base: Timeouts) -> Timeouts:
        first_token = self.options(entry).first_token_timeout_s
        if first_token is not None:
            return replace(base, first_token_s=first_token)
        return self_hosted_timeouts(base) if provider.self_hosted else base

    async def spec(
        self, structured: StructuredSpec | None, entry: RouteEntry, provider: Provider
    ) -> StructuredSpec | None:
        """How to ask this server for structure: the setting, else what was learned, else the provider's way."""
        if structured is None:
            return None
        learned = (await self.memory.get(self.where(entry, provider))).structured_output
        mode = self.options(entry).structured_output or learned
        return replace(structured, mode=mode or provider.default_structured_mode)

    async def remember_mode(self, entry: RouteEntry, provider: Provider, spec: StructuredSpec) -> None:
        """The weaker mode answered where the stronger one was refused: remember it for every replica."""
        await self.memory.update(self.where(entry, provider), structured_output=spec.mode)

    async def gate(self, entry: RouteEntry, provider: Provider) -> ConcurrencyGate:
        """This server's concurrency gate, at the lower of the setting and what was learned (by any replica)."""
        where = self.where(entry, provider)
        learned = (await self.memory.get(where)).max_concurrency
        limits = [n for n in (self.options(entry).max_concurrency, learned) if n is not None]
        limit = min(limits) if limits else None
        gate = self._gates.get(where)
        if gate is None:
            if len(self._gates) > 256:  # one per configured model and server; only misconfiguration grows it
                self._gates = {k: g for k, g in self._gates.items() if g.active}
            gate = self._gates[where] = ConcurrencyGate(limit)
        elif limit is not None and (gate.limit is None or limit < gate.limit):
            await gate.set_limit(limit)
        return gate

    async def adapt(
        self,
        info: ErrorInfo,
        *,
        entry: RouteEntry,
        provider: Provider,
        gate: ConcurrencyGate,
        siblings: int,
        had_text: bool,
        spec: StructuredSpec | None,
        streamed: bool,
    ) -> str:
        """What to change before asking again at once after this failure ("" when nothing is to change)."""
        overrun = info.kind in ("interrupted", "empty") or (info.kind == "timeout" and not had_text)
        if overrun and siblings > 0:
            # A stream cut while other calls ran on the same server: llama.cpp stops a running stream when the
            # next request arrives (FACTS.md) — right after its first chunk, the role, it looks empty; or no
            # first token while they ran: the server queues them. Fewer at once, shared with every replica; then
            # ask again.
            seen = siblings + 1  # calls in flight at once during this one
            if gate.limit is not None and gate.limit < seen:
                return FEWER_AT_ONCE  # a sibling hit by the same overrun already lowered the limit
            lower = max(1, seen // 2)
            await gate.set_limit(lower)
            await self.memory.update(self.where(entry, provider), max_concurrency=lower)
            return FEWER_AT_ONCE
        if info.kind == "empty" and streamed:
            # An empty 200 stream hides the reason (llama.cpp past its context); a whole answer says it.
            return WHOLE
        refused = info.status in (400, 422) or (provider.self_hosted and info.status in (500, 501))
        if spec is not None and refused and info.kind != "context_length_exceeded" and DOWNGRADE[spec.mode]:
            return DOWNGRADE_MODE
        return ""

    async def learn_overflow(self, entry: RouteEntry, provider: Provider, request: Request, info: ErrorInfo) -> None:
        where = self.where(entry, provider)
        needed = prompt_tokens(request) + (request.max_tokens or entry.max_tokens)
        window = window_after_overflow(needed, info.message)
        known = (await self.memory.get(where)).context_window
        if known is None or window < known:
            await self.memory.update(where, context_window=window)

    async def fit_answer(self, request: Request, entry: RouteEntry) -> Request:
        """The request with an answer limit that fits the window left after the prompt, when it has to shrink."""
        wanted = request.max_tokens or entry.max_tokens
        window = await self.context_window(entry)
        chars = len(request.system) + sum(len(m.content) for m in request.messages)
        if chars + wanted + 64 <= window:  # a token is at least one character: it fits without counting
            return request
        room = window - prompt_tokens(request)
        if wanted <= room or room < MIN_ANSWER_TOKENS:
            return request
        return replace(request, max_tokens=room)

    async def context_window(self, entry: RouteEntry) -> int:
        """The entry's context window: the setting, else what its server reports, else the built-in table
        (llm/models.py ``capabilities``: where a richer table, e.g. genai-prices' context windows, plugs in) —
        and never more than what an overflow taught (remembered in the store for every replica)."""
        provider = self._providers.get(entry.provider)
        window = self.options(entry).context_window
        if provider is not None:
            where = self.where(entry, provider)
            if window is None:
                async with self.memory.lock(where):
                    known, reported = self.memory.reported_context(where)
                    if not known:
                        try:
                            reported = await provider.context_window(entry)
                        except Exception:  # a probe must never fail a summary
                            log.warning("could not ask %s for its context window", entry.model, exc_info=True)
                            reported = None
                        self.memory.set_reported_context(where, reported)
                window = reported
            learned = (await self.memory.get(where)).context_window
            if learned is not None:
                window = min(window or learned, learned)
        return window or capabilities(entry.model).context_window


def prompt_tokens(request: Request) -> int:
    return count_tokens(request.system + "".join(m.content for m in request.messages)) + 4 * (
        len(request.messages) + 1  # chat templates add a few tokens per message
    )
