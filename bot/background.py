"""Work an adapter starts after acknowledging an event, tracked so a shutdown can drain it.

Platforms want an answer within seconds (Slack 3 s, Discord interactions 3 s): adapters acknowledge, then do the
work in a task. Tracking those tasks lets tests wait for quiet and lets SIGTERM finish what is in flight; what a
drain cuts off stays in the store's live-reply registry for a janitor to finalise (bot/orphans.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundWork:
    def __init__(self, *, label: str) -> None:
        self._label = label
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s: %s failed", self._label, task.get_name(), exc_info=error)

    async def idle(self) -> None:
        """Wait until every piece of work started so far (and any it started) is done."""
        while self._tasks:
            # asyncio.wait, not gather: a cancelled gather cancels the work it waits on, so a drain that timed out
            # found its tasks already gone and reported "0 unfinished".
            await asyncio.wait(list(self._tasks))

    async def drain(self, *, grace_s: float) -> int:
        """Let the work in flight finish for up to ``grace_s``, then cancel the rest; returns how many were cut
        off (their replies are left to a janitor)."""
        try:
            async with asyncio.timeout(grace_s):
                await self.idle()
            return 0
        except TimeoutError:
            left = list(self._tasks)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            log.warning("%s: %d piece(s) of work unfinished after %.0fs; left to a janitor", self._label, len(left),
                        grace_s)  # fmt: skip
            return len(left)


async def every(
    period_s: float, job: Callable[[], Awaitable[object]], stop: asyncio.Event, *, name: str, at_once: bool = True
) -> None:
    """``job`` every ``period_s`` (the first time at once, or ``period_s`` from now) until ``stop`` is set; a job
    that fails is logged and the next round tries again."""
    if not at_once:
        await _until(stop, period_s)
    while not stop.is_set():
        try:
            await job()
        except Exception:  # upkeep must outlive a store or platform hiccup; the next round tries again
            log.exception("%s failed", name)
        await _until(stop, period_s)


async def _until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class Repeating:
    """``action`` every ``every_s`` until stop(), the first time ``every_s`` from now, in a task of its own.

    stop() does not rely on cancelling the task alone: on Python 3.11 a cancel can be lost — asyncio.wait_for, which
    redis-py's sends use under a socket_timeout, returns the inner call's result instead of raising when the cancel
    lands just as that call finishes (CPython gh-86296, fixed in 3.12) — and a loop around such a call ran on for
    good: a live reply's heartbeat kept a Discord drain waiting out its whole grace (~5 % of loaded runs of
    test_discord_replicas). The loop also ends on a flag, so a lost cancel costs one ``action`` at most."""

    def __init__(self, action: Callable[[], Awaitable[None]], *, every_s: float, name: str) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(every(every_s, action, self._stopping, name=name, at_once=False), name=name)

    async def stop(self) -> None:
        self._stopping.set()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
