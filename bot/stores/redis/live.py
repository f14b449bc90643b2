"""Redis: rate budgets shared by replicas (a Lua token bucket on Redis's clock) and the registry of replies in
progress (a hash of states and a sorted set of heartbeats)."""

from __future__ import annotations

from redis.asyncio import Redis

# Token bucket on the server's clock, so replicas with skewed clocks still share one budget. Returns the wait in
# seconds as a string (Lua numbers would be truncated to integers on the way out).
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'paused')
local tokens, updated, paused = tonumber(b[1]) or burst, tonumber(b[2]) or now, tonumber(b[3]) or 0
if now < paused then return tostring(paused - now) end
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(updated), 'paused', tostring(paused))
redis.call('PEXPIRE', KEYS[1], ttl)
return tostring(wait)
"""

PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'updated', 'paused')
local paused = math.max(tonumber(b[2]) or 0, now + tonumber(ARGV[1]))
local updated = math.max(tonumber(b[1]) or now, paused)
redis.call('HSET', KEYS[1], 'tokens', '0', 'updated', tostring(updated), 'paused', tostring(paused))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# A heartbeat for a reply already marked done is dropped: a late write (a command cancelled on the wire, a write
# replayed after an outage) must not bring a finished reply back for a janitor to mark "interrupted".
HEARTBEAT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1e6, ARGV[1])
return 1
"""
DONE_REMEMBERED_S = 86_400  # far longer than any write can arrive late

BUCKET_TTL_MS = 3_600_000  # an idle bucket is full again long before this; letting it expire frees the key


class RedisBudgets:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._prefix = f"{prefix}budget:"
        self._take = r.register_script(TAKE)
        self._pause = r.register_script(PAUSE)

    async def try_take(self, scope: str, *, per_minute: float, burst: int) -> float:
        wait = await self._take(keys=[self._prefix + scope], args=[per_minute / 60.0, burst, BUCKET_TTL_MS])
        return float(wait)

    async def pause(self, scope: str, seconds: float) -> None:
        await self._pause(keys=[self._prefix + scope], args=[seconds, BUCKET_TTL_MS])


class RedisLiveReplies:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r = r
        self._states, self._beats, self._done = f"{prefix}live:state", f"{prefix}live:beat", f"{prefix}live:done:"
        self._heartbeat = r.register_script(HEARTBEAT)

    async def heartbeat(self, reply_id: str, state: str) -> None:
        await self._heartbeat(keys=[self._states, self._beats, self._done + reply_id], args=[reply_id, state])

    async def done(self, reply_id: str) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(self._states, reply_id)
            pipe.zrem(self._beats, reply_id)
            pipe.set(self._done + reply_id, 1, ex=DONE_REMEMBERED_S)
            await pipe.execute()

    async def stale(self, *, older_than_s: float, limit: int = 100) -> list[tuple[str, str]]:
        seconds, micros = await self._r.time()
        cutoff = seconds + micros / 1e6 - older_than_s
        ids = [str(i) for i in await self._r.zrangebyscore(self._beats, "-inf", f"({cutoff}", start=0, num=limit)]
        if not ids:
            return []
        states = await self._r.hmget(self._states, ids)
        return [(str(i), str(s)) for i, s in zip(ids, states, strict=True) if s is not None]
