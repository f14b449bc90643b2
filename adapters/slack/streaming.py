"""Slack's native streams for AI apps: a reply shown through chat.startStream / appendStream / stopStream.

A stream can only grow: ``NativeStreams.edit`` sends what a new version adds, and the final text goes with the
stop — or, where chat.stopStream's budget (Tier 2, a fifth of the appends') has no call to spare at that moment, with
an append, the stop following when the budget allows: a reply's last words never wait behind other replies' stops.
Anything a stream cannot show — a rewrite, an empty placeholder, a stream Slack expired
(``message_not_in_streaming_state``) — ends the stream and the reply continues with chat.update on the same
message (adapters/slack/platform.py). A workspace that refuses streams (an app, plan or token without the feature)
is remembered for every replica, and tried again after STREAM_REFUSED_TTL_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import cachetools
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buckets import (
    STREAM_CALLS_BURST,
    STREAM_START_STOP_BURST,
    STREAM_START_STOP_SHARE,
    StreamBudgets,
    workspace_of,
)
from adapters.slack.calls import SlackCalls
from adapters.slack.facts import WorkspaceFacts
from adapters.slack.learned import LearnedBudget
from bot.safety import defang_mass_mentions
from bot.stores.base import KeyValue, Locks, RateBudgets
from bot.types import ChannelRef, MessageGone, MessageRef, PlatformRateLimited, ReplyStopped

log = logging.getLogger(__name__)

# Native streaming refused in a workspace (an app or plan without the feature): remembered this long, then tried
# again, so enabling the feature in Slack takes effect without a restart.
STREAM_REFUSED_TTL_S = 6 * 3600.0
# chat.startStream refusals that say this workspace (app, plan, token) does not take streams, rather than that one
# call was wrong: error names from the method's reference (slack-ruby/slack-api-ref chat.startStream.json) plus
# the names apps report for the feature being off ("not_allowed", "feature_not_enabled", assistant-only threads).
STREAM_REFUSALS = frozenset(
    {
        "unknown_method", "method_deprecated", "deprecated_endpoint", "access_denied", "accesslimited",
        "enterprise_is_restricted", "missing_scope", "not_allowed_token_type", "no_permission", "not_allowed",
        "feature_not_enabled", "not_enabled", "team_not_allowed", "not_in_assistant_thread", "invalid_thread",
        "channel_type_not_supported",
    }
)  # fmt: skip
# markdown_text per chat.*Stream call (FACTS.md).
STREAM_MARKDOWN_MAX = 12000
STREAM_EXPIRED = "message_not_in_streaming_state"
# chat.update's answer for a message still streaming: "The message is currently streaming text and cannot be edited."
STREAMING_CONFLICT = "streaming_state_conflict"
# The person pressed stop on the streamed reply: "no further appends are accepted" (chat.appendStream's errors).
STOPPED_BY_USER = "stopped_by_user"
# While Slack's room past the documented chat.startStream budget is being found, a reply waits at most this long for
# its turn to probe (one probe is out at a time), then is posted as a message: its first words must not wait long
# for a stream. 17 replies probing one by one took 0.14 s on this machine (slack_load bench), twice that under load;
# at 0.2 s a loaded run posted 6 of them as messages, which then starved on chat.update's 50/min (staleness p95 14 s).
START_WAIT_S = 0.5
# A stop left for later (its text went with an append) is tried this many times through 429s, then left to Slack,
# which ends idle streams itself (FACTS.md); the text is all on screen either way.
STOP_LATER_TRIES = 5
# Streams and reply recipients remembered in memory at most (the least recently used are forgotten: a forgotten
# stream's edits go through chat.update).
REMEMBERED = 10_000

# Which message's call Slack refused with a 429, and the method: (channel, ts), "chat.appendStream".
OnRefused = Callable[[tuple[str, str], str], None]


def learned_stream_budgets(
    budgets: RateBudgets,
    *,
    per_minute: float,
    kv: KeyValue | None = None,
    locks: Locks | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StreamBudgets:
    """The stream methods' budgets, each learned from Slack's answers from its documented tier (buckets.py):
    appends at ``per_minute``, starts and stops at Tier 2's share of it; ``locks`` let replicas probe one at a time."""

    def one(method: str, rate: float, burst: int) -> LearnedBudget:
        return LearnedBudget(budgets, name=method, start_per_minute=rate, burst=burst, kv=kv, locks=locks, clock=clock)

    slow = per_minute * STREAM_START_STOP_SHARE
    return StreamBudgets(one("chat.startStream", slow, STREAM_START_STOP_BURST),
                         one("chat.appendStream", per_minute, STREAM_CALLS_BURST),
                         one("chat.stopStream", slow, STREAM_START_STOP_BURST))  # fmt: skip


