"""Yes/no facts the bot learns about a Slack workspace from Slack's answers (native streaming refused here), each
with an expiry so it is checked again, shared by every replica through the store. Learned rates are learned.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from adapters.slack.remembered import REFRESH_S
from bot.stores.base import KeyValue, StoreUnavailable

log = logging.getLogger(__name__)


class WorkspaceFacts:
    """Yes/no facts about a workspace, each with an expiry, shared through the store (or this process's memory)."""

    def __init__(self, kv: KeyValue | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._kv, self._clock = kv, clock
        self._local: dict[str, tuple[str, float]] = {}  # key → (value, expires) as this process last saw it

    async def get(self, key: str) -> str | None:
        cached = self._local.get(key)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        value = None
        if self._kv is not None:
            try:
                value = await self._kv.get(f"slack:fact:{key}")
            except StoreUnavailable:
                value = None
        # Read again in a while: another replica may learn it, or its expiry may pass.
        self._local[key] = (value or "", self._clock() + REFRESH_S)
        return value or None

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        # With a store, this process re-reads it soon (another replica may re-learn it); without, it is the record.
        self._local[key] = (value, self._clock() + (ttl_s if self._kv is None else min(ttl_s, REFRESH_S)))
        if self._kv is not None:
            try:
                await self._kv.put(f"slack:fact:{key}", value, ttl_s=ttl_s)
            except StoreUnavailable:
                log.warning("could not remember %s=%s in the store", key, value)
