"""When an edit may go out on Discord: ChannelEditPacer, and the reader of discord.py's learned edit buckets.

All edits in one channel share a rate bucket (FACTS.md). discord.py learns each bucket from the X-RateLimit-*
headers and holds a request until its bucket resets; ChannelEditPacer asks the bucket first (``EditBucket``), so a
progress edit waits here instead and LiveReply sends the latest text when the turn comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cachetools
import discord

from bot.types import MessageRef

# Edits of one message at most this often: enough to read along, and five such edits fill a channel's observed
# edit bucket (FACTS.md: all edits in one channel share a bucket; 5 per 5 s observed). LiveReply's own floor counts
# from the post as well, but on Discord posts and edits use different buckets, so the floor is kept here, between
# edits, and the limit given to LiveReply is small.
MESSAGE_EDIT_SPACING_S = 1.0
# Used only while discord.py has not yet learned a channel's edit bucket from X-RateLimit-* headers.
UNKNOWN_BUCKET_SPACING_S = 1.0
MAX_MESSAGE_EDIT_SPACING_S = 10.0
BUCKET_POLL_S = 0.05  # re-check of a spent bucket whose reset time discord.py does not know yet
# Replies in one channel end at about the same time and each final edit needs a token of the channel's bucket, so an
# in-progress edit goes out only if it leaves one token for every reply still streaming there (itself included).
# Without this, progress edits spend the window and every final waits for the reset (up to 5 s): the whole tail of
# each answer arrives late. A held edit looks again this often (a final landing frees its reserve) ...
RESERVE_POLL_S = 0.25
# ... and in a window's last second the reserve is released: a final then waits at most that long for the reset.
RESERVE_RELEASE_S = 1.0
STREAMING_FORGET_S = 60.0  # a reply silent this long (its process died mid-answer) stops reserving a token
# A message just posted counts as streaming from its post (its reply's first progress edit comes only after
# LiveReply's floor, when another reply may already be asking); one that asks for no edit this long (a notice, or
# a reply posted complete) stops reserving a token.
POSTED_RESERVE_S = 5.0
PACER_FORGET_S = 600.0  # a message not edited for this long is forgotten by the pacer
# One size policy for every per-message / per-channel map: the most recent this many, the rest forgotten.
REMEMBERED = 10_000

# (edits left in the channel's window, seconds until it resets — inf while no window runs), or None if unknown.
EditBudget = Callable[[int], "tuple[int, float] | None"]


@dataclass
class _Lane:
    """One channel's edit bucket as the pacer sees it."""

    lock: asyncio.Lock  # in-progress edits take turns in order
    last_turn_at: float = float("-inf")
    blocked_until: float = float("-inf")
    streaming: dict[str, float] = field(default_factory=dict)  # message id -> until when it reserves a final token


@dataclass
class _MessagePace:
    next_at: float
    spacing: float
    seen_at: float


