"""Answers kept in the response cache (the store's key-value space, through ``llm.ports.ResponseCache``), with the
entry that wrote them and what they cost — a hit's ledger record says what it saved.

The cache is a saving, never a requirement: a read that fails is a miss, a write that fails is skipped."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

from llm.ports import ResponseCache
from llm.routes import RouteEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    entry: RouteEntry  # who wrote it (max_tokens 0: not known, not needed)
    cost_usd: Decimal  # what the call that wrote it cost: what each hit saves
    truncated: bool


class CachedAnswers:
    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            raw = await self._cache.get(key)
            if raw is None:
                return None
            data = json.loads(raw)
            entry = RouteEntry(data["provider"], data["model"], 0)
            return CachedAnswer(data["text"], entry, Decimal(data["cost"]), bool(data.get("truncated")))
        except Exception:
            log.warning("response cache read failed; calling the model", exc_info=True)
            return None

    async def put(self, key: str, answer: CachedAnswer, *, ttl_s: float) -> None:
        value = json.dumps(
            {"text": answer.text, "provider": answer.entry.provider, "model": answer.entry.model,
             "cost": str(answer.cost_usd), "truncated": answer.truncated}
        )  # fmt: skip
        try:
            await self._cache.put(key, value, ttl_s=ttl_s)
        except Exception:
            log.warning("response cache write failed", exc_info=True)
