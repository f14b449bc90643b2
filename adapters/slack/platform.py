"""SlackPlatform: bot.ports.ChatPlatform over slack_sdk's AsyncWebClient.

Posts and edits go out as Slack mrkdwn (slack_render.to_mrkdwn); Slack's errors become the core's exceptions;
threads the bot has not seen are paged from ``conversations.replies`` at Tier 3 in large pages until Slack's
answers show the restricted tier (a page capped at 15 while more remain, or a 429 with a minute's Retry-After),
which is then remembered for the workspace. With native streaming on, a reply in a thread is a Slack stream
(chat.startStream/appendStream/stopStream via ``AsyncWebClient.chat_stream``) for as long as its text only grows
— unless the workspace refused streams (remembered) or the chat.update budget has more room per reply; anything a
stream cannot show (a rewrite, an expired stream) falls back to ``chat.update`` on the same message. Every budget
learns its rate from Slack's answers (slack_learned).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cachetools
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.events import SlackMessage, read_message
from adapters.slack.learned import LearnedBudget, LocalBuckets, WorkspaceFacts
from adapters.slack.pacing import (
    CHAT_UPDATE_BURST,
    CHAT_UPDATE_PER_MINUTE,
    HISTORY_BURST,
    HISTORY_PER_MINUTE,
    POST_PER_CHANNEL_BURST,
    POST_PER_CHANNEL_PER_MINUTE,
    STREAM_CALLS_BURST,
    STREAM_CALLS_PER_MINUTE,
    InMemoryBudget,
    StreamBudgets,
    WorkspaceBudget,
    WorkspaceEditPacer,
    scopes_of,
    workspace_of,
)
from adapters.slack.render import to_mrkdwn
from bot.ports import PublishedDocument
from bot.safety import defang_mass_mentions
from bot.seen import SeenThread
from bot.stores import StoreUnavailable
from bot.stores.base import MessageLog
from bot.types import (
    ChannelRef,
    ChatMessage,
    MessageGone,
    MessageRef,
    MessageTooLong,
    PlatformLimits,
    PlatformRateLimited,
)

log = logging.getLogger(__name__)

# "Text over ~4,000 chars fails with msg_too_long in practice" (FACTS.md). The rendered text is checked against it.
SLACK_TEXT_MAX = 4000
# What LiveReply may put in one message, before rendering: escaping (& → &amp;) and link syntax can grow the text,
# so a quarter is left for markup conversion. A text that still renders too long raises MessageTooLong and
# LiveReply re-splits it smaller.
MAX_MESSAGE_CHARS = 3000
# Per-message floor between edits. chat.update is Tier 3 (~50/min) per workspace, with no documented per-message
# limit (FACTS.md); the workspace budget (slack_pacing) does the real pacing, this floor only keeps one reply from
# spending the whole burst on its first tokens. Measured (tests.bench.stream, 50 tok/s, one reply): 0.3 s → p95
# staleness 1.53 s (burst gone in the first second, then 1.3 s waits); 0.6 s → 0.86 s; 1.0 s → 1.25 s.
MIN_EDIT_INTERVAL_S = 0.6
# Native streams append through their own methods' budgets and expire when idle: a shorter floor keeps them alive.
MIN_APPEND_INTERVAL_S = 0.3
# conversations.replies pages: Tier 3 apps get "pages of 200 or more" (FACTS.md); 200 is Slack's recommended limit.
HISTORY_PAGE_LIMIT = 200
# Since 2025, commercially distributed apps outside the Marketplace: 1 request per minute, at most 15 messages per
# page (FACTS.md). Learned per workspace from Slack's answers, remembered RESTRICTED_TTL_S, then re-checked.
RESTRICTED_PER_MINUTE = 1.0
RESTRICTED_PAGE_MAX = 15
RESTRICTED_TTL_S = 6 * 3600.0
# A 429 on history with a Retry-After this long is the restricted tier's minute, not a Tier 3 burst running out.
RESTRICTED_RETRY_AFTER_S = 20.0
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
# Which path a new reply takes: the one whose budget has more calls per reply over this horizon (a reply streams
# for ~10 s at 50 tokens/s); a stream draws from the stream methods' budgets, an edited message from chat.update's.
PATH_HORIZON_S = 10.0
# A streamed reply moves to chat.update (its stream stopped with its new text, then edited) when chat.update has
# this many times the progress calls per reply that the stream methods have: once the chat.update budget learned
# that a workspace's limit is per channel, streams started under the documented budget spread over the channels.
MOVE_MARGIN = 1.25
# A reply whose final text never landed (its replica died) stops counting as active after this long.
ACTIVE_MAX_S = 600.0
# No grace before the first message (PlatformLimits.first_post_grace_s) for chat.update replies: the placeholder
# goes out at once. Slack shows bots no typing indicator in channels, so a grace is time with nothing on screen.
# Measured with the stream bench (model: 0.4 s to first token) and a 1 s grace: at N=1 the first message came at
# 0.48 s instead of 0.01 s, for no fewer edits (6) and the same staleness.
FIRST_POST_GRACE_S = 0.0
# With native streaming the placeholder cannot be shown anyway (a stream only grows, so it starts empty), and a
# stream started with the first text draws it from chat.startStream's budget, which nothing else spends: the first
# words never queue behind other replies' appends (slack_load bench, 20 unseen threads: first text after the first
# token p95 4.3 s when streams started empty). Past the grace (a slow history read) the placeholder is posted.
STREAM_FIRST_POST_GRACE_S = 2.0
# markdown_text per chat.*Stream call (FACTS.md).
STREAM_MARKDOWN_MAX = 12000
# Display names change rarely; an hour keeps users.info (Tier 4) calls to one per author per hour.
NAME_TTL_S = 3600.0
# Users, streams and reply recipients remembered in memory at most (the least recently used are forgotten: a name
# is asked again, a forgotten stream's edits go through chat.update).
REMEMBERED = 10_000

GONE_ERRORS = frozenset(
    {"message_not_found", "channel_not_found", "not_in_channel", "is_archived", "thread_not_found", "cant_update_message"}
)
STREAM_EXPIRED = "message_not_in_streaming_state"
THREAD_GONE = "thread_not_found"  # conversations.replies on a deleted parent or an unknown ts

Progress = Callable[[str], None]


class _StreamRefused(Exception):
    """chat.startStream did not start a stream here; the reply is posted as a message instead."""


def retry_after(response: AsyncSlackResponse | Any) -> float:
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0  # Slack always sends Retry-After with a 429; a second is a sane guess if a proxy dropped it


def translate(exc: SlackApiError) -> Exception:
    """Slack's answer → the core's exception; anything else comes back unchanged for the caller to raise."""
    response = exc.response
    error = str(response.get("error", "")) if response is not None else ""
    if response is not None and (getattr(response, "status_code", 200) == 429 or error == "ratelimited"):
        return PlatformRateLimited(retry_after(response))
    if error == "msg_too_long":
        return MessageTooLong(error)
    if error in GONE_ERRORS:
        return MessageGone(error)
    return exc


def slack_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def ts_of(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(\w+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_LINK = re.compile(r"<([a-z][a-z0-9+.-]*:[^|>]+)(?:\|([^>]*))?>")


def readable(text: str, names: Mapping[str, str]) -> str:
    """Slack's wire text → what a person reads: <@U1> → @Ada, <url|t> → t (url), entities decoded."""
    text = _USER.sub(lambda m: "@" + (names.get(m.group(1)) or m.group(2) or m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _SPECIAL.sub(lambda m: m.group(2) or "@" + m.group(1), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    return html.unescape(text)


@dataclass
class _Stream:
    """One reply streamed natively; ``streamed`` is the markdown Slack has been sent so far.

    ``AsyncChatStream`` starts it; appends and the stop go out as plain chat.appendStream/stopStream calls on its
    ts, because the helper keeps a refused call's text in its buffer and would send it twice on the retry."""

    stream: AsyncChatStream
    channel: str
    ts: str
    streamed: str = ""
    active: bool = True
    leaving: bool = False  # moves to chat.update: the next edit stops the stream with its new text


@dataclass
class _Live:
    """A reply message still being written: which budget it draws from, and whether it was edited yet."""

    streamed: bool
    since: float
    edited: bool = False
    refused: str | None = None  # the method of the last call Slack answered 429


class SlackPlatform:
    """One workspace's Slack, as the core sees it."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        team_id: str,
        log_store: MessageLog | None = None,
        native_streaming: bool = False,
        edit_budget: WorkspaceBudget | None = None,
        channel_edit_budget: WorkspaceBudget | None = None,
        post_budget: WorkspaceBudget | None = None,
        history_budget: LearnedBudget | None = None,
        stream_budgets: StreamBudgets | None = None,
        facts: WorkspaceFacts | None = None,
        edits_per_minute: float = CHAT_UPDATE_PER_MINUTE,
        history_per_minute: float = HISTORY_PER_MINUTE,
        history_page_limit: int = HISTORY_PAGE_LIMIT,
        restricted_per_minute: float = RESTRICTED_PER_MINUTE,
        stream_calls_per_minute: float = STREAM_CALLS_PER_MINUTE,
        posts_per_minute: float = POST_PER_CHANNEL_PER_MINUTE,
        min_edit_interval_s: float | None = None,
        on_progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.team_id = team_id
        self.limits = PlatformLimits(
            max_message_chars=MAX_MESSAGE_CHARS,
            min_edit_interval_s=min_edit_interval_s
            or (MIN_APPEND_INTERVAL_S if native_streaming else MIN_EDIT_INTERVAL_S),
            markup="slack_mrkdwn",
            first_post_grace_s=STREAM_FIRST_POST_GRACE_S if native_streaming else FIRST_POST_GRACE_S,
            extra={"native_streaming": 1.0 if native_streaming else 0.0},
        )
        # This process's own buckets unless the adapter passes shared ones (the store's, for every replica).
        local = LocalBuckets(clock=clock)
        self._stream_budgets = stream_budgets or StreamBudgets(
            *(LearnedBudget(local, name=method, start_per_minute=stream_calls_per_minute,
                            burst=STREAM_CALLS_BURST, clock=clock)
              for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"))
        )  # fmt: skip
        self._edit_budget = edit_budget or LearnedBudget(
            local, name="chat.update", start_per_minute=edits_per_minute, burst=CHAT_UPDATE_BURST, clock=clock
        )
        # The same documented tier per channel: a workspace whose limit turns out to be per channel (probes past
        # the workspace budget accepted) is still never sent more than a tier's worth in one channel.
        self._channel_edit_budget = channel_edit_budget or LearnedBudget(
            local, name="chat.update", start_per_minute=edits_per_minute, burst=CHAT_UPDATE_BURST, clock=clock
        )
        # Every live reply of this workspace shares one chat.update budget (LiveReply gets it via .pacer), and its
        # channel's; replies streamed natively share the stream methods' budgets instead.
        self.pacer = WorkspaceEditPacer(
            self._edit_budget,
            channel_budget=self._channel_edit_budget,
            streams=self._stream_budgets,
            is_stream=self._is_streaming,
            leaves_stream=self._leaves_stream,
            first_edit=self._not_edited_yet,
            refused=self._refused_method,
            sharing=self._sharing,
            clock=clock,
        )
        self.native_streaming = native_streaming
        self._facts = facts or WorkspaceFacts(clock=clock)
        self._log = log_store
        self._history = history_budget or LearnedBudget(
            local, name="conversations.replies", start_per_minute=history_per_minute, burst=HISTORY_BURST,
            clock=clock,
        )
        self._history_page_limit = history_page_limit
        self._restricted_per_minute = restricted_per_minute
        self._posts = post_budget or InMemoryBudget(
            per_minute=posts_per_minute, burst=POST_PER_CHANNEL_BURST, clock=clock
        )
        self._on_progress = on_progress
        self._clock = clock
        # Per-user and per-message maps, each bounded by one policy (REMEMBERED most recent; names also by age).
        self._names: cachetools.TTLCache[str, str] = cachetools.TTLCache(REMEMBERED, NAME_TTL_S, timer=clock)
        self._name_locks: cachetools.LRUCache[str, asyncio.Lock] = cachetools.LRUCache(REMEMBERED)
        self._streams: cachetools.LRUCache[tuple[str, str], _Stream] = cachetools.LRUCache(REMEMBERED)
        self._live: dict[tuple[str, str], _Live] = {}
        self._choosing_streams = self._choosing_edits = 0  # posts in flight, by the path they took
        self._choosing_in: dict[str, int] = {}  # channel → posts in flight there taking chat.update
        self._recipients: cachetools.LRUCache[tuple[str, str], str] = cachetools.LRUCache(REMEMBERED)
        self.rate_limited = 0  # 429s met (for the benches and logs)

    # ---- calls ----------------------------------------------------------------------------------------------

    async def _call(
        self, method: Callable[..., Awaitable[AsyncSlackResponse | None]], **params: Any
    ) -> AsyncSlackResponse:
        try:
            response = await method(**params)
        except SlackApiError as exc:
            translated = translate(exc)
            if isinstance(translated, PlatformRateLimited):
                self.rate_limited += 1
            if translated is exc:
                raise
            raise translated from exc
        assert response is not None  # the stream helper returns None only while buffering; we never buffer
        return response

    # ---- ChatPlatform ---------------------------------------------------------------------------------------

    def expect_reply(self, channel: ChannelRef, thread_id: str, *, user: str) -> None:
        """Who a reply in ``thread_id`` answers: Slack's streams need the recipient when streaming to channels."""
        self._recipients[(channel.channel, thread_id)] = user

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        if self.native_streaming and thread_id and await self._stream_here(channel):
            self._choosing_streams += 1  # counted at once: replies starting together see each other's choice
            try:
                return await self._start_stream(channel, text if body is None else body, thread_id)
            except _StreamRefused:
                pass  # posted as a message below, edited with chat.update
            finally:
                self._choosing_streams -= 1
        self._choosing_edits += 1
        self._choosing_in[channel.channel] = self._choosing_in.get(channel.channel, 0) + 1
        try:
            return await self._post_message(channel, text, thread_id=thread_id)
        finally:
            self._choosing_edits -= 1
            if (left := self._choosing_in.pop(channel.channel, 1) - 1) > 0:
                self._choosing_in[channel.channel] = left

    async def _post_message(self, channel: ChannelRef, text: str, *, thread_id: str | None) -> MessageRef:
        rendered = _fit(to_mrkdwn(text))
        await self._posts.take(channel.key)
        try:
            response = await self._call(
                self.client.chat_postMessage,
                channel=channel.channel,
                text=rendered,
                thread_ts=thread_id,
                unfurl_links=False,
                unfurl_media=False,
            )
        except PlatformRateLimited as limited:
            await self._posts.pause(channel.key, limited.retry_after_s)
            raise
        ts = str(response["ts"])
        self._track(channel, ts, streamed=False)
        return MessageRef(channel, ts, thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        key = (ref.channel.channel, ref.message_id)
        stream = self._streams.get(key)
        if stream is not None and stream.active:
            streamed = text if body is None else body  # a stream shows no marker, status line or placeholder
            if await self._edit_stream(stream, streamed, final=final, workspace=workspace_of(ref.channel)):
                self._edited(key, final=final)
                return
        try:
            await self._call(
                self.client.chat_update, channel=ref.channel.channel, ts=ref.message_id, text=_fit(to_mrkdwn(text))
            )
        except PlatformRateLimited:
            self._note_refused(key, "chat.update")
            raise
        await self.pacer.accepted(ref)
        self._edited(key, final=final)

    def _track(self, channel: ChannelRef, ts: str, *, streamed: bool) -> None:
        now = self._clock()
        if len(self._live) > 100:  # replies whose final never landed (a crash) must not count forever
            self._live = {k: v for k, v in self._live.items() if now - v.since < ACTIVE_MAX_S}
        self._live[(channel.channel, ts)] = _Live(streamed=streamed, since=now)

    def _edited(self, key: tuple[str, str], *, final: bool) -> None:
        live = self._live.get(key)
        if live is None:
            return
        live.edited = True
        if final:
            self._live.pop(key, None)  # the final text: this reply no longer draws from any budget

    def _note_refused(self, key: tuple[str, str], method: str) -> None:
        live = self._live.get(key)
        if live is not None:
            live.refused = method

    def _refused_method(self, ref: MessageRef) -> str | None:
        """The Slack method whose 429 LiveReply is reporting for this message (its budget alone pauses)."""
        live = self._live.get((ref.channel.channel, ref.message_id))
        return None if live is None else live.refused

    def _sharing(self, ref: MessageRef, per_channel: bool) -> int:
        """How many live replies draw from the same budget as this message's (streams, or chat.update), in its
        channel or in the workspace."""
        streamed = self._is_streaming(ref)
        return sum(
            1 for (where, _), live in self._live.items()
            if live.streamed == streamed and (not per_channel or where == ref.channel.channel)
        )  # fmt: skip

    def _calls(self, budget: WorkspaceBudget, scope: str) -> float:
        """What ``budget`` allows under ``scope`` over PATH_HORIZON_S."""
        return budget.burst(scope) + budget.per_minute(scope) * PATH_HORIZON_S / 60.0

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

    def _leaves_stream(self, ref: MessageRef) -> bool:
        """Whether this streamed reply should move to chat.update now (MOVE_MARGIN); decided once, remembered."""
        key = (ref.channel.channel, ref.message_id)
        stream = self._streams.get(key)
        if stream is None or not stream.active:
            return False
        if stream.leaving:
            return True
        workspace = workspace_of(ref.channel)
        streams = sum(1 for live in self._live.values() if live.streamed)
        if self._edit_room(ref.channel, joining=1) > MOVE_MARGIN * self._stream_room(workspace, streams):
            log.info("slack %s: a streamed reply moves to chat.update (%.1f progress calls per reply there, %.1f "
                     "streaming; chat.update at %.0f/min)", workspace, self._edit_room(ref.channel, joining=1),
                     self._stream_room(workspace, streams), self._edit_budget.per_minute(workspace))  # fmt: skip
            stream.leaving = True
            if (live := self._live.get(key)) is not None:
                live.streamed = False  # counted on chat.update at once: replies deciding together see each other
        return stream.leaving

    def _not_edited_yet(self, ref: MessageRef) -> bool:
        live = self._live.get((ref.channel.channel, ref.message_id))
        return live is not None and not live.edited

    async def _stream_here(self, channel: ChannelRef) -> bool:
        """Whether a new reply should be a native stream: the workspace takes them (as far as we know), and the
        stream methods' budget has at least as many calls per reply as chat.update's, so under load replies
        spread over both budgets instead of queueing on one."""
        workspace = workspace_of(channel)
        if await self._facts.get(f"{workspace}:native_streaming") == "refused":
            return False
        streams = sum(1 for live in self._live.values() if live.streamed) + self._choosing_streams
        return self._stream_room(workspace, streams + 1) >= self._edit_room(channel, joining=1)

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Progress | None = None
    ) -> list[ChatMessage]:
        """The thread's messages the bot has not recorded, oldest first: only what is older than the oldest
        reply in the log (and newer than ``since``) is paged, because that is what the bot missed (bot/seen.py)."""
        channel = ref.channel
        workspace = channel.workspace
        thread_ts = ref.thread_id or ref.message_id
        seen = await self._seen(channel, thread_ts)
        params: dict[str, Any] = {"channel": channel.channel, "ts": thread_ts}
        if seen.missed_before is not None:
            params["latest"] = seen.missed_before
        if since is not None:
            params["oldest"] = ts_of(since)
        say = progress or self._on_progress
        raw: list[SlackMessage] = []
        cursor = ""
        pages = 0
        expected: int | None = None  # the parent's reply_count, when Slack sends it
        while True:
            restricted = self._history.pinned(workspace)
            params["limit"] = min(self._history_page_limit, RESTRICTED_PAGE_MAX) if restricted else (
                self._history_page_limit)  # fmt: skip
            if cursor:
                params["cursor"] = cursor
            if say is not None and pages and restricted:
                say(_slow_reading(len(raw), expected))
            await self._history.take(workspace)
            try:
                page = await self._call(self.client.conversations_replies, **params)
            except PlatformRateLimited as limited:
                await self._history.pause(workspace, limited.retry_after_s)
                if limited.retry_after_s >= RESTRICTED_RETRY_AFTER_S and not self._history.pinned(workspace):
                    await self._learn_restricted(workspace, why="a 429 with a minute's Retry-After")
                if say is not None and limited.retry_after_s >= 2:
                    say(f"Reading the thread… {len(raw)} messages so far; Slack asked me to wait "
                        f"{limited.retry_after_s:.0f} s before reading more")  # fmt: skip
                continue
            except MessageGone as gone:
                if gone.args != (THREAD_GONE,):
                    raise
                # The thread's parent was deleted (or the ts was never a message): Slack has nothing more to give,
                # and what the log holds is the whole conversation there is.
                log.info("thread %s/%s is gone on Slack; summarizing what was recorded", channel.key, thread_ts)
                break
            await self._history.accepted(workspace)
            pages += 1
            messages = page.get("messages") or []
            if expected is None and messages and isinstance(messages[0], dict):
                count = messages[0].get("reply_count")
                expected = count + 1 if isinstance(count, int) and count >= 0 else None
            raw.extend(m for m in map(read_message, messages) if m is not None)
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
            if len(messages) <= RESTRICTED_PAGE_MAX < params["limit"] and not self._history.pinned(workspace):
                # Asked for more, got at most 15, and Slack has more: the restricted tier's page cap.
                await self._learn_restricted(workspace, why=f"a page of {len(messages)} with more to come")
            if say is not None:
                say(_slow_reading(len(raw), expected) if self._history.pinned(workspace)
                    else f"Reading the thread… {len(raw)} messages so far")  # fmt: skip
        if say is not None and pages > 1:
            say("")  # the reading is over: the status line goes away before the summary streams in
        ordered = sorted(seen.unseen(raw, lambda m: m.ts), key=lambda m: float(m.ts))
        log.info("fetched %d unseen messages of %s/%s in %d page(s)", len(ordered), channel.key, thread_ts, pages)
        return [await self.to_chat_message(channel, m, thread_id=thread_ts) for m in ordered]

    async def _learn_restricted(self, workspace: str, *, why: str) -> None:
        """This app has the restricted history tier here: pace history at its rate, for every replica."""
        log.warning("slack %s: restricted history tier (%s); reading 15 messages a minute", workspace, why)
        await self._history.pin(workspace, per_minute=self._restricted_per_minute, for_s=RESTRICTED_TTL_S)

    async def _seen(self, channel: ChannelRef, thread_ts: str) -> SeenThread:
        """What the message log holds of the thread; nothing while the shared store is down, so the whole thread
        is paged from Slack (slow on the restricted tier, but the mention is answered)."""
        if self._log is None:
            return SeenThread(thread_ts)
        try:
            return SeenThread.of(thread_ts, await self._log.thread(channel, thread_ts))
        except StoreUnavailable as exc:
            log.warning("message log unavailable for %s/%s; reading the thread from Slack: %s", channel.key,
                        thread_ts, exc)  # fmt: skip
            return SeenThread(thread_ts)

    # ---- translation ----------------------------------------------------------------------------------------

    async def display_name(self, user: str) -> str:
        # One users.info per user at a time: twenty mentions by the same person must not cost twenty calls.
        async with self._name_locks.setdefault(user, asyncio.Lock()):
            return await self._display_name(user)

    async def _display_name(self, user: str) -> str:
        cached = self._names.get(user)
        if cached is not None:
            return cached
        name = user
        try:
            info = (await self._call(self.client.users_info, user=user)).get("user") or {}
            profile = info.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") or info.get(
                "name"
            ) or user
        except PlatformRateLimited:
            return name  # not cached: try again next time
        except (SlackApiError, MessageGone, MessageTooLong) as exc:
            log.info("users.info failed for %s (%s); using the id", user, exc)
        self._names[user] = str(name)
        return str(name)

    async def to_chat_message(
        self, channel: ChannelRef, message: SlackMessage, *, thread_id: str | None = None
    ) -> ChatMessage:
        """A Slack message (checked by slack_events) → ChatMessage, with display names resolved."""
        names = {u: await self.display_name(u) for u in dict.fromkeys(m[0] for m in _USER.findall(message.text))}
        author_name = await self.display_name(message.user) if message.user else message.username or message.author
        return ChatMessage(
            ref=MessageRef(channel, message.ts, thread_id or message.thread_ts),
            author=message.author,
            author_name=author_name,
            text=readable(message.text, names),
            sent_at=slack_time(message.ts),
            is_bot=message.is_bot,
        )

    # ---- native streaming -----------------------------------------------------------------------------------

    def _is_streaming(self, ref: MessageRef) -> bool:
        """Whether ``ref`` is a message still streamed."""
        stream = self._streams.get((ref.channel.channel, ref.message_id))
        return stream is not None and stream.active

    async def _start_stream(self, channel: ChannelRef, body: str, thread_id: str) -> MessageRef:
        """A stream for a reply whose first message shows ``body`` ("": only the placeholder)."""
        recipient = self._recipients.get((channel.channel, thread_id))
        workspace = workspace_of(channel)
        # chat.startStream has a tier of its own (per workspace); chat.postMessage's per-channel limit is that
        # method's (FACTS.md), so a stream does not wait for it.
        await self._stream_budgets.start.take(workspace)
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
            await self._stream_budgets.start.pause(workspace, limited.retry_after_s)
            raise
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in STREAM_REFUSALS:
                # This workspace does not take streams (the app, its plan or its token): say so once, remember it
                # for every replica, and answer with chat.update until the memory expires and we try again.
                log.warning("slack %s refused chat.startStream (%s): replies use chat.update for %.0f h",
                            workspace, error, STREAM_REFUSED_TTL_S / 3600)  # fmt: skip
                await self._facts.put(f"{workspace}:native_streaming", "refused", ttl_s=STREAM_REFUSED_TTL_S)
            else:
                log.warning("slack %s: chat.startStream failed (%s); this reply uses chat.update", workspace, error)
            raise _StreamRefused(error) from exc
        if not stream.ts:
            raise MessageGone("chat.startStream returned no ts")
        await self._stream_budgets.start.accepted(workspace)
        self._streams[(channel.channel, stream.ts)] = _Stream(stream, channel.channel, stream.ts, streamed=first)
        self._track(channel, stream.ts, streamed=True)
        if first:
            # The first text is on screen already: the next append is progress, not a first edit that goes ahead
            # of other replies' appends (20 replies starting together spent the burst on those).
            self._live[(channel.channel, stream.ts)].edited = True
        return MessageRef(channel, stream.ts, thread_id)

    async def _edit_stream(self, state: _Stream, body: str, *, final: bool, workspace: str) -> bool:
        """Show ``body`` through the stream if it only adds to what was streamed; False: use chat.update."""
        writing = not final
        content = defang_mass_mentions(body)
        # An empty body in progress is the placeholder (with a status line under it, like "Reading the thread…"),
        # which a stream cannot show.
        placeholder = writing and not content and not state.streamed
        if placeholder or not content.startswith(state.streamed):
            # A rewrite (placeholder → status, a re-split) cannot be streamed: end the stream, edit from now on.
            await self._stop_stream(state)
            return False
        delta = content[len(state.streamed) :]
        pieces = [delta[i : i + STREAM_MARKDOWN_MAX] for i in range(0, len(delta), STREAM_MARKDOWN_MAX)] or [""]
        method = "chat.appendStream"
        try:
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                method = "chat.stopStream" if (not writing or state.leaving) and last else "chat.appendStream"
                if method == "chat.stopStream":
                    # The final text's last piece goes with chat.stopStream: one call, not an append and a stop.
                    await self._call(
                        self.client.chat_stopStream, channel=state.channel, ts=state.ts, markdown_text=piece or None
                    )
                    state.active = False
                    await self._stream_budgets.stop.accepted(workspace)
                elif piece:
                    await self._call(
                        self.client.chat_appendStream, channel=state.channel, ts=state.ts, markdown_text=piece
                    )
                    await self._stream_budgets.append.accepted(workspace)
                state.streamed += piece
        except PlatformRateLimited:
            self._note_refused((state.channel, state.ts), method)
            raise
        except SlackApiError as exc:
            if exc.response.get("error") != STREAM_EXPIRED:
                raise
            log.info("stream expired; continuing with chat.update")
            state.active = False
            return False
        return True

    async def _stop_stream(self, state: _Stream) -> None:
        state.active = False
        try:
            await self._call(self.client.chat_stopStream, channel=state.channel, ts=state.ts)
        except SlackApiError as exc:  # already expired: chat.update works on it either way
            if exc.response.get("error") != STREAM_EXPIRED:
                raise

    # ---- who may read what (direct messages and the assistant pane ask about other channels) ----------------

    async def readable_for(self, channel_id: str, user: str) -> str:
        """"" if ``user`` may read ``channel_id``, else a sentence saying why not. The bot may sit in private
        channels the asker is not in: what it summarizes for someone must be what that person could read."""
        try:
            info = (await self._call(self.client.conversations_info, channel=channel_id)).get("channel") or {}
        except (MessageGone, SlackApiError):
            return "I can't see that channel: invite me there first (`/invite @supportbot`), then ask again."
        name = "#" + str(info.get("name") or channel_id)
        if info.get("is_member") is False and not info.get("is_im"):
            return f"I am not in {name}: invite me there (`/invite @supportbot`), then ask again."
        if await self._is_member(channel_id, user):
            return ""
        if info.get("is_private") or info.get("is_im") or info.get("is_mpim") or info.get("is_group"):
            return f"{name} is private and you are not in it, so I can't summarize it for you."
        # A public channel: every full member of the workspace may read it; guests only the channels they are in.
        try:
            person = (await self._call(self.client.users_info, user=user)).get("user") or {}
        except (MessageGone, SlackApiError):
            person = {}
        if not person or person.get("is_restricted") or person.get("is_ultra_restricted"):
            return f"You are not in {name}: join it first, then ask again."
        return ""

    async def _is_member(self, channel_id: str, user: str) -> bool:
        cursor = ""
        for _ in range(MEMBER_PAGES_MAX):
            params: dict[str, Any] = {"channel": channel_id, "limit": MEMBERS_PAGE}
            if cursor:
                params["cursor"] = cursor
            try:
                page = await self._call(self.client.conversations_members, **params)
            except (MessageGone, SlackApiError):
                return False
            if user in (page.get("members") or []):
                return True
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return False
        return False  # a channel too large to page through: treated as "not a member" (private ones are refused)

    async def channel_named(self, name: str) -> str | None:
        """The id of the channel called ``name`` (without #) among those the bot can see, or None."""
        wanted = name.lstrip("#").lower()
        cursor = ""
        for _ in range(CHANNEL_PAGES_MAX):
            params: dict[str, Any] = {"types": "public_channel,private_channel", "limit": CHANNELS_PAGE,
                                      "exclude_archived": True}  # fmt: skip
            if cursor:
                params["cursor"] = cursor
            page = await self._call(self.client.conversations_list, **params)
            for channel in page.get("channels") or []:
                if isinstance(channel, dict) and str(channel.get("name", "")).lower() == wanted:
                    return str(channel.get("id"))
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
        return None

    # ---- the channel's FAQ as a canvas, and message links (adapters/slack/canvas.py) ----------------------------

    _team_url: str | None = None  # from auth.test, on the first link asked for

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        from adapters.slack.canvas import publish_canvas

        return await publish_canvas(self.client, channel, title=title, text=text, previous=previous)

    async def message_link(self, ref: MessageRef) -> str:
        from adapters.slack.canvas import permalink, team_url

        if self._team_url is None:
            self._team_url = await team_url(self.client)
        return permalink(self._team_url, ref)



# conversations.members / conversations.list pages (1,000 is each method's documented maximum; both are Tier 4 / 2).
MEMBERS_PAGE = 1000
MEMBER_PAGES_MAX = 20
CHANNELS_PAGE = 1000
CHANNEL_PAGES_MAX = 10


def _slow_reading(read: int, expected: int | None) -> str:
    """The status line while paging at the restricted tier: why it is slow, and for about how long."""
    if expected is not None and expected > read:
        minutes = -(-(expected - read) // RESTRICTED_PAGE_MAX) * 60 / RESTRICTED_PER_MINUTE / 60
        left = f"{read} of {expected} messages so far, about {minutes:.0f} min to go"
    else:
        left = f"{read} messages so far, the next {RESTRICTED_PAGE_MAX} in about a minute"
    return (f"Reading the thread… {left} (Slack lets this app read {RESTRICTED_PAGE_MAX} messages a minute in "
            "this workspace)")  # fmt: skip


def _fit(rendered: str) -> str:
    if len(rendered) > SLACK_TEXT_MAX:
        raise MessageTooLong(f"{len(rendered)} characters after conversion to mrkdwn")
    return rendered
