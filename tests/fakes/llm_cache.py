"""Prompt-cache simulation for the fake LLM server: enough of each provider's rules to test cost accounting.

Anthropic (docs: prompt caching): blocks marked with ``cache_control`` are breakpoints. A request reads the
longest marked prefix that an earlier request wrote (and refreshes it); the prefix up to the LAST marked block is
written when it is not cached yet and holds at least ``min_tokens`` (below that it is silently not cached).
TTL 5 minutes, or 1 hour with ``"ttl": "1h"``. Cache entries are per model.

OpenAI (docs: prompt caching): automatic for prompts of at least 1,024 tokens; a hit covers the prefix shared with
an earlier prompt of the same model, in steps of 128 tokens. The fake compares prompt strings character by
character and counts the shared prefix's tokens, then rounds down to a multiple of 128 (approximate by design).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tests.fakes.llm_wire import Block, count_tokens

ANTHROPIC_TTL_S = {"5m": 300.0, "1h": 3600.0}
OPENAI_MIN_CACHEABLE = 1024  # OpenAI docs: "Caching is enabled automatically for prompts that are 1024 tokens or longer"
OPENAI_CACHE_STEP = 128  # OpenAI docs: "cache hits occur ... in increments of 128 tokens"
_OPENAI_HISTORY = 256  # prompts remembered; plenty for a test, bounded for a long demo run


@dataclass(frozen=True, slots=True)
class InputTokens:
    """Input token classes of one request. ``uncached`` excludes reads and writes (Anthropic's convention)."""

    uncached: int
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def total(self) -> int:
        return self.uncached + self.cache_read + self.cache_write_5m + self.cache_write_1h


class AnthropicPromptCache:
    def __init__(self, *, min_tokens: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_tokens = min_tokens
        self._clock = clock
        self._expiry: dict[str, float] = {}  # prefix key -> monotonic expiry

    def account(self, model: str, blocks: list[Block]) -> InputTokens:
        total = max(1, count_tokens("".join(b.text for b in blocks)))
        now = self._clock()
        read = 0
        last: tuple[str, int, float] | None = None
        for i, block in enumerate(blocks):
            if not block.cache_control:
                continue
            prefix = "".join(b.text for b in blocks[: i + 1])
            key = hashlib.sha256(f"{model}\0{prefix}".encode()).hexdigest()
            tokens = count_tokens(prefix)
            ttl = ANTHROPIC_TTL_S["1h" if block.cache_control.get("ttl") == "1h" else "5m"]
            if self._expiry.get(key, -1.0) > now:
                read = tokens  # breakpoints come in prefix order: the last live one is the longest
                self._expiry[key] = now + ttl  # a hit refreshes the entry's lifetime
            last = (key, tokens, ttl)
        write_5m = write_1h = 0
        if last is not None:
            key, tokens, ttl = last
            if tokens >= self.min_tokens and tokens > read:
                self._expiry[key] = now + ttl
                if ttl == ANTHROPIC_TTL_S["1h"]:
                    write_1h = tokens - read
                else:
                    write_5m = tokens - read
        uncached = max(0, total - read - write_5m - write_1h)
        return InputTokens(uncached, read, write_5m, write_1h)


class OpenAIPromptCache:
    def __init__(self, *, min_tokens: int = OPENAI_MIN_CACHEABLE) -> None:
        self.min_tokens = min_tokens
        self._seen: deque[tuple[str, str]] = deque(maxlen=_OPENAI_HISTORY)

    def account(self, model: str, prompt: str) -> InputTokens:
        """Returns prompt tokens split into uncached and cached (OpenAI reports their sum as prompt_tokens)."""
        total = max(1, count_tokens(prompt))
        cached = 0
        if total >= self.min_tokens:
            shared = max(
                (len(os.path.commonprefix([prompt, seen])) for m, seen in self._seen if m == model), default=0
            )
            shared_tokens = count_tokens(prompt[:shared])
            if shared_tokens >= self.min_tokens:
                cached = min(total, shared_tokens // OPENAI_CACHE_STEP * OPENAI_CACHE_STEP)
        self._seen.append((model, prompt))
        return InputTokens(total - cached, cached)
