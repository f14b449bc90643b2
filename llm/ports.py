"""What llm/ needs from storage. bot/stores implements these; llm/ never imports bot/."""

from __future__ import annotations

from typing import Protocol

from llm.types import LedgerRecord


class LedgerSink(Protocol):
    async def add(self, record: LedgerRecord) -> None: ...


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str, *, ttl_s: float) -> None: ...
