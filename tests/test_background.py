"""BackgroundWork: what a shutdown drain reports is what it really cut off."""

from __future__ import annotations

import asyncio

from bot.background import BackgroundWork


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
