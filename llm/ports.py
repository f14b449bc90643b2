"""The ports of llm/: what bot/ sees of it (``LLM``), and what it needs from storage (``LedgerSink``,
``ResponseCache``; bot/stores implements these, and llm/ never imports bot/).

``ModelRouter`` is the one production ``LLM``; only the composition root (bot/app.py, bot/cli.py, bot/doctor.py)
builds it. Tests may hand the use cases the router over an in-process provider, or any object with these methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from pydantic import BaseModel

from llm.types import Answer, Attribution, Chunk, LedgerRecord, Request, Task

M = TypeVar("M", bound=BaseModel)


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


class LedgerSink(Protocol):
    async def add(self, record: LedgerRecord) -> None: ...


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str, *, ttl_s: float) -> None: ...
