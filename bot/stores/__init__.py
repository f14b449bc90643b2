"""Storage: SQLite embedded by default, Redis when replicas share state."""

from __future__ import annotations

from bot.stores.base import Store
from bot.stores.resilient import ResilientStore, StoreUnavailable

__all__ = ["ResilientStore", "Store", "StoreUnavailable", "open_store"]


async def open_store(*, redis_url: str | None, sqlite_path: str) -> Store:
    """Redis when ``redis_url`` is set (replicas share it), otherwise the SQLite file at ``sqlite_path``.

    Redis comes wrapped in a ResilientStore, so an outage degrades the bot instead of stopping it; SQLite is
    local and its errors are real ones, so it is returned as is."""
    if redis_url:
        from bot.stores.redis import UNREACHABLE, RedisStore

        return ResilientStore(await RedisStore(redis_url).open(), unreachable=UNREACHABLE)
    from bot.stores.sqlite import SqliteStore

    return await SqliteStore(sqlite_path).open()
