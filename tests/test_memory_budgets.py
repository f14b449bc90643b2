"""bot/stores/memory.py: the one in-process token bucket (Slack's per-process budgets, the resilient store while
Redis is down) keeps the arithmetic the Redis and SQLite budgets keep (tests/test_store_contract.py)."""

from __future__ import annotations

import pytest

from bot.stores.memory import MemoryBudgets


async def test_burst_then_refill_per_scope() -> None:
    now = [0.0]
    budgets = MemoryBudgets(clock=lambda: now[0])
    assert [await budgets.try_take("slack:T1", per_minute=60, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await budgets.try_take("slack:T1", per_minute=60, burst=3) == pytest.approx(1.0)
    assert await budgets.try_take("slack:T2", per_minute=60, burst=3) == 0.0  # scopes are separate
    now[0] = 1.0
    assert await budgets.try_take("slack:T1", per_minute=60, burst=3) == 0.0


async def test_a_pause_empties_the_bucket_until_it_ends() -> None:
    now = [0.0]
    budgets = MemoryBudgets(clock=lambda: now[0])
    assert await budgets.try_take("s", per_minute=600, burst=5) == 0.0
    await budgets.pause("s", 0.3)
    assert await budgets.try_take("s", per_minute=600, burst=5) == pytest.approx(0.3)
    now[0] = 0.3
    assert await budgets.try_take("s", per_minute=600, burst=5) == pytest.approx(0.1)  # empty, refilling at 10/s
    now[0] = 0.4
    assert await budgets.try_take("s", per_minute=600, burst=5) == 0.0


async def test_scopes_are_bounded_and_an_idle_one_starts_full() -> None:
    now = [0.0]
    budgets = MemoryBudgets(clock=lambda: now[0], remembered=2, idle_s=60)
    for scope in ("a", "b", "c"):
        assert budgets.take_now(scope, per_minute=1, burst=1) == 0.0
    assert len(budgets._buckets) == 2  # the least recently used scope went
    assert budgets.take_now("c", per_minute=1, burst=1) > 0  # remembered: empty
    now[0] = 61.0
    assert budgets.take_now("c", per_minute=1, burst=1) == 0.0  # forgotten after idling: full again, as it would be
