"""Whether Redis answers, shared by every part of one ResilientStore: when to probe a dead Redis again, the backlog
of writes waiting for it, and the bounded maps in which the parts answer locally meanwhile. What each part answers
during an outage is in keys.py, logs.py, ledger.py and live.py (summarised in ``__init__.py``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from bot.stores.base import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_AFTER_S = 1.0  # while Redis is down, try it again at most this often
# Buffered writes: a few hours of a busy workspace. The character bound keeps the worst case (Slack messages of up
# to 40,000 characters) to tens of MB.
BACKLOG_MAX_WRITES = 5_000
BACKLOG_MAX_CHARS = 20_000_000
CLAIMS_REMEMBERED = 50_000  # claim keys kept in memory (~100 bytes each)
LOCAL_ENTRIES_MAX = 10_000  # local counters, buckets, locks and remembered daily() answers, each


Unreachable = tuple[type[BaseException], ...]


@dataclass
class _Write:
    what: str
    run: Callable[[], Awaitable[Any]]
    chars: int
    key: str | None = None  # a later write with the same key replaces this one


class RedisOutage:
    """A Redis outage as one store sees it: whether Redis answers, shared by every part of one store: one outage, one log line at each end."""

    def __init__(self, *, unreachable: Unreachable, probe_after_s: float = PROBE_AFTER_S,
                 clock: Callable[[], float] = time.monotonic,
                 backlog_max_writes: int = BACKLOG_MAX_WRITES, backlog_max_chars: int = BACKLOG_MAX_CHARS) -> None:  # fmt: skip
        self._unreachable = unreachable
        self._probe_after_s = probe_after_s
        self._clock = clock
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self._backlog: deque[_Write] = deque()
        self._backlog_chars = 0
        self._backlog_max_writes, self._backlog_max_chars = backlog_max_writes, backlog_max_chars
        self._replaying = asyncio.Lock()
        self._kicked: asyncio.Task[bool] | None = None
        self.outages = 0
        self.fallbacks: Counter[str] = Counter()  # calls answered locally, by part
        self.dropped_writes = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def buffered_writes(self) -> int:
        return len(self._backlog)

    def _failed(self, what: str, error: BaseException) -> None:
        self._next_probe = self._clock() + self._probe_after_s
        if self._down_since is None:
            self._down_since = self._clock()
            self.outages += 1
            log.warning("store: Redis unreachable (%s: %s); answering locally until it is back", what, error)

    def _answered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "store: Redis answers again after %.1fs; %d call(s) were answered locally, %d write(s) to replay",
                self._clock() - self._down_since,
                sum(self.fallbacks.values()),
                len(self._backlog),
            )
            self._down_since = None
            if self._backlog and not self._replaying.locked():
                # Replay now rather than on the next write: a buffered live.done must reach Redis before another
                # replica's janitor mistakes that finished reply for an orphan.
                self._kicked = asyncio.ensure_future(self.replay())

    async def run(self, what: str, op: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        """``op()`` on Redis, or ``fallback()`` while Redis does not answer."""
        probe = self.down
        if probe:
            if self._probing or self._clock() < self._next_probe:
                self.fallbacks[what] += 1
                return fallback()
            self._probing = True  # one probe at a time
        try:
            result = await op()
        except self._unreachable as error:
            self._failed(what, error)
            self.fallbacks[what] += 1
            return fallback()
        finally:
            if probe:
                self._probing = False
        self._answered()
        return result

    async def write(
        self, what: str, op: Callable[[], Awaitable[Any]], *, chars: int = 0, key: str | None = None
    ) -> None:
        """Run a write now if Redis answers (after older buffered writes), else keep it for later, in order."""

        async def written() -> bool:
            await op()
            return True

        if await self.replay() and await self.run(what, written, lambda: False):
            return
        if key is not None:
            # Not the write a replay is running now: the replay pops the backlog's head when that write ends, which
            # would then be this one — a done() lost while the heartbeat it follows lands.
            running = self._backlog[0] if self._replaying.locked() and self._backlog else None
            for old in [w for w in self._backlog if w.key == key and w is not running]:
                self._backlog.remove(old)
                self._backlog_chars -= old.chars
        self._backlog.append(_Write(what, op, chars, key))
        self._backlog_chars += chars
        while len(self._backlog) > self._backlog_max_writes or self._backlog_chars > self._backlog_max_chars:
            dropped = self._backlog.popleft()
            self._backlog_chars -= dropped.chars
            self.dropped_writes += 1
            log.error("store: write backlog full; dropped the oldest buffered write (%s)", dropped.what)

    async def replay(self) -> bool:
        """Write the backlog, oldest first. False when some is left because Redis does not answer."""
        if not self._backlog:
            return True

        async def drain() -> bool:
            async with self._replaying:
                while self._backlog:
                    try:
                        await self._backlog[0].run()
                    except self._unreachable:
                        raise
                    except Exception:  # a write Redis refuses (not an outage) must not block every later one
                        log.exception(
                            "store: a buffered write failed and was dropped (%s)", self._backlog[0].what
                        )
                        self.dropped_writes += 1
                    self._backlog_chars -= self._backlog.popleft().chars
            log.info("store: buffered writes replayed")
            return True

        return await self.run("replay", drain, lambda: False)

    async def settle(self) -> None:
        """Wait for a replay started on recovery (before closing the connection it uses)."""
        if self._kicked is not None:
            await asyncio.gather(self._kicked, return_exceptions=True)

    def unavailable(self, what: str) -> NoReturn:
        raise StoreUnavailable(f"the shared store (Redis) is unreachable: cannot read {what} now")
