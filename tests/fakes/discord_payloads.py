"""JSON payload builders for the fake Discord, shaped like the captured payloads in tests/fixtures/discord.

Only the keys discord.py 2.7 reads (plus the ones Discord always sends) are produced; the fixtures are the
reference and tests/test_fake_discord.py checks that every key of a captured payload appears here too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
from typing import Any

Json = dict[str, Any]

# Discord's snowflake epoch (2015-01-01T00:00:00Z), https://discord.com/developers/docs/reference#snowflakes
DISCORD_EPOCH_MS = 1_420_070_400_000

# Channel types, https://discord.com/developers/docs/resources/channel#channel-object-channel-types
GUILD_TEXT = 0
DM = 1
GROUP_DM = 3
PUBLIC_THREAD = 11
GUILD_FORUM = 15

# Message types, https://discord.com/developers/docs/resources/message#message-object-message-types
MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19

# Message flags, https://discord.com/developers/docs/resources/message#message-object-message-flags
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Every permission bit set: the fake enforces no permissions.
ALL_PERMISSIONS = str((1 << 53) - 1)

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")


class SnowflakeFactory:
    """Increasing snowflakes whose timestamp part is the wall clock, as Discord's are (history pages by id)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def next(self) -> int:
        with self._lock:
            now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            candidate = (now_ms << 22) | (next(self._counter) & 0xFFF)
            self._last = max(self._last + 1, candidate)
            return self._last


def snowflake_time(snowflake: int) -> str:
    """ISO-8601 timestamp of a snowflake, the format Discord uses for `timestamp`."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def user_payload(*, user_id: int, username: str, bot: bool = False) -> Json:
    return {
        "id": str(user_id),
        "username": username,
        "global_name": None if bot else username.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "collectibles": None,
        "display_name_styles": None,
        "primary_guild": None,
        "clan": None,
    }


def member_payload(*, user: Json | None, role_ids: list[int]) -> Json:
    """A guild member; `user` is None inside MESSAGE_CREATE, where the author travels separately."""
    member: Json = {
        "roles": [str(r) for r in role_ids],
        "joined_at": "2024-02-27T19:50:51.701000+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "communication_disabled_until": None,
    }
    if user is not None:
        member["user"] = user
    return member


def role_payload(*, role_id: int, name: str, position: int, bot_id: int | None = None) -> Json:
    """A role; with ``bot_id`` the managed role Discord creates for a bot when it joins (``tags.bot_id``)."""
    role: Json = {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": ALL_PERMISSIONS,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    if bot_id is not None:
        role.update(managed=True, tags={"bot_id": str(bot_id)})
    return role


def text_channel_payload(*, channel_id: int, guild_id: int, name: str, position: int) -> Json:
    return {
        "id": str(channel_id),
        "type": GUILD_TEXT,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "permission_overwrites": [],
        "flags": 0,
    }


def thread_payload(*, thread_id: int, guild_id: int, parent_id: int, owner_id: int, name: str) -> Json:
    created = snowflake_time(thread_id)
    return {
        "id": str(thread_id),
        "type": PUBLIC_THREAD,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "message_count": 0,
        "total_message_sent": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "locked": False,
            "auto_archive_duration": 4320,
            "archive_timestamp": created,
            "create_timestamp": created,
        },
    }


def mentioned_role_ids(content: str) -> list[str]:
    """Role ids of `<@&id>` mentions (Discord fills `mention_roles` from these)."""
    return list(dict.fromkeys(_ROLE_MENTION_RE.findall(content)))


def mentioned_user_ids(content: str) -> list[int]:
    """User ids of `<@id>` mentions, in order, without duplicates (Discord fills `mentions` from these)."""
    seen: list[int] = []
    for raw in _MENTION_RE.findall(content):
        if int(raw) not in seen:
            seen.append(int(raw))
    return seen


def message_payload(
    *,
    message_id: int,
    channel_id: int,
    author: Json,
    content: str,
    mentions: list[Json],
    embeds: list[Json] | None = None,
    reference: Json | None = None,
    flags: int = 0,
    webhook_id: int | None = None,
    application_id: int | None = None,
) -> Json:
    """A REST-shaped message (no guild_id/member: those are added by `gateway_message`)."""
    payload: Json = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": snowflake_time(message_id),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions,
        "mention_roles": mentioned_role_ids(content),
        "attachments": [],
        "embeds": embeds or [],
        "components": [],
        "pinned": False,
        "type": MESSAGE_DEFAULT,
        "flags": flags,
    }
    if reference is not None:
        payload["type"] = MESSAGE_REPLY
        payload["message_reference"] = {
            "type": 0,
            "message_id": reference["id"],
            "channel_id": reference["channel_id"],
        }
        payload["referenced_message"] = reference
    if webhook_id is not None:
        payload["webhook_id"] = str(webhook_id)
    if application_id is not None:
        payload["application_id"] = str(application_id)
    return payload


def gateway_message(message: Json, *, guild_id: int, channel_type: int, member: Json) -> Json:
    """MESSAGE_CREATE/UPDATE data: the REST message plus guild_id, member (without user) and channel_type."""
    data = dict(message)
    data["guild_id"] = str(guild_id)
    data["channel_type"] = channel_type
    data["member"] = member
    if data.get("message_reference") is not None:
        data["message_reference"] = {**data["message_reference"], "guild_id": str(guild_id)}
    return data


def embeds_total_chars(embeds: list[Json]) -> int:
    """Characters counted toward the 6,000 limit: title, description, field names and values, footer, author.

    https://discord.com/developers/docs/resources/message#embed-object-embed-limits
    """
    total = 0
    for embed in embeds:
        total += len(embed.get("title") or "") + len(embed.get("description") or "")
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
        for field in embed.get("fields") or []:
            total += len(field.get("name") or "") + len(field.get("value") or "")
    return total