class StreamRefused(Exception):
    """chat.startStream did not start a stream here; the reply is posted as a message instead."""


@dataclass
class Stream:
    """One reply streamed natively; ``streamed`` is the markdown Slack has been sent so far.

    ``AsyncChatStream`` starts it; appends and the stop go out as plain chat.appendStream/stopStream calls on its
    ts, because the helper keeps a refused call's text in its buffer and would send it twice on the retry."""

    stream: AsyncChatStream
    channel: str
    ts: str
    streamed: str = ""
    active: bool = True
    leaving: bool = False  # moves to chat.update: the next edit stops the stream with its new text
    stop_later: bool = False  # the final text goes with an append, the stop after it (no stop to spare now)


class NativeStreams:
    """One workspace's streamed replies, drawing from the stream methods' budgets."""

    def __init__(
        self,
        client: AsyncWebClient,
        calls: SlackCalls,
        *,
        budgets: StreamBudgets,
        facts: WorkspaceFacts,
        on_refused: OnRefused,
    ) -> None:
        self.client = client
        self._call = calls
        self._stream_budgets = budgets
        self._facts = facts
        self._note_refused = on_refused
        self._streams: cachetools.LRUCache[tuple[str, str], Stream] = cachetools.LRUCache(REMEMBERED)
        self._recipients: cachetools.LRUCache[tuple[str, str], str] = cachetools.LRUCache(REMEMBERED)
        self._stopping: set[asyncio.Task[None]] = set()  # stops left for later (stop_later)

    def expect_reply(self, channel: ChannelRef, thread_id: str, *, user: str) -> None:
        """Who a reply in ``thread_id`` answers: Slack's streams need the recipient when streaming to channels."""
        self._recipients[(channel.channel, thread_id)] = user

    def get(self, key: tuple[str, str]) -> Stream | None:
        """The stream of message (channel, ts), active or not, if it was one."""
        return self._streams.get(key)

    def is_streaming(self, ref: MessageRef) -> bool:
        """Whether ``ref`` is a message still streamed."""
        stream = self._streams.get((ref.channel.channel, ref.message_id))
        return stream is not None and stream.active

    async def refused_in(self, workspace: str) -> bool:
        """Whether this workspace refused streams (as remembered for every replica)."""
        return await self._facts.get(f"{workspace}:native_streaming") == "refused"

    async def start(self, channel: ChannelRef, body: str, thread_id: str) -> MessageRef:
        """A stream for a reply whose first message shows ``body`` ("": only the placeholder)."""
        recipient = self._recipients.get((channel.channel, thread_id))
        workspace = workspace_of(channel)
        # chat.startStream has a tier of its own (per workspace); chat.postMessage's per-channel limit is that
        # method's (FACTS.md), so a stream does not wait for it. Nor does a reply wait long for chat.startStream:
        # past the documented Tier 2 burst, starts go one at a time as probes (Slack may take more: each accepted one
        # is a stream, and a few raise the rate); with no turn within START_WAIT_S, or none to probe for (a refused
        # probe settled the room), the reply is posted as a message at once, its first words on screen.
        budget = self._stream_budgets.start
        if await budget.take_now(workspace):
            probe = False
        elif budget.probing(workspace):
            try:
                probe = await asyncio.wait_for(budget.take(workspace, probe=True), START_WAIT_S)
            except TimeoutError:
                raise StreamRefused("chat.startStream: no turn to probe in time") from None
        else:
            raise StreamRefused("chat.startStream's budget is spent for now")
        stream = await self.client.chat_stream(
            channel=channel.channel,
            thread_ts=thread_id,
            recipient_team_id=channel.workspace if recipient else None,
            recipient_user_id=recipient,
            buffer_size=1,  # LiveReply paces the calls; the SDK must not buffer behind its back
        )
        # The placeholder is not streamed (a stream can only grow, and the placeholder must go away): the stream
        # starts empty and Slack shows its own "is writing" state until the first text. Model text (the first post
        # after the grace) starts the stream.
        first = defang_mass_mentions(body)
        try:
            await self._call(stream.append, chunks=[{"type": "markdown_text", "text": first}] if first else [])
        except PlatformRateLimited as limited:
            await budget.pause(workspace, limited.retry_after_s, probe=probe)
            raise StreamRefused("chat.startStream: 429") from limited
        except SlackApiError as exc:
            await budget.accepted(workspace, probe=probe)  # answered, not rate limited: the call fit the budget
            error = str(exc.response.get("error", ""))
            if error in STREAM_REFUSALS:
                # This workspace does not take streams (the app, its plan or its token): say so once, remember it
                # for every replica, and answer with chat.update until the memory expires and we try again.
                log.warning("slack %s refused chat.startStream (%s): replies use chat.update for %.0f h",
                            workspace, error, STREAM_REFUSED_TTL_S / 3600)  # fmt: skip
                await self._facts.put(f"{workspace}:native_streaming", "refused", ttl_s=STREAM_REFUSED_TTL_S)
            else:
                log.warning("slack %s: chat.startStream failed (%s); this reply uses chat.update", workspace, error)
            raise StreamRefused(error) from exc
        if not stream.ts:
            raise MessageGone("chat.startStream returned no ts")
        await budget.accepted(workspace, probe=probe)
        self._streams[(channel.channel, stream.ts)] = Stream(stream, channel.channel, stream.ts, streamed=first)
        return MessageRef(channel, stream.ts, thread_id)

    async def edit(
        self, state: Stream, body: str, *, final: bool, workspace: str, accepted: Callable[[str], Awaitable[None]]
    ) -> bool:
        """Show ``body`` through the stream if it only adds to what was streamed; False: use chat.update.
        ``accepted(method)`` is told of each call Slack took (the pacer knows which budget, and whether a probe)."""
        writing = not final
        content = defang_mass_mentions(body)
        # An empty body in progress is the placeholder (with a status line under it, like "Reading the thread…"),
        # which a stream cannot show.
        placeholder = writing and not content and not state.streamed
        if placeholder or not content.startswith(state.streamed):
            # A rewrite (placeholder → status, a re-split) cannot be streamed: end the stream, edit from now on.
            await self.stop(state)
            return False
        delta = content[len(state.streamed) :]
        pieces = [delta[i : i + STREAM_MARKDOWN_MAX] for i in range(0, len(delta), STREAM_MARKDOWN_MAX)] or [""]
        method = "chat.appendStream"
        try:
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                stop = (state.leaving or not (writing or state.stop_later)) and last
                method = "chat.stopStream" if stop else "chat.appendStream"
                if stop:
                    # The final text's last piece goes with chat.stopStream: one call, not an append and a stop.
                    await self._call(
                        self.client.chat_stopStream, channel=state.channel, ts=state.ts, markdown_text=piece or None
                    )
                    state.active = False
                    await accepted(method)
                elif piece:
                    await self._call(
                        self.client.chat_appendStream, channel=state.channel, ts=state.ts, markdown_text=piece
                    )
                    await accepted(method)
                state.streamed += piece
        except PlatformRateLimited:
            self._note_refused((state.channel, state.ts), method)
            raise
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error == STOPPED_BY_USER:
                state.active = False
                raise ReplyStopped(f"{method}: {error}") from exc
            if error != STREAM_EXPIRED:
                raise
            log.info("stream expired; continuing with chat.update")
            state.active = False
            return False
        if state.stop_later and not writing:
            state.active = False  # all its text is on screen: the stop follows (settle() waits for it)
            task = asyncio.create_task(self._stop_later(state, workspace))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        return True

    async def _stop_later(self, state: Stream, workspace: str) -> None:
        """chat.stopStream for a stream whose final text went with an append, when its budget allows (probing past
        the documented tier like any stop), through a few 429s."""
        budget = self._stream_budgets.stop
        for _ in range(STOP_LATER_TRIES):
            probe = await budget.take(workspace, probe=True)
            try:
                await self._call(self.client.chat_stopStream, channel=state.channel, ts=state.ts)
            except PlatformRateLimited as limited:
                await budget.pause(workspace, limited.retry_after_s, probe=probe)
                continue
            except Exception as exc:  # noqa: BLE001 - the text is on screen; Slack ends an idle stream itself
                if isinstance(exc, SlackApiError):
                    await budget.accepted(workspace, probe=probe)
                log.info("slack %s: a stream's late stop failed (%s); Slack ends it when idle", workspace, exc)
                return
            await budget.accepted(workspace, probe=probe)
            return
        log.warning("slack %s: a stream's late stop met %d 429s; Slack ends it when idle", workspace, STOP_LATER_TRIES)

    async def settle(self) -> None:
        """Wait for the stops left for later (shutdown, a bench's end)."""
        while self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def stop(self, state: Stream) -> None:
        state.active = False
        await self.stop_message(state.channel, state.ts)

    async def stop_message(self, channel: str, ts: str) -> None:
        """End the stream of message ``ts`` with no more text, known to this process or not (the janitor after a
        restart, a stop that failed); one Slack already ended is fine: chat.update works on it either way."""
        if (known := self._streams.get((channel, ts))) is not None:
            known.active = False
        try:
            await self._call(self.client.chat_stopStream, channel=channel, ts=ts)
        except SlackApiError as exc:
            if exc.response.get("error") != STREAM_EXPIRED:
                raise
