"""The neutral language between bot/ and llm/: small frozen dataclasses, no SDK types.

Token classes are normalised here once, so nothing downstream has to know the providers' conventions:
``Usage.input`` is *uncached, non-cache-write* input. OpenAI's ``prompt_tokens`` includes its cached tokens and
is split by the OpenAI provider; Anthropic's ``input_tokens`` already excludes cache reads and writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal


class Task(enum.StrEnum):
    """What a model call is for; routes, cache TTLs and ledger rows are keyed by it."""

    SUMMARIZE = "summarize"
    COMBINE = "combine"  # merge partial summaries of a thread too long for one call
    CLASSIFY = "classify"
    FAQ = "faq"
    FAQ_BRIEF = "faq_brief"  # FAQ entries for a topic with one short answer: the cheap route writes them
    PROBE = "probe"  # `supportbot doctor`


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """A provider-neutral prompt.

    ``system`` is the stable prefix (instructions shared by every call of a task): it is what prompt caching marks.
    ``prompt_version`` names the wording of the prompt so a cached response never outlives a prompt change.
    """

    system: str
    messages: tuple[Message, ...]
    prompt_version: str = "1"
    max_tokens: int | None = None  # None: the route's max_tokens

    @classmethod
    def of(
        cls, system: str, user: str, *, prompt_version: str = "1", max_tokens: int | None = None
    ) -> Request:
        return cls(system, (Message("user", user),), prompt_version=prompt_version, max_tokens=max_tokens)


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0  # uncached input, excluding cache reads and cache writes
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    estimated: bool = False  # True when the provider sent no usage and we counted ourselves

    @property
    def total_input(self) -> int:
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer. The last chunk of a call carries the usage and no text."""

    text: str = ""
    usage: Usage | None = None
    truncated: bool = False  # on the last chunk: the answer was cut short by the output limit (finish "length")


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer, for callers that do not stream it to anyone."""

    text: str
    truncated: bool = False  # cut short by the model's output limit


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a call is billed to: the ledger's and the response cache's scope."""

    platform: str = "console"
    workspace: str = "local"
    channel: str = ""
    user: str = ""
    feature: str = ""  # summary, faq, llmcost, doctor …

    @property
    def scope(self) -> str:
        """Response-cache scope: a cached answer never leaves its channel."""
        return f"{self.platform}:{self.workspace}:{self.channel}"


class Outcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # failed before any text arrived
    INTERRUPTED = "interrupted"  # text arrived, then the stream broke
    CACHED = "cached"  # served from the response cache, no model call


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One model call (or response-cache hit), as the ledger keeps it."""

    at: datetime
    provider: str
    model: str
    task: str
    platform: str
    workspace: str
    channel: str
    user: str
    feature: str
    usage: Usage
    cost_usd: Decimal
    latency_s: float
    ttft_s: float | None
    outcome: Outcome
    cache_hit: bool = False
    error: str = ""
    saved_usd: Decimal = Decimal(0)  # what prompt caching or the response cache saved on this call
    id: str = field(default="")
    unpriced: bool = False  # no price source knows the model: cost_usd is 0 but the call was not free
    self_hosted: bool = False  # the provider's base URL is not the provider's own (priced only by the price file)
    price_source: str = ""  # "genai-prices X.Y.Z", "price file", or "" (unpriced, cache hit, nothing billed)
    truncated: bool = False  # the answer was cut short by the output limit (finish reason "length")

    @property
    def failed(self) -> bool:
        """The caller got no complete answer from this call."""
        return self.outcome in (Outcome.ERROR, Outcome.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class ModelMissing:
    """A route entry's model answered "not found" (retired, renamed, or not offered to this key)."""

    provider: str
    model: str
    task: str
    fallback: str | None  # "provider:model" of the next entry tried, None when the route had no other
    message: str = ""  # the provider's own words


class LLMError(Exception):
    """A model call failed in a way the user should be told about (after retries and fallbacks)."""

    def __init__(self, message: str, *, kind: str = "error", partial_text: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # timeout, rate_limited, auth, overloaded, bad_request, unavailable, invalid_output
        self.partial_text = partial_text


class StructuredOutputError(LLMError):
    """The model's structured answer did not validate, even after one repair attempt."""


class BatchFailed(LLMError):
    """A batch failed, expired or was cancelled as a whole: the caller keeps what it had and retries later."""

    def __init__(self, message: str, *, batch_id: str = "") -> None:
        super().__init__(message, kind="batch_failed")
        self.batch_id = batch_id
