"""What a learned budget (learned.py) keeps in the store for every replica: one scope's learned rate, ``Learned``.

Each replica holds its copy (``Held``), adopts another replica's at most every REFRESH_S, and writes its own at most
every WRITE_EVERY_S (a 429 at once); with the store down it keeps its own and writes it when the store is back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bot.stores.base import KeyValue, StoreUnavailable

log = logging.getLogger(__name__)

# What was learned is kept this long in the store, then re-learned from the documented start.
LEARNED_TTL_S = 24 * 3600.0
# Replicas re-read the shared rate this often, and write theirs at most this often (a 429 is written at once).
REFRESH_S = 5.0
WRITE_EVERY_S = 2.0


@dataclass
class Learned:
    """One scope's learned rate; times are wall-clock (time.time()) so replicas agree on them."""

    per_minute: float
    ceiling: float = 0.0  # the rate Slack last refused (0: none known)
    ceiling_until: float = 0.0
    pinned_until: float = 0.0  # a rate set from a known fact (the restricted tier): no probing until then
    trial_from: float = 0.0  # the rate before accepted probes raised it (0: not on trial) ...
    trial_until: float = 0.0  # ... until then (learned.PROBE_TRIAL_S)


@dataclass
class Held:
    """This replica's copy of one scope's ``Learned``, and when it was last read from and written to the store."""

    learned: Learned
    loaded_at: float = float("-inf")
    written_at: float = float("-inf")
    dirty: bool = False


class LearnedMemory:
    """The store's copies of one Slack method's learned rates (``name``), by scope; no ``kv``: nothing is kept."""

    def __init__(self, kv: KeyValue | None, *, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._kv, self._name, self._clock = kv, name, clock

    def _key(self, scope: str) -> str:
        return f"slack:learned:{scope}:{self._name}"

    async def refresh(self, scope: str, held: Held) -> None:
        """Adopt what another replica learned (read at most every REFRESH_S)."""
        now = self._clock()
        if self._kv is None or now - held.loaded_at < REFRESH_S:
            return
        held.loaded_at = now
        if held.dirty:
            await self.write(scope, held, force=True)
            return
        if (stored := await self.stored(scope)) is not None:
            held.learned = stored

    async def stored(self, scope: str) -> Learned | None:
        """What the store holds for ``scope`` (None: nothing, no store, or the store is down)."""
        if self._kv is None:
            return None
        try:
            raw = await self._kv.get(self._key(scope))
        except StoreUnavailable:
            return None
        if not raw:
            return None
        try:
            return Learned(**json.loads(raw))
        except (TypeError, ValueError):
            log.warning("ignored an unreadable learned rate for %s %s", self._name, scope)
            return None

    async def write(self, scope: str, held: Held, *, force: bool) -> None:
        now = self._clock()
        if self._kv is None or (not force and now - held.written_at < WRITE_EVERY_S):
            held.dirty = self._kv is not None
            return
        held.written_at, held.dirty = now, False
        try:
            await self._kv.put(self._key(scope), json.dumps(asdict(held.learned)), ttl_s=LEARNED_TTL_S)
        except StoreUnavailable:
            held.dirty = True
