"""Who may read what: requests from a direct message or the side pane name other channels.

The bot may sit in private channels the asker is not in: what it summarizes for someone must be what that person
could read. conversations.info says what the channel is, conversations.members whether the asker is in it, and
users.info whether a public channel's reader is a full member (guests read only the channels they are in).
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.calls import SlackCalls
from bot.types import MessageGone

# conversations.members / conversations.list pages (1,000 is each method's documented maximum; both are Tier 4 / 2).
MEMBERS_PAGE = 1000
MEMBER_PAGES_MAX = 20
CHANNELS_PAGE = 1000
CHANNEL_PAGES_MAX = 10


class ChannelAccess:
    """Channels by name, and whether a person may read one."""

    def __init__(self, client: AsyncWebClient, calls: SlackCalls) -> None:
        self._client = client
        self._call = calls

    async def readable_for(self, channel_id: str, user: str) -> str:
        """"" if ``user`` may read ``channel_id``, else a sentence saying why not. The bot may sit in private
        channels the asker is not in: what it summarizes for someone must be what that person could read."""
        try:
            info = (await self._call(self._client.conversations_info, channel=channel_id)).get("channel") or {}
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
            person = (await self._call(self._client.users_info, user=user)).get("user") or {}
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
                page = await self._call(self._client.conversations_members, **params)
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
            page = await self._call(self._client.conversations_list, **params)
            for channel in page.get("channels") or []:
                if isinstance(channel, dict) and str(channel.get("name", "")).lower() == wanted:
                    return str(channel.get("id"))
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
        return None
