"""Storage: SQLite embedded by default, Redis when replicas share state."""

from __future__ import annotations

from bot.stores.base import Store


async def open_store(*, redis_url: str | None, sqlite_path: str) -> Store:
    """Redis when ``redis_url`` is set (replicas share it), otherwise the SQLite file at ``sqlite_path``."""
    if redis_url:
        from bot.stores.redis import RedisStore

        return await RedisStore(redis_url).open()
    from bot.stores.sqlite import SqliteStore

    return await SqliteStore(sqlite_path).open()
