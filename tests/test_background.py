"""BackgroundWork: what a shutdown drain reports is what it really cut off."""

from __future__ import annotations

import asyncio

import pytest

from bot.background import BackgroundWork, Repeating


async def test_a_drain_that_times_out_counts_and_cancels_the_work_it_cut_off() -> None:
    work = BackgroundWork(label="test")
    done = asyncio.Event()
    cancelled: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def quick() -> None:
        done.set()

    work.spawn(slow("a"), name="a")
    work.spawn(slow("b"), name="b")
    work.spawn(quick(), name="quick")

    assert await work.drain(grace_s=0.2) == 2
    assert sorted(cancelled) == ["a", "b"]
    assert done.is_set()
    assert len(work) == 0


async def test_a_drain_with_nothing_left_reports_zero() -> None:
    work = BackgroundWork(label="test")
    work.spawn(asyncio.sleep(0), name="tiny")
    assert await work.drain(grace_s=5) == 0


@pytest.mark.parametrize("turns", range(6))
async def test_repeating_stops_even_when_its_action_swallows_the_cancel(turns: int) -> None:
    """On Python 3.11 asyncio.wait_for — redis-py's sends under a socket_timeout — returns instead of raising when a
    cancel lands just as the inner call finishes; a heartbeat written as a cancelled loop then beat forever."""
    inside = asyncio.Event()
    calls = 0

    async def action() -> None:  # a store write, as redis-py sends it
        nonlocal calls
        calls += 1
        inside.set()
        await asyncio.wait_for(asyncio.sleep(0), 10)

    repeating = Repeating(action, every_s=0.001, name="test")
    await inside.wait()
    for _ in range(turns):  # stop() comes a few loop turns into the write: one of them lands in the window
        await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await repeating.stop()
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at  # nothing runs after stop()
