"""Who wrote what, as a person reads it: users.info display names, and Slack's wire text made readable.

A Slack message names people by id (``<@U123>``); a summary must name them as the team knows them. Names come
from users.info (Tier 4), one call per person at a time and remembered NAME_TTL_S, so twenty mentions by one
person cost one call. ``to_chat_message`` is the one translation of a Slack message into the core's ChatMessage.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Callable, Mapping

import cachetools
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.calls import SlackCalls
from adapters.slack.events import SlackMessage, slack_time
from bot.types import ChannelRef, ChatMessage, MessageGone, MessageRef, MessageTooLong, PlatformRateLimited

log = logging.getLogger(__name__)

# Display names change rarely; an hour keeps users.info (Tier 4) calls to one per author per hour.
NAME_TTL_S = 3600.0
# People remembered in memory at most (the least recently used are forgotten: a name is asked again).
REMEMBERED = 10_000

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


class People:
    """Display names of one workspace's people, asked of users.info once per person and remembered."""

    def __init__(
        self, client: AsyncWebClient, calls: SlackCalls, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._call = calls
        # Per-user maps, each bounded by one policy (REMEMBERED most recent; names also by age).
        self._names: cachetools.TTLCache[str, str] = cachetools.TTLCache(REMEMBERED, NAME_TTL_S, timer=clock)
        self._name_locks: cachetools.LRUCache[str, asyncio.Lock] = cachetools.LRUCache(REMEMBERED)

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
            info = (await self._call(self._client.users_info, user=user)).get("user") or {}
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
        """A Slack message (checked by adapters/slack/events.py) → ChatMessage, with display names resolved."""
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
