"""Accept, first-token and idle timeouts around a provider stream — never a whole-request cap (FACTS.md: a
whole-request timeout cuts off long answers that are still arriving)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from llm.attempt import Attempt
from llm.provider import Delta, ErrorInfo, Timeouts
from llm.servers import ConcurrencyGate


class StreamTimeout(Exception):
    def __init__(self, first_token: bool, accepted: bool = True) -> None:
        what = "stream went silent" if not first_token else "no first token in time" if accepted else (
            "the server did not accept the request in time"
        )
        super().__init__(what)
        # A stream that went silent mid-answer may be asked again; a server that gave no first token in time is
        # not (the next route entry is).
        self.info = ErrorInfo("timeout", retryable=not first_token, message=str(self))


class Watchdog:
    """Cancels the streaming task when it has waited on the provider past ``deadline``.

    Only a wait *inside* the provider stream counts (``waiting``); time the caller spends between chunks does not.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], deadline: float, idle_s: float):
        self.deadline = deadline
        self.waiting = False
        self.fired = False
        self._loop = loop
        self._task = task
        self._idle_s = idle_s
        self._handle = loop.call_at(deadline, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now < self.deadline:
            self._handle = self._loop.call_at(self.deadline, self._check)
        elif self.waiting:
            self.fired = True
            self._task.cancel()
        else:  # the caller is busy with a chunk; the deadline moves on when it asks for the next one
            self._handle = self._loop.call_at(now + self._idle_s, self._check)

    def move_to(self, deadline: float) -> None:
        """A new deadline; an earlier one than the timer's needs the timer moved too."""
        if deadline < self.deadline:
            self._handle.cancel()
            self._handle = self._loop.call_at(deadline, self._check)
        self.deadline = deadline

    def stop(self) -> None:
        self._handle.cancel()


async def timed(
    deltas: AsyncGenerator[Delta, None], attempt: Attempt, timeouts: Timeouts, gate: ConcurrencyGate
) -> AsyncGenerator[Delta, None]:
    """``deltas`` under the accept, first-token and idle timeouts; ``StreamTimeout`` when one runs out.

    The first-token clock starts when the server accepted the work (its response headers arrived), so time a busy
    server queues the request before answering counts against ``accept_s`` instead. One watchdog timer per call
    instead of a timeout context per chunk: a chunk only moves the deadline. While waiting it notes in ``attempt``
    how many other calls to the same server were in flight (``gate``)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    watch = Watchdog(loop, task, loop.time() + timeouts.accept_s, timeouts.idle_s)
    accepted = False
    try:
        async with aclosing(deltas):
            it = aiter(deltas)
            while True:
                watch.waiting = True
                attempt.siblings = max(attempt.siblings, gate.active - 1)
                try:
                    delta = await anext(it)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not watch.fired:
                        raise
                    task.uncancel()
                    raise StreamTimeout(first_token=not attempt.parts, accepted=accepted) from None
                finally:
                    watch.waiting = False
                attempt.siblings = max(attempt.siblings, gate.active - 1)
                if delta.accepted and not accepted:
                    accepted = True
                    watch.move_to(loop.time() + timeouts.first_token_s)
                yield delta
                # Until text arrives the first-token deadline stands (usage-only events don't move it).
                if attempt.parts:
                    watch.move_to(loop.time() + timeouts.idle_s)
    finally:
        watch.stop()
