"""Storage: SQLite embedded by default, Redis when replicas share state.

base.py is the contract (the protocols and StoreUnavailable); sqlite/ and redis/ implement it once each, one
module per part; resilient/ wraps Redis so an outage degrades the bot; codec.py is how both engines write values.
Nothing in here imports a sibling package except through this module's open_store()."""

from __future__ import annotations

from bot.stores.base import Store, StoreUnavailable
from bot.stores.resilient import ResilientStore

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
