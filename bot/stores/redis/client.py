"""The connection every part of the Redis store shares: how long a call may wait, which errors mean "Redis does not
answer", and the small helpers for replies and batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py retries 3 times with up to 10 s backoff by default; a call on a dead Redis should fail within a second
# so the ledger buffers and the user's reply is not held up.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 10.0
BATCH = 500  # keys per MGET/HMGET/pipeline: large enough to be cheap, small enough not to block Redis
# What an outage raises (refused, reset, timed out): ResilientStore answers locally on these and only these.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str) -> Redis:
    """A client for ``url``; it connects lazily, on its first call."""
    return Redis.from_url(
        url,
        decode_responses=True,
        retry=RETRY,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
    )


def ms(ttl_s: float) -> int:
    """A TTL in whole milliseconds (PX), never 0: Redis refuses a zero expiry."""
    return max(1, round(ttl_s * 1000))


def strs(values: Iterable[Any]) -> list[str]:
    """redis-py types replies as bytes | str; with decode_responses=True they are str."""
    return [str(v) for v in values]


def chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]
