"""How the live replies of a workspace share Slack's rate budgets: ``WorkspaceEditPacer``, bot.live_reply's
EditPacer for Slack.

Every edit of every live reply in a workspace draws from one budget (adapters/slack/buckets.py), finals first; the
progress edits of the replies sharing a budget are spaced by each one's share of it, so the burst is not spent on
every reply's first words and then nobody's text moves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import cachetools

from adapters.slack.buckets import StreamBudgets, WorkspaceBudget, scopes_of
from adapters.slack.learned import PROBE_RECHECK_S, PROBE_TIMEOUT_S
from bot.stores.memory import SCOPES_REMEMBERED
from bot.types import MessageRef

# Progress edits of the replies sharing a budget are spaced by each one's share of what the budget allows over this
# horizon (its burst plus the rate for this long; a reply streams for ~8 s at 50 tokens/s). Without it the burst goes
# on every reply's first progress edit, a moment after its first text, and then each reply waits for the rate alone:
# 15 streams at 100 appends/min is one append per reply every 9 s. Spaced, the same calls are ~3 s apart.
SHARE_HORIZON_S = 10.0
# As a reply ages its share is counted over what is likely left of its life, the horizon less its age (a reply older
# than that is a long one: at least this share of the horizon is left), with the burst spread over the horizon like
# the rate. Counted over a whole horizon at every turn, a stream that ends sooner had its last gap short and its
# middle ones long (slack_load bench, per-channel regime, with the first turns below: staleness p95 2.09 → 1.97 s).
SHARE_LEFT_MIN = 0.5
# Replies are spaced to spend this share of what a budget allows, not all of it: at exactly Slack's rate, jitter
# between our clock and Slack's (a loaded host delays one call, the next arrives close behind) turns calls into 429s
# (slack_load bench: one appendStream 429 a run when the share was all of it).
SHARE_USE = 0.9
# A reply's first progress edit comes after a share of its interval between these two: its message was just posted
# with text, and a budget left full meanwhile wastes its refill. Replies starting together are spread over the range
# in the order they start, so they do not spend the burst at one moment and then all wait for the rate (slack_load
# bench, workspace regime: with every stream's first append at 3/4 of its interval, 17 streams spent the burst at
# once and a quarter of them got no second append). The range reaches past a whole interval: where the budget cannot
# give every reply a second turn, the last to start get their one turn mid-reply, not early and then none (same
# regime: staleness p95 3.98 s with the range up to 0.9, 3.67 s up to 1.1; per-channel regime unchanged).
FIRST_SHARE_MIN, FIRST_SHARE_MAX = 0.4, 1.1
# A stream's final or move waits at most this long for a chat.stopStream turn (streaming.py: an append carries the
# final text instead, the stop follows later; a move is put off).
STOP_WAIT_S = 0.2
# While a reply waits out its spacing it looks again this often (replies finishing shorten everyone's share).
SHARE_RECHECK_S = 0.25


class WorkspaceEditPacer:
    """bot.live_reply.EditPacer for Slack: every edit of every live reply in a workspace draws from one budget.

    With ``streams``, an edit of a message that is a native stream (``is_stream(ref)``) draws from the stream
    methods' budgets instead: a final edit is chat.stopStream (it carries the last text), any other
    chat.appendStream — or chat.stopStream too when ``leaves_stream(ref)`` says the reply moves to chat.update
    (the stop carries its new text). With ``first_edit``, a message's first edit (its first text, replacing the
    placeholder) goes ahead of progress edits like a final does: a congested budget delays what is already on
    screen, not the first words a person is waiting for.

    With ``channel_budget``, a chat.update draws from its channel's budget as well as the workspace's, and a
    progress edit may go as a probe past the workspace budget (within its channel's): Slack documents chat.update
    per workspace, but where its limit is per channel (FACTS.md: unverified) the workspace budget learns from
    accepted probes that there is more room, and one refused probe settles that there is not."""

    def __init__(
        self,
        budget: WorkspaceBudget,
        *,
        channel_budget: WorkspaceBudget | None = None,
        streams: StreamBudgets | None = None,
        is_stream: Callable[[MessageRef], bool] | None = None,
        leaves_stream: Callable[[MessageRef], bool] | None = None,
        first_edit: Callable[[MessageRef], bool] | None = None,
        refused: Callable[[MessageRef], str | None] | None = None,
        no_stop: Callable[[MessageRef, bool], None] | None = None,
        sharing: Callable[[MessageRef, bool], int] | None = None,
        place: Callable[[MessageRef, bool], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self.channel_budget = channel_budget
        self._streams = streams
        self._is_stream = is_stream
        self._leaves_stream = leaves_stream
        self._first_edit = first_edit
        self._refused = refused  # which Slack method got the 429 for a ref, when the platform knows
        # Told when a stream's final (True) or move to chat.update (False) finds no chat.stopStream turn: the final
        # text goes with an append and the stop later, or the stream stays one.
        self._no_stop = no_stop
        # How many live replies (this one included) draw from the same budget as a ref — in its channel when the
        # flag says so: their progress edits are spaced by their share of it (SHARE_HORIZON_S). None: no spacing,
        # the budget's line alone.
        self._sharing = sharing
        # Where a reply stands among those sharing its budget, in the order they were posted: its first progress
        # edit's share (_head_start). Asked again while it waits: a place counted once, among replies of both paths
        # at the moment its first turn began, left the streams that stayed streams (after 7 of 17 moved to
        # chat.update) with first appends at 0.7–1.1 of their share (slack_load bench, per-channel regime:
        # staleness p95 median 2.105 s over 11 runs; with the place asked again 2.057 s over 10, workspace unchanged).
        self._place = place
        self._clock, self._sleep = clock, sleep
        # ref → when its last turn was granted (forgotten on its final); ref → the method its turn probes past.
        self._last: cachetools.LRUCache[MessageRef, float] = cachetools.LRUCache(SCOPES_REMEMBERED)
        self._probes: cachetools.LRUCache[MessageRef, str] = cachetools.LRUCache(SCOPES_REMEMBERED)
        # workspace → until when a progress edit that decided to probe holds the turn (_may_probe_now).
        self._probe_held: cachetools.LRUCache[str, float] = cachetools.LRUCache(SCOPES_REMEMBERED)
        self._firsts = 0  # first progress turns begun: where the next one's head start falls (_head_start)
        self._born: cachetools.LRUCache[MessageRef, float] = cachetools.LRUCache(SCOPES_REMEMBERED)  # first turns

    def _streamed(self, ref: MessageRef) -> StreamBudgets | None:
        if self._streams is not None and self._is_stream is not None and self._is_stream(ref):
            return self._streams
        return None

    async def wait_turn(self, ref: MessageRef, *, final: bool) -> None:
        workspace, channel = scopes_of(ref.channel)
        self._probes.pop(ref, None)  # a new turn: the previous call has had its answer
        self._born.setdefault(ref, self._clock())
        streams = self._streamed(ref)
        if streams is not None:
            leaving = not final and self._leaving(ref)
            if not final and not leaving and self._sharing is not None:
                leaving = await self._space(ref, streams.append, workspace, per_channel=False, final_elsewhere=True)
            if not ((final or leaving) and await self._stop_turn(ref, streams, workspace, urgent=final)):
                if (final or leaving) and self._no_stop is not None:
                    self._no_stop(ref, final)
                await streams.append.take(workspace, urgent=final)
        else:
            urgent = final or (self._first_edit is not None and self._first_edit(ref))
            probe = False
            if not urgent and self._sharing is not None:
                probe = await self._space_edits(ref, workspace, channel)
            if self.channel_budget is not None:
                await self.channel_budget.take(channel, urgent=urgent)
            took_probe = await self.budget.take(workspace, urgent=urgent, probe=probe or self._probing)
            if took_probe:
                self._probes[ref] = "chat.update"
            elif probe:
                self._probe_held.pop(workspace, None)  # a token came first: no probe went
        if final:
            self._last.pop(ref, None)
            self._born.pop(ref, None)
        elif self._sharing is not None:
            self._last[ref] = self._clock()

    async def _stop_turn(self, ref: MessageRef, streams: StreamBudgets, workspace: str, *, urgent: bool) -> bool:
        """A chat.stopStream turn within STOP_WAIT_S: a token, or a probe past the documented Tier 2 budget (one at a
        time, as for chat.update). False: none to spare — the final text goes with an append instead (its stop
        later), or a stream stays one rather than wait to move."""
        try:
            probe = await asyncio.wait_for(streams.stop.take(workspace, urgent=urgent, probe=True), STOP_WAIT_S)
        except TimeoutError:
            return False
        if probe:
            self._probes[ref] = "chat.stopStream"
        return True

    def _leaving(self, ref: MessageRef) -> bool:
        return self._leaves_stream is not None and self._leaves_stream(ref)

    @property
    def _probing(self) -> bool:
        return self.channel_budget is not None

    def share_interval(
        self, ref: MessageRef, budget: WorkspaceBudget, *, per_channel: bool = False, final_elsewhere: bool = False
    ) -> float:
        """Seconds between one reply's progress edits when every reply on ``budget`` takes its equal share.

        A reply's calls on ``budget`` over what is likely left of its life (SHARE_LEFT_MIN) cut its text into as
        many gaps — plus one when its final text goes through another budget (a stream's chat.stopStream): then
        every call here is progress."""
        replies = self._sharing(ref, per_channel) if self._sharing is not None else 1
        if replies <= 1:
            return 0.0  # a lone reply takes nobody's share: the platform's floor and the budget pace it
        workspace, channel = scopes_of(ref.channel)
        scope = channel if per_channel else workspace
        now = self._clock()
        left = max(SHARE_HORIZON_S - (now - self._born.get(ref, now)), SHARE_LEFT_MIN * SHARE_HORIZON_S)
        calls = SHARE_USE * left * (budget.burst(scope) / SHARE_HORIZON_S + budget.per_minute(scope) / 60.0)
        gaps = calls / replies + (1.0 if final_elsewhere else 0.0)
        return left / max(gaps, 1.0)

    async def _space(
        self, ref: MessageRef, budget: WorkspaceBudget, scope: str, *, per_channel: bool, final_elsewhere: bool
    ) -> bool:
        """Wait until ``ref``'s share of the budget is due, counted from its last turn (a part of it the first
        time: _head_start). Meanwhile the budget serves the other replies. True when, while waiting, the stream was
        found better off on chat.update."""
        first = ref not in self._last
        head_start = self._head_start(ref, per_channel=per_channel, first=first)
        last = self._last.setdefault(ref, self._clock())
        while True:
            if first and self._place is not None:  # its place among those sharing now (others moved, or finished)
                head_start = self._head_start(ref, per_channel=per_channel, first=True)
            interval = self.share_interval(ref, budget, per_channel=per_channel, final_elsewhere=final_elsewhere)
            due = last + head_start * interval
            if (wait := due - self._clock()) <= 0:
                return False
            if final_elsewhere and self._leaving(ref):
                return True
            await self._sleep(min(wait, SHARE_RECHECK_S))

    def _head_start(self, ref: MessageRef, *, per_channel: bool, first: bool) -> float:
        """The share of its interval ``ref`` waits before this turn: all of it, or for its ``first`` progress edit
        a share between FIRST_SHARE_MIN and FIRST_SHARE_MAX, spread in the order the sharing replies were posted
        (``place``; without it, in the order their first turns came)."""
        if not first:
            return 1.0
        replies = self._sharing(ref, per_channel) if self._sharing is not None else 1
        if self._place is not None:
            place = min(self._place(ref, per_channel), max(replies - 1, 0))
        else:
            place = self._firsts % max(replies, 1)
            self._firsts += 1
        return FIRST_SHARE_MIN + (FIRST_SHARE_MAX - FIRST_SHARE_MIN) * place / max(replies - 1, 1)

    async def _space_edits(self, ref: MessageRef, workspace: str, channel: str) -> bool:
        """_space for a chat.update: the workspace's share and, with a channel budget, the channel's. True when
        the channel's share is due and the workspace's is not but its budget may be probed: the edit goes now."""
        head_start = self._head_start(ref, per_channel=False, first=ref not in self._last)
        last = self._last.setdefault(ref, self._clock())
        while True:
            wide = last + head_start * self.share_interval(ref, self.budget)
            narrow = wide
            if self.channel_budget is not None:
                narrow = last + head_start * self.share_interval(ref, self.channel_budget, per_channel=True)
            now = self._clock()
            if now >= max(wide, narrow):
                return False
            if now >= narrow and self._may_probe_now(workspace, now):
                self._probe_held[workspace] = now + PROBE_TIMEOUT_S
                return True
            # A probe held by another reply is answered within a fraction of a second: look again soon, not a
            # share's recheck later (the probes of replies starting together must all go in their first seconds).
            soon = now >= narrow and self._room_unproven(workspace)
            await self._sleep(min(max(wide, narrow) - now, PROBE_RECHECK_S if soon else SHARE_RECHECK_S))

    def _room_unproven(self, workspace: str) -> bool:
        """chat.update's room past the documented rate is not known yet here (nor proven by accepted probes)."""
        budget = self.budget
        return self.channel_budget is not None and budget.probing(workspace) and not budget.room_proven(workspace)

    def _may_probe_now(self, workspace: str, now: float) -> bool:
        """A progress edit may probe past the workspace budget: its room is unproven, no probe is out, and no other
        reply's edit holds the turn. Replies alone in their channels edit at the platform floor while they probe;
        without the hold, the turns deciding at one moment all went, one after another's answer, even once the
        room was proven by the first of them: a channel's call spent for nothing, where a stream was about to
        move in (slack_load bench, per-channel regime: 12 calls where 11 proved the room, and that channel a call
        short)."""
        if not self._room_unproven(workspace) or not self.budget.may_probe(workspace):
            return False
        return self._probe_held.get(workspace, float("-inf")) <= now

    async def accepted(self, ref: MessageRef, *, method: str = "chat.update") -> None:
        """Slack accepted a ``method`` call for ``ref``: the budgets it drew from learn that (a probe's too)."""
        workspace, channel = scopes_of(ref.channel)
        probe = self._probes.get(ref) == method
        if probe:
            self._probes.pop(ref, None)
        if method == "chat.update":
            if probe:
                self._probe_held.pop(workspace, None)
            await self.budget.accepted(workspace, probe=probe)
            if self.channel_budget is not None:
                await self.channel_budget.accepted(channel)
        elif self._streams is not None and (budget := self._stream_budget(method)) is not None:
            await budget.accepted(workspace, probe=probe)

    def _stream_budget(self, method: str | None) -> WorkspaceBudget | None:
        streams = self._streams
        if streams is None:
            return None
        return {"chat.startStream": streams.start, "chat.appendStream": streams.append,
                "chat.stopStream": streams.stop}.get(method or "")  # fmt: skip

    async def penalize(self, ref: MessageRef, retry_after_s: float) -> None:
        workspace, channel = scopes_of(ref.channel)
        streams = self._streamed(ref)
        method = self._refused(ref) if self._refused is not None else None
        if method is None and streams is None:
            method = "chat.update"
        probe = self._probes.get(ref) == method
        if probe:
            self._probes.pop(ref, None)
        if method == "chat.update":
            if probe:
                self._probe_held.pop(workspace, None)
            # A refused probe says where the workspace's room ends (no cut: the calls within the budget were fine),
            # and its channel was not at fault; any other 429 pauses and cuts both.
            await self.budget.pause(workspace, retry_after_s, probe=probe)
            if self.channel_budget is not None and not probe:
                await self.channel_budget.pause(channel, retry_after_s)
        elif (budget := self._stream_budget(method)) is not None:
            await budget.pause(workspace, retry_after_s, probe=probe)
        elif streams is not None:  # which stream method was refused is not known: both pause, as Retry-After asks
            for budget in (streams.append, streams.stop):
                await budget.pause(workspace, retry_after_s)
