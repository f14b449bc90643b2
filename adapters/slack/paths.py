"""Which path a reply takes in Slack: a native stream, or a message edited with chat.update.

Each path draws from its own budgets (the stream methods', chat.update's per workspace and per channel). A new
reply takes the path whose budget has more calls per reply over PATH_HORIZON_S, counting the replies still being
written (and those choosing at this moment), so under load replies spread over both budgets instead of queueing
on one; a streamed reply moves to chat.update when that budget turns out to have clearly more room (MOVE_MARGIN).
While chat.update's room is unknown, replies starting together put one per channel on it to find out (PROBE_MIN_ROOM).
``ReplyPaths`` keeps the live replies this needs, and answers WorkspaceEditPacer's questions about them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adapters.slack.buckets import StreamBudgets, WorkspaceBudget, scopes_of, workspace_of
from adapters.slack.streaming import NativeStreams
from bot.types import ChannelRef, MessageRef

log = logging.getLogger(__name__)

# Which path a new reply takes: the one whose budget has more calls per reply over this horizon (a reply streams
# for ~10 s at 50 tokens/s); a stream draws from the stream methods' budgets, an edited message from chat.update's.
PATH_HORIZON_S = 10.0
# A streamed reply moves to chat.update (its stream stopped with its new text, then edited) when chat.update has
# this many times the progress calls per reply that the stream methods have: once the chat.update budget learned
# that a workspace's limit is per channel, streams started under the documented budget spread over the channels.
MOVE_MARGIN = 1.25
# A streamed reply moves only this young: a move pays a chat.stopStream, and its final then waits in chat.update's
# budget, where near the reply's end its own stop would have been the quicker final (slack_load bench, per-channel
# regime: a stream moving at 7.9 s showed its final text 1.9 s after the model's last token).
MOVE_BEFORE_S = 5.0
# Replies that take chat.update to find its room (ReplyPaths._probe_here) are as many as would still have this many
# progress calls each over PATH_HORIZON_S if the limit is the workspace's after all (3 at Tier 3): with one more,
# the slack_load bench's workspace regime left their progress and finals queueing (staleness p95 5.2 s).
PROBE_MIN_ROOM = 3.0
# A reply whose final text never landed (its replica died) stops counting as active after this long.
ACTIVE_MAX_S = 600.0


@dataclass
class _Live:
    """A reply message still being written: which budget it draws from, and whether it was edited yet."""

    streamed: bool
    since: float
    edited: bool = False
    refused: str | None = None  # the method of the last call Slack answered 429


class ReplyPaths:
    """The live replies of one workspace, by path, and the choice of path for new ones."""

    def __init__(
        self,
        *,
        edit_budget: WorkspaceBudget,
        channel_edit_budget: WorkspaceBudget,
        stream_budgets: StreamBudgets,
        streams: NativeStreams,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._edit_budget = edit_budget
        self._channel_edit_budget = channel_edit_budget
        self._stream_budgets = stream_budgets
        self._streams = streams
        self._clock = clock
        self._live: dict[tuple[str, str], _Live] = {}
        self._choosing_streams = self._choosing_edits = 0  # posts in flight, by the path they took
        self._choosing_in: dict[str, int] = {}  # channel → posts in flight there taking chat.update

    @contextlib.contextmanager
    def choosing_stream(self) -> Iterator[None]:
        """A post in flight that took the stream path: counted at once, so replies starting together see each
        other's choice."""
        self._choosing_streams += 1
        try:
            yield
        finally:
            self._choosing_streams -= 1

    @contextlib.contextmanager
    def choosing_edits(self, channel: ChannelRef) -> Iterator[None]:
        """A post in flight that took the chat.update path, in ``channel``."""
        self._choosing_edits += 1
        self._choosing_in[channel.channel] = self._choosing_in.get(channel.channel, 0) + 1
        try:
            yield
        finally:
            self._choosing_edits -= 1
            if (left := self._choosing_in.pop(channel.channel, 1) - 1) > 0:
                self._choosing_in[channel.channel] = left

    def track(self, channel: ChannelRef, ts: str, *, streamed: bool, edited: bool = False) -> None:
        """A reply's message was posted (``edited``: with its first text on screen already)."""
        now = self._clock()
        if len(self._live) > 100:  # replies whose final never landed (a crash) must not count forever
            self._live = {k: v for k, v in self._live.items() if now - v.since < ACTIVE_MAX_S}
        self._live[(channel.channel, ts)] = _Live(streamed=streamed, since=now, edited=edited)

    def edited(self, key: tuple[str, str], *, final: bool) -> None:
        live = self._live.get(key)
        if live is None:
            return
        live.edited = True
        if final:
            self._live.pop(key, None)  # the final text: this reply no longer draws from any budget

    def note_refused(self, key: tuple[str, str], method: str) -> None:
        live = self._live.get(key)
        if live is not None:
            live.refused = method

    def refused_method(self, ref: MessageRef) -> str | None:
        """The Slack method whose 429 LiveReply is reporting for this message (its budget alone pauses)."""
        live = self._live.get((ref.channel.channel, ref.message_id))
        return None if live is None else live.refused

    def sharing(self, ref: MessageRef, per_channel: bool) -> int:
        """How many live replies draw from the same budget as this message's (streams, or chat.update), in its
        channel or in the workspace. A chat.update reply alone in its channel, once chat.update's room is proven per
        channel, counts a stream there that may still move to it (leaves_stream): alone, it edited at the platform
        floor and spent its channel's budget just before the stream moved in, whose final then came late (slack_load
        bench, per-channel regime: ~40 tokens shown late in each such channel)."""
        replies = sum(1 for _ in self._sharing_with(ref, per_channel))
        if replies == 1 and per_channel and not self._streams.is_streaming(ref) and self._may_move_in(ref.channel):
            return 2
        return replies

    def _may_move_in(self, channel: ChannelRef) -> bool:
        """A stream in ``channel`` is young enough to move to chat.update, whose room probes proved."""
        if not self._edit_budget.room_proven(workspace_of(channel)):
            return False
        now = self._clock()
        return any(
            live.streamed and where == channel.channel and now - live.since <= MOVE_BEFORE_S
            for (where, _), live in self._live.items()
        )  # fmt: skip

    def place(self, ref: MessageRef, per_channel: bool) -> int:
        """Where this reply stands, in the order they were posted, among the live replies sharing its budget."""
        own = self._live.get((ref.channel.channel, ref.message_id))
        if own is None:
            return 0
        return sum(1 for live in self._sharing_with(ref, per_channel) if live.since < own.since)

    def _sharing_with(self, ref: MessageRef, per_channel: bool) -> Iterator[_Live]:
        streamed = self._streams.is_streaming(ref)
        return (
            live for (where, _), live in self._live.items()
            if live.streamed == streamed and (not per_channel or where == ref.channel.channel)
        )  # fmt: skip

    def _calls(self, budget: WorkspaceBudget, scope: str) -> float:
        """What ``budget`` allows under ``scope`` over PATH_HORIZON_S."""
        return budget.burst(scope) + budget.proven_per_minute(scope) * PATH_HORIZON_S / 60.0

    def _edit_room(self, channel: ChannelRef, *, joining: int) -> float:
        """Progress calls per chat.update reply over the horizon if ``joining`` more replies took that path: the
        tighter of the workspace's and the channel's budgets, each reply's final edit paid from them too."""
        workspace, scope = scopes_of(channel)
        edits = [live for live in self._live.values() if not live.streamed]
        in_channel = sum(1 for (where, _), live in self._live.items() if not live.streamed and where == channel.channel)
        in_channel += self._choosing_in.get(channel.channel, 0)
        wide = self._calls(self._edit_budget, workspace) / (len(edits) + self._choosing_edits + joining)
        narrow = self._calls(self._channel_edit_budget, scope) / (in_channel + joining)
        return min(wide, narrow) - 1.0

    def _stream_room(self, workspace: str, streams: int) -> float:
        """Progress calls per streamed reply over the horizon with ``streams`` streams (finals go by stopStream)."""
        return self._calls(self._stream_budgets.append, workspace) / max(streams, 1)

    def leaves_stream(self, ref: MessageRef) -> bool:
        """Whether this streamed reply should move to chat.update now (MOVE_MARGIN); decided once, remembered."""
        key = (ref.channel.channel, ref.message_id)
        stream = self._streams.get(key)
        if stream is None or not stream.active:
            return False
        if stream.leaving:
            return True
        live = self._live.get(key)
        if live is None or self._clock() - live.since > MOVE_BEFORE_S:
            return False
        workspace = workspace_of(ref.channel)
        streams = sum(1 for live in self._live.values() if live.streamed)
        if self._edit_room(ref.channel, joining=1) > MOVE_MARGIN * self._stream_room(workspace, streams):
            log.info("slack %s: a streamed reply moves to chat.update (%.1f progress calls per reply there, %.1f "
                     "streaming; chat.update at %.0f/min)", workspace, self._edit_room(ref.channel, joining=1),
                     self._stream_room(workspace, streams), self._edit_budget.per_minute(workspace))  # fmt: skip
            stream.leaving = True
            live.streamed = False  # counted on chat.update at once: replies deciding together see each other
        return stream.leaving

    def no_stop(self, ref: MessageRef, final: bool) -> None:
        """The pacer found no chat.stopStream turn for this stream (Tier 2, a fifth of the appends'): its final text
        goes with an append and the stop later, or its move to chat.update is put off (decided again later)."""
        key = (ref.channel.channel, ref.message_id)
        stream = self._streams.get(key)
        if stream is None:
            return
        if final:
            stream.stop_later = True
        elif stream.leaving:
            stream.leaving = False
            if (live := self._live.get(key)) is not None:
                live.streamed = True

    def not_edited_yet(self, ref: MessageRef) -> bool:
        live = self._live.get((ref.channel.channel, ref.message_id))
        return live is not None and not live.edited

    async def stream_here(self, channel: ChannelRef) -> bool:
        """Whether a new reply should be a native stream: the workspace takes them (as far as we know), and the
        stream methods' budget has at least as many calls per reply as chat.update's, so under load replies
        spread over both budgets instead of queueing on one."""
        workspace = workspace_of(channel)
        if await self._streams.refused_in(workspace):
            return False
        streams = sum(1 for live in self._live.values() if live.streamed) + self._choosing_streams
        if self._probe_here(channel, workspace, others=len(self._live) + self._choosing_streams + self._choosing_edits):
            return False
        return self._stream_room(workspace, streams + 1) >= self._edit_room(channel, joining=1)

    def _probe_here(self, channel: ChannelRef, workspace: str, *, others: int) -> bool:
        """Whether this reply should take chat.update to find out whether its limit is per channel: replies are
        starting while others run, none of them edits messages in this channel, and the chat.update budget has
        not learned its room yet (may be probed). Under load each channel then has a reply whose progress edits
        probe past the workspace budget from its first seconds, so a per-channel limit is found while the replies
        that started as streams can still move to it (leaves_stream); where the limit is the workspace's, one
        refused probe settles it and the choice is the budgets' again."""
        if others < 1 or not self._edit_budget.may_probe(workspace):
            return False
        if self._edit_room(channel, joining=1) < PROBE_MIN_ROOM:
            return False  # as many as the budget serves if the limit is the workspace's after all
        editing_here = self._choosing_in.get(channel.channel, 0) + sum(
            1 for (where, _), live in self._live.items() if not live.streamed and where == channel.channel
        )
        return editing_here == 0
