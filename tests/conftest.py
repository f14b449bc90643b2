"""Shared fixtures: a throwaway Redis for the session, tiktoken's offline cache, the fake model server and an
in-memory SQLite store (a test module may define its own of the same name instead)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.stores.sqlite import SqliteStore
from tests.fakes.llm_server import FakeLLMServer
from tests.redis_server import RedisServer

_TIKTOKEN_CACHE = Path(__file__).parents[1] / ".." / "shared" / "tiktoken"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _TIKTOKEN_CACHE.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_TIKTOKEN_CACHE.resolve())


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_TEST_URL if set, else a redis-server started for this session (its absence fails loudly)."""
    if url := os.environ.get("REDIS_TEST_URL"):
        yield url
        return
    try:
        server = RedisServer().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of its own per test, so tests sharing one Redis never see each other's keys."""
    return f"sbtest-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as s:
        yield s


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    s = await SqliteStore(":memory:").open()
    yield s
    await s.close()
