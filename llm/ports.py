"""The ports of llm/: what bot/ sees of it (``LLM``, and ``BatchLLM`` for calls nobody waits for), and what it
needs from storage (``LedgerSink``, ``ResponseCache``; bot/stores implements these, and llm/ never imports bot/).

``ModelRouter`` is the one production ``LLM`` and ``BatchLLM``; only the composition root (bot/app.py, bot/cli.py,
bot/doctor.py) builds it. Tests may hand the use cases the router over an in-process provider, or any object with
these methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import BaseModel

from llm.types import Answer, Attribution, Chunk, LedgerRecord, Request, Task

M = TypeVar("M", bound=BaseModel)

# A batch not done in this long is cancelled and ``BatchLLM.structured_batch`` fails (the caller retries on its next
# run): both providers finish within 24 h, most within an hour, and a weekly refresh should not hold its channel's
# lock for a day.
BATCH_WAIT_S = 3 * 3600.0


class LLM(Protocol):
    """Every call is billed to ``bill_to`` (one ledger record per provider call or cache hit) and fails with
    ``llm.types.LLMError`` carrying a message fit to show the person who asked."""

    def stream(self, task: Task, request: Request, *, bill_to: Attribution) -> AsyncIterator[Chunk]:
        """Text chunks as the model writes them (a chunk marked ``truncated`` when the output limit cut it)."""
        ...

    async def answer(self, task: Task, request: Request, *, bill_to: Attribution) -> Answer:
        """The whole answer of a call nobody watches arrive."""
        ...

    async def structured(self, task: Task, request: Request, schema: type[M], *, bill_to: Attribution) -> M:
        """A validated instance of ``schema``."""
        ...

    async def context_budget(self, task: Task) -> int:
        """Prompt tokens every model of the task's route can take, answer excluded."""
        ...


class BatchJournal(Protocol):
    """Where batches in flight are written down (the store's key-value space, shared by every replica)."""

    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str, *, ttl_s: float) -> None: ...
    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchJob:
    """The job a batch belongs to (a channel's FAQ refresh): its batches in flight are noted under ``key`` in
    ``journal``, so whoever runs the job next resumes them."""

    journal: BatchJournal
    key: str


class BatchLLM(Protocol):
    """Calls nobody waits for (a scheduled job), through the providers' Batch APIs at half the list price."""

    async def structured_batch(
        self,
        task: Task,
        requests: list[Request],
        schema: type[M],
        *,
        bill_to: Attribution,
        job: BatchJob | None = None,
    ) -> list[M]:
        """Validated answers in the order of ``requests``, each billed to ``bill_to``; ``llm.types.BatchFailed``
        when a batch failed, expired or was not done within ``BATCH_WAIT_S`` as a whole. With ``job``, batches in
        flight are noted in its journal, and a run of the same job resumes them instead of paying again."""
        ...


class LedgerSink(Protocol):
    async def add(self, record: LedgerRecord) -> None: ...


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str, *, ttl_s: float) -> None: ...
