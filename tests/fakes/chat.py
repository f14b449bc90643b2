"""An in-memory ChatPlatform for unit tests: records every post and edit, and misbehaves on request.

Usage::

    chat = FakeChatPlatform(limits=PlatformLimits(max_message_chars=100, min_edit_interval_s=0.01))
    ref = await chat.post(CHANNEL, "hello", thread_id="t1")
    await chat.edit(ref, "hello world", final=True)
    chat.text(ref)                 # "hello world": the current text
    chat.versions(ref)             # ["hello", "hello world"]: every version, oldest first
    chat.calls                     # [Call(kind="post", ...), Call(kind="edit", final=True, ...)], monotonic times
    chat.pacer                     # an IntervalPacer at limits.min_edit_interval_s (replace it to pace differently)
    chat.thread_texts("t1")        # current texts of the bot's messages in thread t1, in posting order

Injected behaviour (all keyword options of the constructor, also settable as attributes later):

* ``latency_s``: every call sleeps this long before it takes effect (so edits can overlap in time).
* ``rate_limit_every``: every Nth edit raises ``PlatformRateLimited(retry_after_s)``.
* ``edit_bucket=(capacity, per_second)``: a token bucket for edits (all messages together, like a workspace-wide
  budget); an edit with no token raises ``PlatformRateLimited`` with the time until the next token.
* ``post_bucket=(capacity, per_second)``: the same for posts.
* ``reject_longer_than``: texts longer than this raise ``MessageTooLong`` (default: ``limits.max_message_chars``;
  set it lower to play a platform stricter than it advertises).
* ``fail_next(kind, exc, times=1)``: the next ``times`` calls of ``kind`` ("post", "edit", "fetch") raise ``exc``.
* ``delete(ref)``: the message disappears; later edits of it raise ``MessageGone``.
* ``remove_channel(channel)``: every later call in that channel raises ``MessageGone``.

Rate-limited and refused calls are recorded in ``calls`` with ``ok=False`` and change nothing.

Invariant checked on every call: at most one edit of a message is in flight at a time; a second overlapping edit of
the same message raises ``AssertionError`` (and is remembered in ``overlaps``).

``fetch_thread(ref)`` returns the messages you ``seed(...)`` plus the bot's own posts (``is_bot=True``, with their
current text): the thread rooted at ``ref.thread_id or ref.message_id``; when ``ref`` is a top-level message without
replies, the channel's top-level messages instead. ``since`` keeps messages sent strictly after it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.pacing import IntervalPacer
from bot.ports import EditPacer
from bot.types import (
    ChannelRef,
    ChatMessage,
    MessageGone,
    MessageRef,
    MessageTooLong,
    PlatformLimits,
    PlatformRateLimited,
)

DEFAULT_LIMITS = PlatformLimits(max_message_chars=2000, min_edit_interval_s=0.01)


@dataclass(frozen=True, slots=True)
class Call:
    kind: str  # post, edit, fetch
    at: float  # clock() when the call took effect (or was refused)
    ref: MessageRef | None
    text: str
    ok: bool = True
    error: str = ""
    final: bool = False  # an edit that said it carries the message's finished text
    body: str | None = None  # the reply's own text within ``text``, as the caller said (None: all of it)


@dataclass
class FakeMessage:
    ref: MessageRef
    versions: list[tuple[float, str]] = field(default_factory=list)  # (time, text), oldest first
    posted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deleted: bool = False

    @property
    def text(self) -> str:
        return self.versions[-1][1]


class _Bucket:
    def __init__(self, capacity: float, per_second: float, clock: Callable[[], float]) -> None:
        self.capacity, self.per_second, self.clock = capacity, per_second, clock
        self.tokens = capacity
        self.at = clock()

    def take(self) -> float:
        """0 if a token was taken, else seconds until the next one."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class FakeChatPlatform:
    def __init__(
        self,
        *,
        limits: PlatformLimits = DEFAULT_LIMITS,
        latency_s: float = 0.0,
        rate_limit_every: int | None = None,
        retry_after_s: float = 0.02,
        edit_bucket: tuple[float, float] | None = None,
        post_bucket: tuple[float, float] | None = None,
        reject_longer_than: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.pacer: EditPacer = IntervalPacer(min_interval_s=limits.min_edit_interval_s, clock=clock)
        self.latency_s = latency_s
        self.rate_limit_every = rate_limit_every
        self.retry_after_s = retry_after_s
        self.reject_longer_than = reject_longer_than
        self.clock = clock
        self._edit_bucket = _Bucket(*edit_bucket, clock) if edit_bucket else None
        self._post_bucket = _Bucket(*post_bucket, clock) if post_bucket else None
        self.calls: list[Call] = []
        self.messages: dict[str, FakeMessage] = {}  # the bot's posts by message id, in posting order
        self.seeded: list[ChatMessage] = []
        self.overlaps: list[MessageRef] = []
        self._ids = itertools.count(1)
        self._edit_attempts = 0
        self._in_flight: set[str] = set()
        self._removed: set[ChannelRef] = set()
        self._scripted: dict[str, list[Exception]] = {"post": [], "edit": [], "fetch": []}

    # ---- ChatPlatform -------------------------------------------------------------------------------------------

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        await self._latency()
        self._refuse("post", channel, None, text)
        if self._post_bucket and (wait := self._post_bucket.take()):
            self._record("post", None, text, PlatformRateLimited(wait))
        ref = MessageRef(channel, f"m{next(self._ids)}", thread_id)
        self.messages[ref.message_id] = FakeMessage(ref, [(self.clock(), text)])
        self.calls.append(Call("post", self.clock(), ref, text, body=body))
        return ref

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        if ref.message_id in self._in_flight:
            self.overlaps.append(ref)
            raise AssertionError(f"two edits of message {ref.message_id} in flight at once")
        self._in_flight.add(ref.message_id)
        try:
            await self._latency()
            self._refuse("edit", ref.channel, ref, text)
            msg = self.messages.get(ref.message_id)
            if msg is None or msg.deleted:
                self._record("edit", ref, text, MessageGone(ref.message_id))
            assert msg is not None
            self._edit_attempts += 1
            if self.rate_limit_every and self._edit_attempts % self.rate_limit_every == 0:
                self._record("edit", ref, text, PlatformRateLimited(self.retry_after_s))
            if self._edit_bucket and (wait := self._edit_bucket.take()):
                self._record("edit", ref, text, PlatformRateLimited(wait))
            msg.versions.append((self.clock(), text))
            self.calls.append(Call("edit", self.clock(), ref, text, final=final, body=body))
        finally:
            self._in_flight.discard(ref.message_id)

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        await self._latency()
        self._refuse("fetch", ref.channel, ref, "")
        root = ref.thread_id or ref.message_id
        everything = [*self.seeded, *self._bot_messages()]
        in_channel = [m for m in everything if m.ref.channel == ref.channel]
        thread = [m for m in in_channel if root in (m.ref.thread_id, m.ref.message_id)]
        if ref.thread_id is None and not any(m.ref.thread_id == root for m in in_channel):
            thread = [m for m in in_channel if m.ref.thread_id is None]
        if since is not None:
            thread = [m for m in thread if m.sent_at > since]
        self.calls.append(Call("fetch", self.clock(), ref, ""))
        return sorted(thread, key=lambda m: m.sent_at)

    # ---- set-up and misbehaviour ----------------------------------------------------------------------------

    def seed(self, *messages: ChatMessage) -> None:
        self.seeded.extend(messages)

    def fail_next(self, kind: str, exc: Exception, *, times: int = 1) -> None:
        self._scripted[kind].extend([exc] * times)

    def delete(self, ref: MessageRef) -> None:
        self.messages[ref.message_id].deleted = True

    def remove_channel(self, channel: ChannelRef) -> None:
        self._removed.add(channel)

    # ---- inspection ---------------------------------------------------------------------------------------------

    def text(self, ref: MessageRef) -> str:
        return self.messages[ref.message_id].text

    def versions(self, ref: MessageRef) -> list[str]:
        return [text for _, text in self.messages[ref.message_id].versions]

    def thread_texts(self, thread_id: str | None, channel: ChannelRef | None = None) -> list[str]:
        return [
            m.text
            for m in self.messages.values()
            if m.ref.thread_id == thread_id and (channel is None or m.ref.channel == channel)
        ]

    def edits(self, ref: MessageRef | None = None) -> list[Call]:
        """Successful edits, of one message or of all."""
        return [c for c in self.calls if c.kind == "edit" and c.ok and (ref is None or c.ref == ref)]

    @property
    def rate_limited(self) -> int:
        return sum(1 for c in self.calls if c.error == "PlatformRateLimited")

    # ---- internals ----------------------------------------------------------------------------------------------

    async def _latency(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def _refuse(self, kind: str, channel: ChannelRef, ref: MessageRef | None, text: str) -> None:
        if self._scripted[kind]:
            self._record(kind, ref, text, self._scripted[kind].pop(0))
        if channel in self._removed:
            self._record(kind, ref, text, MessageGone(channel.key))
        longest = self.reject_longer_than or self.limits.max_message_chars
        if kind != "fetch" and len(text) > longest:
            self._record(kind, ref, text, MessageTooLong(f"{len(text)} > {longest}"))

    def _record(self, kind: str, ref: MessageRef | None, text: str, exc: Exception) -> None:
        self.calls.append(Call(kind, self.clock(), ref, text, ok=False, error=type(exc).__name__))
        raise exc

    def _bot_messages(self) -> list[ChatMessage]:
        return [
            ChatMessage(m.ref, author="bot", author_name="bot", text=m.text, sent_at=m.posted_at, is_bot=True)
            for m in self.messages.values()
            if not m.deleted
        ]
