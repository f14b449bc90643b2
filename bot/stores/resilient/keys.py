"""Claims, key-values and locks while Redis is down: claims answer True (remembered in this process), kv reads
miss and writes are skipped, counters and locks live in this process."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from bot.stores.base import EventClaims, KeyValue, Locks
from bot.stores.resilient.guard import CLAIMS_REMEMBERED, Bounded, Guard


class ResilientClaims:
    def __init__(self, inner: EventClaims, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._claimed: Bounded[float] = Bounded(CLAIMS_REMEMBERED)  # key → when our claim expires

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        now = self._clock()
        expires = self._claimed.get(key)
        if expires is not None and expires > now:
            return False  # this process claimed it: a re-delivery, whatever Redis remembers
        first = await self._guard.run("claims", lambda: self._inner.claim(key, ttl_s=ttl_s), lambda: True)
        if first:
            self._claimed.keep(key, now + ttl_s)
        return first


class ResilientKeyValue:
    def __init__(self, inner: KeyValue, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._counters: Bounded[tuple[int, float]] = Bounded()  # key → (count, expires at)

    async def get(self, key: str) -> str | None:
        return await self._guard.run("kv.get", lambda: self._inner.get(key), lambda: None)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        await self._guard.run("kv.put", lambda: self._inner.put(key, value, ttl_s=ttl_s), lambda: None)

    async def delete(self, key: str) -> None:
        await self._guard.run("kv.delete", lambda: self._inner.delete(key), lambda: None)

    async def incr(self, key: str, *, ttl_s: float) -> int:
        return await self._guard.run("kv.incr", lambda: self._inner.incr(key, ttl_s=ttl_s),
                                     lambda: self._local_incr(key, ttl_s))  # fmt: skip

    def _local_incr(self, key: str, ttl_s: float) -> int:
        now = self._clock()
        count, expires = self._counters.get(key, (0, now + ttl_s))
        if expires <= now:  # a fixed window, like the Redis counter
            count, expires = 0, now + ttl_s
        self._counters.keep(key, (count + 1, expires))
        return count + 1


LOCAL_TOKEN_PREFIX = "local-"


class ResilientLocks:
    def __init__(self, inner: Locks, guard: Guard, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner, self._guard, self._clock = inner, guard, clock
        self._held: Bounded[tuple[str, float]] = Bounded()  # name → (token, expires at)

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        return await self._guard.run("locks", lambda: self._inner.acquire(name, ttl_s=ttl_s),
                                     lambda: self._local_acquire(name, ttl_s))  # fmt: skip

    async def release(self, name: str, token: str) -> bool:
        if token.startswith(LOCAL_TOKEN_PREFIX):
            held = self._held.get(name)
            if held is None or held[0] != token:
                return False
            del self._held[name]
            return True
        # A Redis lock we cannot release now expires by its TTL.
        return await self._guard.run("locks", lambda: self._inner.release(name, token), lambda: False)

    def _local_acquire(self, name: str, ttl_s: float) -> str | None:
        now = self._clock()
        held = self._held.get(name)
        if held is not None and held[1] > now:
            return None
        token = LOCAL_TOKEN_PREFIX + secrets.token_hex(16)
        self._held.keep(name, (token, now + ttl_s))
        return token
