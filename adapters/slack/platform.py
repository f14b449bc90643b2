"""SlackPlatform: bot.ports.ChatPlatform over slack_sdk's AsyncWebClient — post, edit, fetch a thread.

Posts and edits go out as Slack mrkdwn (adapters/slack/render.py); Slack's errors become the core's exceptions
(calls.py). With native streaming on, a reply in a thread is a Slack stream (streaming.py) for as long as its text
only grows — unless the workspace refused streams or chat.update has more room per reply (paths.py); anything a
stream cannot show falls back to ``chat.update`` on the same message. Threads the bot has not seen are paged at the
pace Slack allows (history.py), names come from users.info (people.py), and requests naming other channels are
checked against what the asker may read (access.py). Every budget learns its rate from Slack's answers
(learned.py) and is shared with the workspace's other replies (pacing.py) and replicas (buckets.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.access import ChannelAccess
from adapters.slack.buckets import (
    CHAT_UPDATE_BURST,
    CHAT_UPDATE_PER_MINUTE,
    HISTORY_BURST,
    HISTORY_PER_MINUTE,
    POST_PER_CHANNEL_BURST,
    POST_PER_CHANNEL_PER_MINUTE,
    STREAM_CALLS_PER_MINUTE,
    InMemoryBudget,
    MemoryBudgets,
    StreamBudgets,
    WorkspaceBudget,
    workspace_of,
)
from adapters.slack.calls import SlackCalls
from adapters.slack.canvas import permalink, publish_canvas, team_url
from adapters.slack.events import SlackMessage
from adapters.slack.facts import WorkspaceFacts
from adapters.slack.history import HISTORY_PAGE_LIMIT, RESTRICTED_PER_MINUTE, Progress, ThreadHistory
from adapters.slack.learned import LearnedBudget
from adapters.slack.pacing import WorkspaceEditPacer
from adapters.slack.paths import ReplyPaths
from adapters.slack.people import People
from adapters.slack.render import to_mrkdwn
from adapters.slack.streaming import STREAMING_CONFLICT, NativeStreams, StreamRefused, learned_stream_budgets
from bot.live_reply import DEFAULT_PLACEHOLDER
from bot.ports import PublishedDocument
from bot.stores.base import MessageLog
from bot.types import ChannelRef, ChatMessage, MessageRef, MessageTooLong, PlatformLimits, PlatformRateLimited

# "Text over ~4,000 chars fails with msg_too_long in practice" (FACTS.md). The rendered text is checked against it.
SLACK_TEXT_MAX = 4000
# What LiveReply may put in one message, before rendering: escaping (& → &amp;) and link syntax can grow the text,
# so a quarter is left for markup conversion. A text that still renders too long raises MessageTooLong and
# LiveReply re-splits it smaller.
MAX_MESSAGE_CHARS = 3000
# Per-message floor between edits. chat.update is Tier 3 (~50/min) per workspace, with no documented per-message
# limit (FACTS.md); the workspace budget (pacing.py) does the real pacing, this floor only keeps one reply from
# spending the whole burst on its first tokens. Measured (tests.bench.stream, 50 tok/s, one reply): 0.3 s → p95
# staleness 1.53 s (burst gone in the first second, then 1.3 s waits); 0.6 s → 0.86 s; 1.0 s → 1.25 s.
MIN_EDIT_INTERVAL_S = 0.6
# Native streams append through their own methods' budgets and expire when idle: a shorter floor keeps them alive.
MIN_APPEND_INTERVAL_S = 0.3
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
        self._call = SlackCalls()
        # This process's own buckets unless the adapter passes shared ones (the store's, for every replica).
        local = MemoryBudgets(clock=clock)
        stream_budgets = stream_budgets or learned_stream_budgets(local, per_minute=stream_calls_per_minute, clock=clock)
        self._edit_budget = edit_budget or LearnedBudget(
            local, name="chat.update", start_per_minute=edits_per_minute, burst=CHAT_UPDATE_BURST, clock=clock
        )
        # The same documented tier per channel: a workspace whose limit turns out to be per channel (probes past
        # the workspace budget accepted) is still never sent more than a tier's worth in one channel.
        channel_edit_budget = channel_edit_budget or LearnedBudget(
            local, name="chat.update", start_per_minute=edits_per_minute, burst=CHAT_UPDATE_BURST, clock=clock
        )
        self._streams = NativeStreams(
            client, self._call, budgets=stream_budgets, facts=facts or WorkspaceFacts(clock=clock),
            on_refused=lambda key, method: self._paths.note_refused(key, method),
        )  # fmt: skip
        self._paths = ReplyPaths(
            edit_budget=self._edit_budget, channel_edit_budget=channel_edit_budget, stream_budgets=stream_budgets,
            streams=self._streams, clock=clock,
        )  # fmt: skip
        # Every live reply of this workspace shares one chat.update budget (LiveReply gets it via .pacer), and its
        # channel's; replies streamed natively share the stream methods' budgets instead.
        self.pacer = WorkspaceEditPacer(
            self._edit_budget,
            channel_budget=channel_edit_budget,
            streams=stream_budgets,
            is_stream=self._streams.is_streaming,
            leaves_stream=self._paths.leaves_stream,
            first_edit=self._paths.not_edited_yet,
            refused=self._paths.refused_method,
            no_stop=self._paths.no_stop,
            sharing=self._paths.sharing,
            place=self._paths.place,
            clock=clock,
        )
        self.native_streaming = native_streaming
        self._people = People(client, self._call, clock=clock)
        self._history = ThreadHistory(
            client, self._call, people=self._people, log_store=log_store, page_limit=history_page_limit,
            restricted_per_minute=restricted_per_minute, on_progress=on_progress,
            budget=history_budget or LearnedBudget(
                local, name="conversations.replies", start_per_minute=history_per_minute, burst=HISTORY_BURST,
                clock=clock,
            ),
        )  # fmt: skip
        self._access = ChannelAccess(client, self._call)
        self._posts = post_budget or InMemoryBudget(
            per_minute=posts_per_minute, burst=POST_PER_CHANNEL_BURST, clock=clock
        )

    async def settle(self) -> None:
        """Wait for the calls left for later (streams' stops) to go out."""
        await self._streams.settle()

    @property
    def rate_limited(self) -> int:
        """429s met (for the benches and logs)."""
        return self._call.rate_limited

    # ---- ChatPlatform ---------------------------------------------------------------------------------------

    def expect_reply(self, channel: ChannelRef, thread_id: str, *, user: str) -> None:
        """Who a reply in ``thread_id`` answers: Slack's streams need the recipient when streaming to channels."""
        self._streams.expect_reply(channel, thread_id, user=user)

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        # A stream shows model text only (an empty one: Slack's own "is writing" state). A placeholder that says more
        # than that — a status line like the restricted tier's "Reading the thread… about 1 min to go" — is posted
        # as a message, where it is seen: started as an empty stream, it showed nothing for the minute the read took.
        plain = body is None or body != "" or text == DEFAULT_PLACEHOLDER
        if self.native_streaming and thread_id and plain and await self._paths.stream_here(channel):
            with self._paths.choosing_stream():
                try:
                    ref = await self._streams.start(channel, text if body is None else body, thread_id)
                except StreamRefused:
                    pass  # posted as a message below, edited with chat.update
                else:
                    stream = self._streams.get((channel.channel, ref.message_id))
                    # With its first text on screen already, the stream's next append is progress, not a first
                    # edit that goes ahead of other replies' appends (20 replies starting together spent the burst
                    # on those).
                    self._paths.track(channel, ref.message_id, streamed=True,
                                      edited=stream is not None and bool(stream.streamed))  # fmt: skip
                    return ref
        with self._paths.choosing_edits(channel):
            return await self._post_message(channel, text, thread_id=thread_id)

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
        self._paths.track(channel, ts, streamed=False)
        return MessageRef(channel, ts, thread_id)

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        key = (ref.channel.channel, ref.message_id)
        stream = self._streams.get(key)
        if stream is not None and stream.active:
            streamed = text if body is None else body  # a stream shows no marker, status line or placeholder
            if await self._streams.edit(stream, streamed, final=final, workspace=workspace_of(ref.channel),
                                        accepted=lambda method: self.pacer.accepted(ref, method=method)):  # fmt: skip
                self._paths.edited(key, final=final)
                return
        try:
            await self._update(ref, _fit(to_mrkdwn(text)))
        except PlatformRateLimited:
            self._paths.note_refused(key, "chat.update")
            raise
        await self.pacer.accepted(ref)
        self._paths.edited(key, final=final)

    async def _update(self, ref: MessageRef, rendered: str) -> None:
        """chat.update; a message Slack still streams (a stream this process does not know of: the janitor after a
        restart, a stop that failed) is refused with streaming_state_conflict — it is stopped, then edited."""
        update = functools.partial(self._call, self.client.chat_update, channel=ref.channel.channel,
                                   ts=ref.message_id, text=rendered)  # fmt: skip
        try:
            await update()
        except SlackApiError as exc:
            if exc.response.get("error") != STREAMING_CONFLICT:
                raise
            await self._streams.stop_message(ref.channel.channel, ref.message_id)
            await update()

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Progress | None = None
    ) -> list[ChatMessage]:
        """The thread's messages the bot has not recorded, oldest first: only what is older than the oldest
        reply in the log (and newer than ``since``) is paged, because that is what the bot missed (bot/seen.py)."""
        return await self._history.fetch_thread(ref, since=since, progress=progress)

    # ---- translation, and who may read what -----------------------------------------------------------------

    async def display_name(self, user: str) -> str:
        return await self._people.display_name(user)

    async def to_chat_message(
        self, channel: ChannelRef, message: SlackMessage, *, thread_id: str | None = None
    ) -> ChatMessage:
        """A Slack message (checked by adapters/slack/events.py) → ChatMessage, with display names resolved."""
        return await self._people.to_chat_message(channel, message, thread_id=thread_id)

    async def readable_for(self, channel_id: str, user: str) -> str:
        """"" if ``user`` may read ``channel_id``, else a sentence saying why not (access.py)."""
        return await self._access.readable_for(channel_id, user)

    async def channel_named(self, name: str) -> str | None:
        """The id of the channel called ``name`` (without #) among those the bot can see, or None."""
        return await self._access.channel_named(name)

    # ---- the channel's FAQ as a canvas, and message links (adapters/slack/canvas.py) ----------------------------

    _team_url: str | None = None  # from auth.test, on the first link asked for

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        return await publish_canvas(self.client, channel, title=title, text=text, previous=previous)

    async def message_link(self, ref: MessageRef) -> str:
        if self._team_url is None:
            self._team_url = await team_url(self.client)
        return permalink(self._team_url, ref)


def _fit(rendered: str) -> str:
    if len(rendered) > SLACK_TEXT_MAX:
        raise MessageTooLong(f"{len(rendered)} characters after conversion to mrkdwn")
    return rendered
