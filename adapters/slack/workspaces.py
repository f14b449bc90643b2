"""One SlackPlatform per workspace, all drawing from rate budgets kept in the store.

Slack's limits are per workspace (and per channel for posts), not per process: the buckets live in the store, so N
replicas on one Redis together stay within one workspace's tier. On SQLite they serve one process (or several on
one host) the same way. Each budget starts at the documented tier and learns the workspace's real rate from
Slack's answers (learned.py); the learned rates and facts (restricted history tier, streaming refused) are kept in
the store for all.
"""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buckets import (
    HISTORY_BURST,
    POST_PER_CHANNEL_BURST,
    POST_PER_CHANNEL_PER_MINUTE,
    StoreBudget,
)
from adapters.slack.facts import WorkspaceFacts
from adapters.slack.history import RESTRICTED_PER_MINUTE
from adapters.slack.learned import LearnedBudget
from adapters.slack.platform import SlackPlatform
from adapters.slack.streaming import learned_stream_budgets
from bot.app import App


class Workspaces:
    """The Slack platform of each workspace the bot answers in, created on first use."""

    def __init__(
        self,
        app: App,
        client: AsyncWebClient,
        *,
        history_per_minute: float | None = None,
        history_page_limit: int | None = None,
        restricted_history_per_minute: float | None = None,
        edits_per_minute: float | None = None,
        edit_burst: int | None = None,
        stream_calls_per_minute: float | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.client = client
        # Pacing knobs from settings (the stream methods' tier is a guess: see buckets.py); tests pass their own so
        # a "minute" is short.
        history_per_minute = history_per_minute or settings.slack_history_per_minute
        self._history_page_limit = history_page_limit or settings.slack_history_page_limit
        self._restricted_per_minute = restricted_history_per_minute  # None: the tier's documented 1 per minute
        edits_per_minute = edits_per_minute or settings.slack_edits_per_minute
        edit_burst = edit_burst or settings.slack_edit_burst
        stream_calls_per_minute = stream_calls_per_minute or settings.slack_stream_calls_per_minute
        self._platforms: dict[str, SlackPlatform] = {}
        budgets, kv = app.store.budgets, app.store.kv
        # The workspace's budget is the one probed past (ReplyPaths). Replicas (a Redis store) probe one at a time
        # through its locks; one process alone needs no store call for that (3 SQLite writes a probe made the
        # slack_load bench's first text 0.4 s later).
        self._edit_budget = LearnedBudget(
            budgets, name="chat.update", start_per_minute=edits_per_minute, burst=edit_burst, kv=kv,
            locks=app.store.locks if settings.redis_url else None,
        )  # fmt: skip
        # The same tier per channel: where probes find a workspace's limit is per channel, no channel gets more.
        self._channel_edit_budget = LearnedBudget(
            budgets, name="chat.update", start_per_minute=edits_per_minute, burst=edit_burst, kv=kv,
        )  # fmt: skip
        self._post_budget = StoreBudget(
            budgets, name="chat.postMessage", per_minute=POST_PER_CHANNEL_PER_MINUTE, burst=POST_PER_CHANNEL_BURST
        )
        self._history_budget = LearnedBudget(
            budgets, name="conversations.replies", start_per_minute=history_per_minute,
            burst=HISTORY_BURST, kv=kv,
        )  # fmt: skip
        self._stream_budgets = learned_stream_budgets(
            budgets, per_minute=stream_calls_per_minute, kv=kv, locks=app.store.locks if settings.redis_url else None
        )
        self._facts = WorkspaceFacts(kv)

    async def settle(self) -> None:
        """Wait for every workspace's calls left for later (streams' stops)."""
        for platform in list(self._platforms.values()):
            await platform.settle()

    def platform(self, team_id: str) -> SlackPlatform:
        found = self._platforms.get(team_id)
        if found is None:
            found = self._platforms[team_id] = SlackPlatform(
                self.client,
                team_id=team_id,
                log_store=self.app.store.messages,
                native_streaming=self.app.settings.slack_native_streaming,
                edit_budget=self._edit_budget,
                channel_edit_budget=self._channel_edit_budget,
                post_budget=self._post_budget,
                history_budget=self._history_budget,
                stream_budgets=self._stream_budgets,
                facts=self._facts,
                history_page_limit=self._history_page_limit,
                restricted_per_minute=self._restricted_per_minute or RESTRICTED_PER_MINUTE,
            )
        return found