class ChannelEditPacer:
    """EditPacer that lets an edit go out only when discord.py's bucket for the channel has room for it.

    discord.py honours Discord's buckets by holding a request until its bucket resets; a held edit carries the text
    of the moment it was made, which is stale by the time it lands. Asking first (``budget``: edits left in the
    channel's window and seconds until it resets, as discord.py learned them from the headers) makes an in-progress
    edit wait *here*, and LiveReply then sends the latest text when the turn comes. In-progress edits of a channel
    take turns in order (asyncio.Lock is FIFO), each message at most every MESSAGE_EDIT_SPACING_S, and only while
    a token stays in reserve for the final edit of every reply streaming in the channel. A final edit
    (``final=True``) carries text that will not change, so queueing in discord.py costs it nothing: it passes
    ahead of all of that and only waits out a 429."""

    def __init__(
        self,
        *,
        budget: EditBudget | None = None,
        lane_of: Callable[[MessageRef], int] | None = None,
        message_spacing_s: float = MESSAGE_EDIT_SPACING_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budget = budget or (lambda channel_id: None)
        self._lane_of = lane_of or channel_of
        self.message_spacing_s = message_spacing_s
        self._clock, self._sleep = clock, sleep
        self._lanes: dict[int, _Lane] = {}
        self._messages: cachetools.TTLCache[str, _MessagePace] = cachetools.TTLCache(
            REMEMBERED, PACER_FORGET_S, timer=clock
        )

    def _message(self, message_id: str) -> _MessagePace:
        now = self._clock()
        pace = self._messages.get(message_id)
        if pace is None:
            pace = _MessagePace(float("-inf"), self.message_spacing_s, now)
        pace.seen_at = now
        self._messages[message_id] = pace  # re-set: the TTL counts from the last edit
        return pace

    def _lane(self, channel_id: int) -> _Lane:
        lane = self._lanes.get(channel_id)
        if lane is None:
            if len(self._lanes) >= REMEMBERED:  # forget idle lanes (a held lock must stay the channel's one lock)
                now = self._clock()
                self._lanes = {c: k for c, k in self._lanes.items() if k.lock.locked() or k.blocked_until > now
                               or any(until >= now for until in k.streaming.values())}  # fmt: skip
            lane = self._lanes[channel_id] = _Lane(asyncio.Lock())
        return lane

    async def wait_turn(self, ref: MessageRef, *, final: bool) -> None:
        message_id = ref.message_id
        channel_id = self._lane_of(ref)
        lane = self._lane(channel_id)
        if final:
            lane.streaming.pop(message_id, None)  # it needs no token beyond the one it takes now
            while (delay := lane.blocked_until - self._clock()) > 0:
                await self._sleep(delay)
            lane.last_turn_at = self._clock()
            return
        lane.streaming[message_id] = self._clock() + STREAMING_FORGET_S
        pace = self._message(message_id)
        while (delay := pace.next_at - self._clock()) > 0:  # outside the lane: others may go meanwhile
            await self._sleep(delay)
        async with lane.lock:
            while (delay := self._progress_delay(channel_id, lane)) > 0:
                await self._sleep(delay)
                lane.streaming[message_id] = self._clock() + STREAMING_FORGET_S  # still streaming, only held back
            lane.last_turn_at = self._clock()
        pace.spacing = max(self.message_spacing_s, pace.spacing * 0.7)  # back to normal after a penalty
        pace.next_at = self._clock() + pace.spacing

    def _progress_delay(self, channel_id: int, lane: _Lane) -> float:
        now = self._clock()
        if lane.blocked_until > now:
            return lane.blocked_until - now
        budget = self._budget(channel_id)
        if budget is None:  # one edit teaches discord.py the bucket
            return lane.last_turn_at + UNKNOWN_BUCKET_SPACING_S - now
        left, reset_in = budget
        if left <= 0:
            return max(min(reset_in, UNKNOWN_BUCKET_SPACING_S), BUCKET_POLL_S)
        for mid in [m for m, until in lane.streaming.items() if until < now]:
            del lane.streaming[mid]
        if left - 1 >= len(lane.streaming) or reset_in <= RESERVE_RELEASE_S:
            return 0.0
        return max(min(RESERVE_POLL_S, reset_in - RESERVE_RELEASE_S), BUCKET_POLL_S)

    def note_post(self, channel_id: int, message_id: int) -> None:
        """A message was just posted in ``channel_id``: reserve a token for its final edit from now on."""
        lane = self._lane(channel_id)
        now = self._clock()
        for mid in [m for m, until in lane.streaming.items() if until < now]:  # posts that never streamed
            del lane.streaming[mid]
        lane.streaming.setdefault(str(message_id), now + POSTED_RESERVE_S)

    async def penalize(self, ref: MessageRef, retry_after_s: float) -> None:
        pace = self._message(ref.message_id)
        pace.spacing = min(MAX_MESSAGE_EDIT_SPACING_S, pace.spacing * 2)
        lane = self._lane(self._lane_of(ref))
        lane.blocked_until = max(lane.blocked_until, self._clock() + retry_after_s)


def channel_of(ref: MessageRef) -> int:
    """The channel whose edit bucket an edit of ``ref`` uses, when nothing better is known (a thread has its own)."""
    return int(ref.channel.channel)



class EditBuckets:
    """What discord.py has learned of each channel's edit bucket, minus the edits of ours already in hand."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client
        # Edits per channel between entering ``in_hand`` and leaving it, whether queued or sent: the pacer counts
        # them against the bucket at once, before discord.py has seen them.
        self._in_hand: dict[int, int] = {}

    @contextlib.contextmanager
    def in_hand(self, channel_id: int) -> Iterator[None]:
        """Around one edit of ours in ``channel_id``; entered before its first await, so the pacer's next decision
        already sees it."""
        self._in_hand[channel_id] = self._in_hand.get(channel_id, 0) + 1
        try:
            yield
        finally:
            left = self._in_hand[channel_id] - 1
            if left:
                self._in_hand[channel_id] = left
            else:
                del self._in_hand[channel_id]

    def budget(self, channel_id: int) -> tuple[int, float] | None:
        """(edits left, seconds until the window resets; inf while no window runs) of the channel's edit bucket, or
        None before discord.py has seen the bucket's headers. discord.py keeps this in HTTPClient._buckets
        (private): read defensively, and any surprise just means "unknown".

        discord.py takes a token from ``remaining`` when a request starts (``outgoing`` + 1) and gives the count
        back to the headers when it ends, so ``remaining + outgoing`` is the budget before the requests in flight;
        every edit of ours in hand (queued, in flight or just done) is then subtracted once, including edits the
        pacer has just allowed that discord.py has not seen yet."""
        try:
            http: Any = self._client.http
            route = discord.http.Route(
                "PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=channel_id, message_id=0
            )
            bucket_hash = http._bucket_hashes.get(route.key)
            hashed = http._buckets.get(f"{bucket_hash}:{route.major_parameters}") if bucket_hash else None
            # A channel whose first edit went out before discord.py knew the route's bucket hash keeps what its
            # headers taught under the interim key; the hashed bucket only learns on the channel's next edit.
            interim = http._buckets.get(f"{route.key}:{route.major_parameters}")
            learned = [b for b in (hashed, interim) if b is not None and (b.dirty or b.limit > 1)]
            bucket = learned[0] if learned else None
            if bucket is None:
                return None
            now = asyncio.get_running_loop().time()
            in_hand = self._in_hand.get(channel_id, 0)
            if bucket.expires is None:
                return int(bucket.remaining + bucket.outgoing) - in_hand, math.inf
            if now > bucket.expires:  # the window is over: discord.py resets it on the next request
                return int(bucket.limit) - in_hand, math.inf
            return int(bucket.remaining + bucket.outgoing) - in_hand, float(bucket.expires - now)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            return None
