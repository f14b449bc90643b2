"""SlackPlatform: bot.ports.ChatPlatform over slack_sdk's AsyncWebClient.

Posts and edits go out as Slack mrkdwn (slack_render.to_mrkdwn); Slack's errors become the core's exceptions;
threads the bot has not seen are paged from ``conversations.replies`` at the pace Slack allows unlisted apps.
With native streaming on, a reply in a thread is a Slack stream (chat.startStream/appendStream/stopStream via
``AsyncWebClient.chat_stream``) for as long as its text only grows; anything a stream cannot show (a rewrite, an
expired stream) falls back to ``chat.update`` on the same message.
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

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack_events import SlackMessage, read_message
from adapters.slack_pacing import (
    CHAT_UPDATE_BURST,
    CHAT_UPDATE_PER_MINUTE,
    POST_PER_CHANNEL_BURST,
    POST_PER_CHANNEL_PER_MINUTE,
    InMemoryBudget,
    StreamBudgets,
    WorkspaceBudget,
    WorkspaceEditPacer,
    workspace_of,
)
from adapters.slack_render import to_mrkdwn
from bot.live_reply import DEFAULT_PLACEHOLDER, WRITING_MARKER
from bot.ports import PublishedDocument
from bot.safety import defang_mass_mentions
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
# Since 2025, conversations.replies for apps not in the Marketplace: 1 request per minute, 15 messages per page
# (FACTS.md). Both are settings: Marketplace apps get Tier 3 and 1,000 per page.
HISTORY_PER_MINUTE = 1.0
HISTORY_PAGE_LIMIT = 15
# No grace before the first message (PlatformLimits.first_post_grace_s): the placeholder goes out at once. Slack shows
# bots no typing indicator in channels, so a grace is time with nothing on screen. Measured with the stream bench
# (model: 0.4 s to first token) and a 1 s grace: at N=1 the first message came at 0.48 s instead of 0.01 s, for no
# fewer edits (6) and the same staleness; at N=20 the first text came at 1.7 s instead of 28.6 s (p95) because it
# was posted with the message, but what followed was as stale as before (p50 14.4 s against 14.2 s) and the edits
# were the same (1.25 per reply): the first words, then nothing for as long as "…writing" would have shown. And it
# only helps when the model answers within the grace, which long threads (the case worth waiting for) rarely do.
FIRST_POST_GRACE_S = 0.0
# markdown_text per chat.*Stream call (FACTS.md).
STREAM_MARKDOWN_MAX = 12000
# Display names change rarely; an hour keeps users.info (Tier 4) calls to one per author per hour.
NAME_TTL_S = 3600.0

GONE_ERRORS = frozenset(
    {"message_not_found", "channel_not_found", "not_in_channel", "is_archived", "thread_not_found", "cant_update_message"}
)
STREAM_EXPIRED = "message_not_in_streaming_state"
THREAD_GONE = "thread_not_found"  # conversations.replies on a deleted parent or an unknown ts

Progress = Callable[[str], None]


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
    """One reply streamed natively; ``streamed`` is the markdown Slack has been sent so far."""

    stream: AsyncChatStream
    streamed: str = ""
    active: bool = True


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
        post_budget: WorkspaceBudget | None = None,
        history_budget: WorkspaceBudget | None = None,
        stream_budgets: StreamBudgets | None = None,
        edits_per_minute: float = CHAT_UPDATE_PER_MINUTE,
        edit_burst: int = CHAT_UPDATE_BURST,
        history_per_minute: float = HISTORY_PER_MINUTE,
        history_page_limit: int = HISTORY_PAGE_LIMIT,
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
            first_post_grace_s=FIRST_POST_GRACE_S,
            extra={"native_streaming": 1.0 if native_streaming else 0.0},
        )
        # Every live reply of this workspace shares one chat.update budget (LiveReply gets it via .pacer); replies
        # streamed natively share the stream methods' budget instead.
        self._stream_budgets = stream_budgets or StreamBudgets.in_memory(clock=clock)
        self.pacer = WorkspaceEditPacer(
            edit_budget or InMemoryBudget(per_minute=edits_per_minute, burst=edit_burst, clock=clock),
            streams=self._stream_budgets,
            is_stream=self._is_streaming,
        )
        self.native_streaming = native_streaming
        self._log = log_store
        # Shared budgets (StoreBudget) when several replicas serve the workspace; this process's own otherwise.
        self._history = history_budget or InMemoryBudget(per_minute=history_per_minute, burst=1, clock=clock)
        self._history_page_limit = history_page_limit
        self._posts = post_budget or InMemoryBudget(
            per_minute=posts_per_minute, burst=POST_PER_CHANNEL_BURST, clock=clock
        )
        self._on_progress = on_progress
        self._clock = clock
        self._names: dict[str, tuple[str, float]] = {}
        self._name_locks: dict[str, asyncio.Lock] = {}
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._recipients: dict[tuple[str, str], str] = {}
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

    async def post(self, channel: ChannelRef, text: str, *, thread_id: str | None = None) -> MessageRef:
        if self.native_streaming and thread_id:
            return await self._start_stream(channel, text, thread_id)
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
        return MessageRef(channel, str(response["ts"]), thread_id)

    async def edit(self, ref: MessageRef, text: str) -> None:
        stream = self._streams.get((ref.channel.channel, ref.message_id))
        if stream is not None and stream.active:
            if await self._edit_stream(stream, text):
                return
        await self._call(
            self.client.chat_update, channel=ref.channel.channel, ts=ref.message_id, text=_fit(to_mrkdwn(text))
        )

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Progress | None = None
    ) -> list[ChatMessage]:
        """The thread's messages the bot has not recorded, oldest first: only what is older than the oldest
        message in the log (and newer than ``since``) is paged, because that is what the bot missed."""
        channel = ref.channel
        thread_ts = ref.thread_id or ref.message_id
        params: dict[str, Any] = {"channel": channel.channel, "ts": thread_ts, "limit": self._history_page_limit}
        seen = await self._logged(channel, thread_ts)
        known = {m.ref.message_id for m in seen}
        replies_seen = [m.ref.message_id for m in seen if m.ref.message_id != thread_ts]
        if replies_seen:
            params["latest"] = min(replies_seen, key=float)
        if since is not None:
            params["oldest"] = ts_of(since)
        say = progress or self._on_progress
        raw: list[SlackMessage] = []
        cursor = ""
        pages = 0
        while True:
            if cursor:
                params["cursor"] = cursor
            await self._history.take(channel.workspace)
            try:
                page = await self._call(self.client.conversations_replies, **params)
            except PlatformRateLimited as limited:
                await self._history.pause(channel.workspace, limited.retry_after_s)
                continue
            except MessageGone as gone:
                if gone.args != (THREAD_GONE,):
                    raise
                # The thread's parent was deleted (or the ts was never a message): Slack has nothing more to give,
                # and what the log holds is the whole conversation there is.
                log.info("thread %s/%s is gone on Slack; summarizing what was recorded", channel.key, thread_ts)
                break
            pages += 1
            raw.extend(m for m in map(read_message, page.get("messages") or []) if m is not None)
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
            if say is not None:
                # Another page means another wait of up to a minute on the restricted tier: say so.
                say(f"Reading the thread… {len(raw)} messages so far (Slack lets me read {self._history_page_limit} "
                    "at a time)")
        if say is not None and pages > 1:
            say("")  # the reading is over: the status line goes away before the summary streams in
        by_ts = {m.ts: m for m in raw if m.ts not in known}
        ordered = sorted(by_ts.values(), key=lambda m: float(m.ts))
        log.info("fetched %d unseen messages of %s/%s in %d page(s)", len(ordered), channel.key, thread_ts, pages)
        return [await self.to_chat_message(channel, m, thread_id=thread_ts) for m in ordered]

    async def _logged(self, channel: ChannelRef, thread_ts: str) -> list[ChatMessage]:
        """What the message log holds of the thread; nothing while the shared store is down, so the whole thread
        is paged from Slack (slow on the restricted tier, but the mention is answered)."""
        if self._log is None:
            return []
        try:
            return await self._log.thread(channel, thread_ts)
        except StoreUnavailable as exc:
            log.warning("message log unavailable for %s/%s; reading the thread from Slack: %s", channel.key,
                        thread_ts, exc)  # fmt: skip
            return []

    # ---- translation ----------------------------------------------------------------------------------------

    async def display_name(self, user: str) -> str:
        # One users.info per user at a time: twenty mentions by the same person must not cost twenty calls.
        async with self._name_locks.setdefault(user, asyncio.Lock()):
            return await self._display_name(user)

    async def _display_name(self, user: str) -> str:
        cached = self._names.get(user)
        if cached is not None and self._clock() - cached[1] < NAME_TTL_S:
            return cached[0]
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
        self._names[user] = (str(name), self._clock())
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

    def _is_streaming(self, key: str) -> bool:
        """Whether LiveReply's pacing key ("slack:{team}:{channel}/{ts}") names a message still streamed."""
        head, _, ts = key.partition("/")
        channel = head.split(":", 2)[-1]
        stream = self._streams.get((channel, ts))
        return stream is not None and stream.active

    async def _start_stream(self, channel: ChannelRef, text: str, thread_id: str) -> MessageRef:
        recipient = self._recipients.get((channel.channel, thread_id))
        # A stream is a new message in the channel (the per-channel posting limit) and a chat.startStream call
        # (that method's workspace budget).
        await self._posts.take(channel.key)
        await self._stream_budgets.start.take(workspace_of(channel.key))
        stream = await self.client.chat_stream(
            channel=channel.channel,
            thread_ts=thread_id,
            recipient_team_id=channel.workspace if recipient else None,
            recipient_user_id=recipient,
            buffer_size=1,  # LiveReply paces the calls; the SDK must not buffer behind its back
        )
        # The placeholder is not streamed (a stream can only grow, and the placeholder must go away): the stream
        # starts empty and Slack shows its own "is writing" state until the first text.
        try:
            await self._call(stream.append, chunks=[])
        except PlatformRateLimited as limited:
            await self._stream_budgets.start.pause(workspace_of(channel.key), limited.retry_after_s)
            raise
        if not stream.ts:
            raise MessageGone("chat.startStream returned no ts")
        self._streams[(channel.channel, stream.ts)] = _Stream(stream)
        return MessageRef(channel, stream.ts, thread_id)

    async def _edit_stream(self, state: _Stream, text: str) -> bool:
        """Show ``text`` through the stream if it only adds to what was streamed; False: use chat.update."""
        writing = WRITING_MARKER in text
        content = text[: text.rfind(WRITING_MARKER)] if writing else text
        content = defang_mass_mentions(content)
        # Without the marker the text is final, unless it is the placeholder (with a status line under it, like
        # "Reading the thread…"), which a stream cannot show.
        placeholder = not writing and not state.streamed and content.startswith(DEFAULT_PLACEHOLDER)
        if placeholder or not content.startswith(state.streamed):
            # A rewrite (placeholder → status, a re-split) cannot be streamed: end the stream, edit from now on.
            await self._stop_stream(state)
            return False
        delta = content[len(state.streamed) :]
        pieces = [delta[i : i + STREAM_MARKDOWN_MAX] for i in range(0, len(delta), STREAM_MARKDOWN_MAX)] or [""]
        try:
            for n, piece in enumerate(pieces):
                if not writing and n == len(pieces) - 1:
                    # The final text's last piece goes with chat.stopStream: one call, not an append and a stop.
                    await self._call(state.stream.stop, markdown_text=piece or None)
                    state.active = False
                elif piece:
                    await self._call(state.stream.append, markdown_text=piece)
                state.streamed += piece
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
            await self._call(state.stream.stop)
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

    # ---- the channel's FAQ as a canvas, and message links (adapters/slack_canvas.py) ----------------------------

    _team_url: str | None = None  # from auth.test, on the first link asked for

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        from adapters.slack_canvas import publish_canvas

        return await publish_canvas(self.client, channel, title=title, text=text, previous=previous)

    async def message_link(self, ref: MessageRef) -> str:
        from adapters.slack_canvas import permalink, team_url

        if self._team_url is None:
            self._team_url = await team_url(self.client)
        return permalink(self._team_url, ref)



# conversations.members / conversations.list pages (1,000 is each method's documented maximum; both are Tier 4 / 2).
MEMBERS_PAGE = 1000
MEMBER_PAGES_MAX = 20
CHANNELS_PAGE = 1000
CHANNEL_PAGES_MAX = 10


def _fit(rendered: str) -> str:
    if len(rendered) > SLACK_TEXT_MAX:
        raise MessageTooLong(f"{len(rendered)} characters after conversion to mrkdwn")
    return rendered
