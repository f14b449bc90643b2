"""A thread's messages the bot has not seen, paged from ``conversations.replies`` at the pace Slack allows.

Threads the bot has not recorded are paged at Tier 3 in large pages until Slack's answers show the restricted
tier (FACTS.md: commercially distributed apps outside the Marketplace get 1 request a minute and 15 messages a
page): a page capped at 15 while more remain, or a 429 with a minute's Retry-After. That is then remembered for
the workspace (every replica paces at it), and the person waiting sees a progress line saying why it is slow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.calls import SlackCalls
from adapters.slack.events import SlackMessage, read_message, ts_of
from adapters.slack.learned import LearnedBudget
from adapters.slack.people import People
from bot.seen import SeenThread
from bot.stores.base import MessageLog, StoreUnavailable
from bot.types import ChannelRef, ChatMessage, MessageGone, MessageRef, PlatformRateLimited

log = logging.getLogger(__name__)

# conversations.replies pages: Tier 3 apps get "pages of 200 or more" (FACTS.md); 200 is Slack's recommended limit.
HISTORY_PAGE_LIMIT = 200
# Since 2025, commercially distributed apps outside the Marketplace: 1 request per minute, at most 15 messages per
# page (FACTS.md). Learned per workspace from Slack's answers, remembered RESTRICTED_TTL_S, then re-checked.
RESTRICTED_PER_MINUTE = 1.0
RESTRICTED_PAGE_MAX = 15
RESTRICTED_TTL_S = 6 * 3600.0
# A 429 on history with a Retry-After this long is the restricted tier's minute, not a Tier 3 burst running out.
RESTRICTED_RETRY_AFTER_S = 20.0
THREAD_GONE = "thread_not_found"  # conversations.replies on a deleted parent or an unknown ts

Progress = Callable[[str], None]


class ThreadHistory:
    """One workspace's reading of threads from Slack, paced by the shared ``conversations.replies`` budget."""

    def __init__(
        self,
        client: AsyncWebClient,
        calls: SlackCalls,
        *,
        budget: LearnedBudget,
        people: People,
        log_store: MessageLog | None,
        page_limit: int = HISTORY_PAGE_LIMIT,
        restricted_per_minute: float = RESTRICTED_PER_MINUTE,
        on_progress: Progress | None = None,
    ) -> None:
        self.client = client
        self._call = calls
        self._history = budget
        self._people = people
        self._log = log_store
        self._history_page_limit = page_limit
        self._restricted_per_minute = restricted_per_minute
        self._on_progress = on_progress

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
        elif ref.message_id != thread_ts:
            # Up to the mention, itself included: not the bot's own "writing…" reply posted since, nor what comes
            # while it reads — on the restricted tier a page more is a minute more (slack_load bench: a 30-message
            # thread took 3 pages, 130 s, with the placeholder; 2 pages without).
            params["latest"], params["inclusive"] = ref.message_id, "true"
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
        return [await self._people.to_chat_message(channel, m, thread_id=thread_ts) for m in ordered]

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


def _slow_reading(read: int, expected: int | None) -> str:
    """The status line while paging at the restricted tier: why it is slow, and for about how long."""
    if expected is not None and expected > read:
        minutes = -(-(expected - read) // RESTRICTED_PAGE_MAX) * 60 / RESTRICTED_PER_MINUTE / 60
        left = f"{read} of {expected} messages so far, about {minutes:.0f} min to go"
    else:
        left = f"{read} messages so far, the next {RESTRICTED_PAGE_MAX} in about a minute"
    return (f"Reading the thread… {left} (Slack lets this app read {RESTRICTED_PAGE_MAX} messages a minute in "
            "this workspace)")  # fmt: skip
