"""The lease of an FAQ run that waits for the Batch APIs (a scheduled refresh): while it waits — minutes to hours —
it renews a note in the store saying until when it is known alive, with its channel lock's token. A replica that
dies (a crash, a restart) stops renewing it; the next scheduler to see the lapsed lease takes the run over at once
(bot/faq_schedule.py) — frees the dead run's lock with that token and runs again, polling the batches the dead run
left in flight (llm/batch.py notes them) — instead of leaving the channel locked for hours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.background import Repeating
from bot.stores.base import KeyValue
from bot.types import ChannelRef

log = logging.getLogger(__name__)

# A run renews its lease every LEASE_S / 4; one not renewed for LEASE_S is dead (a poll is 30 s, a store write ms).
LEASE_S = 120.0


class RunLease:
    def __init__(self, kv: KeyValue, channel: ChannelRef, clock: Callable[[], datetime]) -> None:
        self._kv = kv
        self._key = f"faq-run:{channel.key}"
        self._channel = channel
        self._clock = clock

    async def hold(self, token: str, *, ttl_s: float) -> Repeating:
        """Writes the lease (the run's lock ``token`` and until when it is alive) and renews it until stopped."""

        async def renew() -> None:
            until = self._clock() + timedelta(seconds=LEASE_S)
            try:
                await self._kv.put(self._key, json.dumps({"lock": token, "until": until.isoformat()}), ttl_s=ttl_s)
            except Exception:  # the lease is a way to recover sooner; the lock still lapses by itself
                log.warning("could not renew the FAQ run lease of %s", self._channel.key, exc_info=True)

        await renew()
        return Repeating(renew, every_s=LEASE_S / 4, name="faq-run-lease")

    async def dead(self) -> str | None:
        """The lock token of a run whose lease lapsed without being ended (the run died), else None."""
        raw = await self._kv.get(self._key)
        try:
            lease = json.loads(raw) if raw else None
            if isinstance(lease, dict) and datetime.fromisoformat(lease["until"]) < self._clock():
                return str(lease["lock"])
        except (ValueError, KeyError, TypeError):
            pass
        return None

    async def end(self) -> None:
        await self._kv.delete(self._key)
