"""Redis: short-lived keys, each with its own PX expiry — event claims, key-values (caches and counters) and job
locks."""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from bot.stores.redis.client import ms

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisClaims:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, prefix

    async def claim(self, key: str, *, ttl_s: float) -> bool:
        # Errors propagate: on a dead Redis the caller decides whether to handle the event unclaimed.
        return bool(await self._r.set(f"{self._prefix}claim:{key}", "1", nx=True, px=ms(ttl_s)))


class RedisKeyValue:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, f"{prefix}kv:"

    async def get(self, key: str) -> str | None:
        value = await self._r.get(self._prefix + key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        await self._r.set(self._prefix + key, value, px=ms(ttl_s))

    async def delete(self, key: str) -> None:
        await self._r.delete(self._prefix + key)

    async def incr(self, key: str, *, ttl_s: float) -> int:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.incr(self._prefix + key)
            pipe.pexpire(self._prefix + key, ms(ttl_s), nx=True)  # the window starts with the first count
            count, _ = await pipe.execute()
        return int(count)


class RedisLocks:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._prefix = r, f"{prefix}lock:"
        self._release = r.register_script(RELEASE_LOCK)

    async def acquire(self, name: str, *, ttl_s: float) -> str | None:
        token = secrets.token_hex(16)
        acquired = await self._r.set(self._prefix + name, token, nx=True, px=ms(ttl_s))
        return token if acquired else None

    async def release(self, name: str, token: str) -> bool:
        # Compare-and-delete in one step: a holder whose lock expired must not delete the next holder's lock.
        return bool(await self._release(keys=[self._prefix + name], args=[token]))
