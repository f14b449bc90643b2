"""A reply that grows in place while the model writes it, on any ChatPlatform.

One background task (the pump) owns every platform call of a reply, so at most one call, and therefore at most one
edit per message, is ever in flight. Each time it may call, it recomputes what every message should show from the
latest text: versions produced while it waited are skipped, never queued. Pacing comes from the platform's EditPacer
(``ChatPlatform.pacer``: per message for bot/pacing.py's IntervalPacer; a shared one holds a workspace- or
replica-wide budget) and from 429s; each edit tells both the pacer and the platform whether it is final, and the
platform which part of the text is the reply itself (``body``). What each message shows is planned by
bot/reply_plan.py: text that outgrows the platform's limit is frozen into finished messages and continues in a new
message in the same thread, and all text goes through safety.defang_mass_mentions before it reaches the platform.

Where the platform asks for it (PlatformLimits.first_post_grace_s), the first message waits a moment for the model's
first text and is posted with it: no placeholder, and no edit spent replacing one. The placeholder still appears
when the grace runs out first.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

from bot.ports import ChatPlatform, EditPacer
from bot.reply_plan import PlannedMessage, ReplyPlanner
from bot.safety import ZERO_WIDTH_SPACE, defang_mass_mentions
from bot.types import ChannelRef, MessageGone, MessageRef, MessageTooLong, PlatformRateLimited, ReplyStopped

log = logging.getLogger(__name__)

WRITING_MARKER = " ▍"  # shown after in-progress text; never in a final version
DEFAULT_PLACEHOLDER = "…writing"
FAILURE_PREFIX = "⚠️ Stopped: "
GENERIC_FAILURE = "something went wrong while writing this reply. Mention me again to retry."
# The final edit is retried (honouring Retry-After) for at most this long; Slack's Tier 3 window is a minute, so two
# windows leave room for a workspace-wide storm to pass.
FINISH_DEADLINE_S = 120.0
# Unexpected platform errors in a row before a reply gives up (bounded so a broken adapter cannot loop forever).
MAX_UNEXPECTED_ERRORS = 5
UNEXPECTED_ERROR_PAUSE_S = 1.0


@dataclass
class ReplyStats:
    """What the benches measure. Times are clock() values (monotonic seconds)."""

    posted_at: float | None = None  # the first message (placeholder, or text after a grace) landed
    first_text_at: float | None = None  # the first post or edit that showed model text landed
    finished_at: float | None = None
    edits: int = 0  # successful edits
    rate_limited: int = 0  # 429s met, posts and edits
    parts: int = 0  # messages the reply occupies
    # Per post/edit that made new text visible: how long the oldest newly visible text had waited since append().
    staleness: list[float] = field(default_factory=list)
    edit_log: list[tuple[float, int]] = field(default_factory=list)  # (time, text length) per successful edit
    completed: bool = False  # every message landed its final text


@dataclass
class _Message:
    ref: MessageRef | None  # None: gone, a replacement must be posted
    shown: str
    last_call_at: float


class LiveReply:
    """A reply that grows in place; ``async with`` starts it (see start()), then finishes or fails it.

    Example::

        async with LiveReply(platform, channel, thread_id=thread) as reply:  # "…writing", or the grace begins
            async for chunk in llm.stream(...):
                reply.append(chunk.text)

    On normal exit the block calls finish(); on an exception, fail(GENERIC_FAILURE), and the exception propagates.
    """

    def __init__(
        self,
        platform: ChatPlatform,
        channel: ChannelRef,
        *,
        thread_id: str | None = None,
        pacer: EditPacer | None = None,
        marker: str = WRITING_MARKER,
        finish_deadline_s: float = FINISH_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        limits = platform.limits
        self._planner = ReplyPlanner(limit=limits.max_message_chars, marker=marker, placeholder=DEFAULT_PLACEHOLDER)
        self._platform = platform
        self._channel = channel
        self._thread_id = thread_id
        self._finish_deadline_s = finish_deadline_s
        self._clock, self._sleep = clock, sleep
        self._min_interval_s = limits.min_edit_interval_s
        self._pacer: EditPacer = pacer or platform.pacer
        self._grace_s = max(0.0, limits.first_post_grace_s)
        self._started = False
        self._text = ""
        self._arrivals: list[int] = []  # raw text length after each append ...
        self._arrival_times: list[float] = []  # ... and when it arrived
        self._visible_end = 0
        self._msgs: list[_Message] = []
        self._dirty = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._in_call = False
        self._closing = False
        self._closed = asyncio.Event()  # set once the final texts landed (or the deadline passed)
        self._dead = False  # the channel is unreachable: nothing more can be posted
        self.stopped = asyncio.Event()  # the person stopped the reply where it is shown (ReplyStopped)
        self._unexpected = 0
        self.stats = ReplyStats()

    # ---- public API ---------------------------------------------------------------------------------------------

    @property
    def unreachable(self) -> bool:
        """Nothing can be posted where this reply goes (the bot was removed, the channel is gone)."""
        return self._dead

    @property
    def refs(self) -> list[MessageRef]:
        return [m.ref for m in self._msgs if m.ref is not None]

    @property
    def text(self) -> str:
        """The model text received so far (before defanging)."""
        return self._text

    async def start(self, placeholder: str = DEFAULT_PLACEHOLDER) -> MessageRef | None:
        """Start the reply and return its first message, or None if the channel is unreachable.

        Without a grace (PlatformLimits.first_post_grace_s == 0) the placeholder is posted before this returns.
        With one, this returns None at once and the pump posts the first message: with the model's text as soon as
        some arrives, with the placeholder when the grace runs out first, with the final text (or the error) when
        the reply ends sooner."""
        if self._started or self._msgs or self._closing:
            raise RuntimeError("LiveReply already started")
        self._started = True
        self._planner.placeholder = defang_mass_mentions(placeholder)
        if self._grace_s > 0:
            self._pump_task = asyncio.create_task(self._pump(grace_until=self._clock() + self._grace_s))
            return None
        try:
            async with asyncio.timeout(self._finish_deadline_s):
                while not self._msgs and not self._dead:
                    await self._post(0, self._plan(final=False)[0])
        except TimeoutError:
            log.warning("live reply: placeholder not posted within %.0fs", self._finish_deadline_s)
        if not self._dead:
            self._pump_task = asyncio.create_task(self._pump(), name="live-reply-pump")
        return self._msgs[0].ref if self._msgs else None

    def append(self, delta: str) -> None:
        if self._closing:
            raise RuntimeError("LiveReply is finished")
        if not delta:
            return
        self._text += delta
        self._arrivals.append(len(self._text))
        self._arrival_times.append(self._clock())
        self._dirty.set()

    def set_status(self, text: str | None) -> None:
        """A line shown under the text while working ("sorted 340 of 1,000 questions…"); None or "" removes it."""
        self._planner.status = defang_mass_mentions(text or "")
        self._dirty.set()

    async def finish(self) -> list[MessageRef]:
        """Land the complete text (no marker) in every message; returns the reply's messages in order."""
        return await self._close(error=None)

    async def fail(self, reason: str) -> list[MessageRef]:
        """Keep what arrived and end with a clear error line ``⚠️ Stopped: {reason}``."""
        return await self._close(error=reason)

    async def __aenter__(self) -> LiveReply:
        if not self._started:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.finish()
        else:
            await self.fail(GENERIC_FAILURE)

    # ---- planning -----------------------------------------------------------------------------------------------

    def _plan(self, final: bool) -> list[PlannedMessage]:
        """What each message should show now (bot/reply_plan.py)."""
        return self._planner.plan(self._text, final=final)

    # ---- the pump -----------------------------------------------------------------------------------------------

    async def _pump(self, *, grace_until: float | None = None) -> None:
        if grace_until is not None:
            await self._await_first_text(grace_until)
            self._dirty.set()  # post now: the text, or the placeholder if the grace ran out
        while not self._closing:
            await self._dirty.wait()
            self._dirty.clear()
            while not self._closing and not self._dead and await self._guarded_step(final=False):
                pass

    async def _await_first_text(self, until: float) -> None:
        """The grace: wait until model text can be shown (or the grace ends, or finish()/fail() takes over)."""
        while not self._closing and not self._plan(final=False)[0].visible_end:
            left = until - self._clock()
            if left <= 0:
                return
            self._dirty.clear()
            # The injected sleep, raced with new text, so tests with a fake clock pace the grace too.
            waits = [asyncio.ensure_future(self._dirty.wait()), asyncio.ensure_future(self._sleep(left))]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _guarded_step(self, *, final: bool) -> bool:
        try:
            progressed = await self._step(final=final)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._unexpected += 1
            log.exception("live reply: unexpected platform error (%d in a row)", self._unexpected)
            if self._unexpected >= MAX_UNEXPECTED_ERRORS:
                self._dead = True
                return False
            await self._sleep(UNEXPECTED_ERROR_PAUSE_S)
            return True
        self._unexpected = 0
        return progressed

    async def _step(self, *, final: bool) -> bool:
        """Make one platform call towards the plan; False when every message already shows what it should."""
        wants = self._plan(final)
        for i, want in enumerate(wants):
            msg = self._msgs[i] if i < len(self._msgs) else None
            if msg is not None and msg.ref is not None and msg.shown == want.text:
                continue
            if msg is None or msg.ref is None:
                await self._post(i, want)
                return True
            await self._pace(msg, msg.ref, final=want.done)
            if self._closing and not final:
                return False  # finish() took over while we waited
            wants = self._plan(final)  # the latest text wins over what was current before the wait
            if i < len(wants) and wants[i].text != msg.shown:
                await self._edit(i, msg, wants[i])
            return True
        return False

    async def _pace(self, msg: _Message, ref: MessageRef, *, final: bool) -> None:
        # The platform floor counts from the post too, not only from the previous edit.
        if (wait := msg.last_call_at + self._min_interval_s - self._clock()) > 0:
            await self._sleep(wait)
        await self._pacer.wait_turn(ref, final=final)

    # ---- platform calls -----------------------------------------------------------------------------------------

    async def _post(self, i: int, want: PlannedMessage) -> None:
        try:
            self._in_call = True
            ref = await self._platform.post(self._channel, want.text, thread_id=self._thread_id, body=want.body)
        except PlatformRateLimited as e:
            self.stats.rate_limited += 1
            await self._sleep(e.retry_after_s)
            return
        except MessageTooLong:
            self._shrink(i, len(want.text))
            return
        except MessageGone:
            log.warning("live reply: cannot post in %s any more", self._channel.key)
            self._dead = True
            return
        finally:
            self._in_call = False
        now = self._clock()
        msg = _Message(ref, want.text, now)
        if i < len(self._msgs):
            self._msgs[i] = msg  # replaces a message that was deleted
        else:
            self._msgs.append(msg)
        if self.stats.posted_at is None:
            self.stats.posted_at = now
        self.stats.parts = len(self._msgs)
        self._note_visible(want, now)

    async def _edit(self, i: int, msg: _Message, want: PlannedMessage) -> None:
        ref = msg.ref
        assert ref is not None
        try:
            self._in_call = True
            await self._platform.edit(ref, want.text, final=want.done, body=want.body)
        except PlatformRateLimited as e:
            self.stats.rate_limited += 1
            await self._pacer.penalize(ref, e.retry_after_s)
            return
        except MessageTooLong:
            self._shrink(i, len(want.text))
            return
        except MessageGone:
            # Someone deleted the message (often the placeholder): post a replacement on the next step.
            msg.ref = None
            return
        except ReplyStopped:
            log.info("live reply: stopped by the person in %s", self._channel.key)
            self._dead = True
            self.stopped.set()
            return
        finally:
            self._in_call = False
            msg.last_call_at = self._clock()
        now = msg.last_call_at
        msg.shown = want.text
        self.stats.edits += 1
        self.stats.edit_log.append((now, len(want.text)))
        self._note_visible(want, now)

    def _shrink(self, i: int, refused_len: int) -> None:
        """The platform refused a text as too long: re-split from message i on with a smaller limit."""
        if not self._planner.shrink(i, refused_len):
            self._dead = True

    def _note_visible(self, want: PlannedMessage, now: float) -> None:
        if want.visible_end <= self._visible_end:
            return
        if self.stats.first_text_at is None and self._arrivals:
            self.stats.first_text_at = now
        old_raw, new_raw = self._raw_offset(self._visible_end), self._raw_offset(want.visible_end)
        self._visible_end = want.visible_end
        first = bisect.bisect_right(self._arrivals, old_raw)  # first append that ends past what was visible
        if first < len(self._arrivals) and new_raw > old_raw:
            self.stats.staleness.append(now - self._arrival_times[first])

    def _raw_offset(self, defanged_offset: int) -> int:
        # Approximate to the few characters of inserted zero-width spaces: enough for staleness in seconds.
        defanged = defang_mass_mentions(self._text)[:defanged_offset]
        inserted = defanged.count(ZERO_WIDTH_SPACE) - self._text[:defanged_offset].count(ZERO_WIDTH_SPACE)
        return min(len(self._text), max(0, defanged_offset - max(0, inserted)))

    # ---- closing ------------------------------------------------------------------------------------------------

    async def _close(self, *, error: str | None) -> list[MessageRef]:
        if self._closing:  # a second finish()/fail() waits for the first and changes nothing
            await self._closed.wait()
            return self.refs
        self._closing = True
        await self._stop_pump()
        if error is not None:
            line = FAILURE_PREFIX + error
            self._text += f"\n\n{line}" if self._text else line  # no arrival record: not model text
        try:
            async with asyncio.timeout(self._finish_deadline_s):
                while not self._dead and await self._guarded_step(final=True):
                    pass
            self.stats.completed = not self._dead
        except TimeoutError:
            log.warning("live reply: final text not landed within %.0fs", self._finish_deadline_s)
        self.stats.finished_at = self._clock()
        self._closed.set()
        return self.refs

    async def _stop_pump(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is None:
            return
        if not self._in_call:
            task.cancel()  # it is only waiting (for text or its turn); a call in flight is left to complete
        self._dirty.set()
        [ended] = await asyncio.gather(task, return_exceptions=True)
        if isinstance(ended, Exception):  # the final step still runs; this only makes the failure visible
            log.error("live reply: the pump failed", exc_info=ended)
