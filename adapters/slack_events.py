"""Slack event payloads checked at the edge: a clean typed view of what the bot uses, or None.

Slack's payloads are JSON the bot does not control. A field of the wrong type (a ``user`` that is a list, a
``subtype`` that is an object, a ``ts`` that is not a timestamp) must not reach code that trusts its type: it is
read here, once, and a payload that does not have the shape Slack documents (https://docs.slack.dev/reference/
events/message, .../app_mention) is ignored by the caller with a warning instead of crashing a listener.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# A Slack message timestamp: seconds, a dot, microseconds ("1700000000.000100"). Anything else is not one.
_TS = re.compile(r"\d{1,12}\.\d{1,6}")
MENTION = "app_mention"
MESSAGE = "message"
CHANGED = "message_changed"
DELETED = "message_deleted"
REPLIED = "message_replied"
DIRECT = "im"  # channel_type of a direct message with the bot


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One message as an event or an API page carries it, every field of the type Slack documents."""

    ts: str
    text: str = ""
    user: str | None = None
    bot_id: str | None = None
    username: str | None = None
    thread_ts: str | None = None
    subtype: str | None = None
    edited: bool = False  # an edited message; Slack re-delivers an edited mention as a new app_mention with it

    @property
    def author(self) -> str:
        return self.user or self.bot_id or "unknown"

    @property
    def is_bot(self) -> bool:
        return self.bot_id is not None or self.subtype == "bot_message"


@dataclass(frozen=True, slots=True)
class SlackEvent:
    """An ``app_mention`` or ``message`` event. ``message`` is the message itself, or for ``message_changed`` the
    message after the edit; ``deleted_ts`` is set for ``message_deleted`` (which carries no message)."""

    type: str
    channel: str
    subtype: str | None = None
    message: SlackMessage | None = None
    previous_text: str | None = None
    deleted_ts: str | None = None
    channel_type: str | None = None  # channel, group, im, mpim (message events; app_mention has none)

    @property
    def direct(self) -> bool:
        """A direct message with the bot: Slack sends these as message events only, never app_mention."""
        return self.channel_type == DIRECT or (self.channel_type is None and self.channel.startswith("D"))


@dataclass(frozen=True, slots=True)
class AssistantThread:
    """The side pane's thread (assistant_thread_started / _context_changed): who opened it, where (a DM channel
    and thread), and the channel the person is looking at, when Slack says (``context_channel``)."""

    user: str
    channel: str
    thread_ts: str
    context_channel: str | None = None


def slack_ts(value: object) -> str | None:
    """``value`` if it is a Slack timestamp a datetime can hold, else None."""
    if not isinstance(value, str) or not _TS.fullmatch(value):
        return None
    try:
        datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return value


class _Malformed(Exception):
    """A field of the wrong type: the whole payload is ignored (Slack never sends one; a forger might)."""


def _optional_str(raw: Mapping[object, object], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Malformed(key)
    return value


def _message(raw: object, *, ts_default: object = None) -> SlackMessage:
    if not isinstance(raw, Mapping):
        raise _Malformed("message")
    ts = slack_ts(raw.get("ts", ts_default))
    thread_ts = _optional_str(raw, "thread_ts")
    if ts is None or (thread_ts is not None and slack_ts(thread_ts) is None):
        raise _Malformed("ts")
    return SlackMessage(
        ts=ts,
        text=_optional_str(raw, "text") or "",
        user=_optional_str(raw, "user"),
        bot_id=_optional_str(raw, "bot_id"),
        username=_optional_str(raw, "username"),
        thread_ts=thread_ts,
        subtype=_optional_str(raw, "subtype"),
        edited=isinstance(raw.get("edited"), Mapping),
    )


def read_message(raw: object) -> SlackMessage | None:
    """A message from an API page (``conversations.replies``) or an event, or None if it is malformed."""
    try:
        return _message(raw)
    except _Malformed:
        return None


def read_event(raw: object) -> SlackEvent | None:
    """The event of an ``app_mention`` or ``message`` delivery, or None if it lacks the shape Slack documents."""
    if not isinstance(raw, Mapping):
        return None
    kind, channel = raw.get("type"), raw.get("channel")
    if kind not in (MENTION, MESSAGE) or not isinstance(channel, str) or not channel:
        return None
    try:
        subtype = _optional_str(raw, "subtype")
        channel_type = _optional_str(raw, "channel_type")
        if subtype == CHANGED:
            previous = raw.get("previous_message")
            before_raw = None if previous is None else _mapping(previous)
            before = None if before_raw is None else _optional_str(before_raw, "text") or ""
            # The edited message keeps its ts; some payloads carry it only on previous_message.
            after = _message(raw.get("message"), ts_default=None if before_raw is None else before_raw.get("ts"))
            return SlackEvent(kind, channel, subtype, message=after, previous_text=before, channel_type=channel_type)
        if subtype == DELETED:
            deleted = slack_ts(raw.get("deleted_ts"))
            return None if deleted is None else SlackEvent(kind, channel, subtype, deleted_ts=deleted)
        if subtype == REPLIED or (subtype is None and isinstance(raw.get("message"), Mapping)):
            # A thread got a reply: a notice about the parent, not something anyone said. Slack sends it without
            # its subtype over the Events API (the "bug alert" on docs.slack.dev/reference/events/message/
            # message_replied); read as a message it became an empty one from "unknown".
            return SlackEvent(kind, channel, REPLIED, channel_type=channel_type)
        return SlackEvent(kind, channel, subtype, message=_message(raw), channel_type=channel_type)
    except _Malformed:
        return None


def read_assistant_thread(raw: object) -> AssistantThread | None:
    """The ``assistant_thread`` of an assistant_thread_started / _context_changed event, or None if malformed."""
    thread = raw.get("assistant_thread") if isinstance(raw, Mapping) else None
    if not isinstance(thread, Mapping):
        return None
    user, channel, ts = thread.get("user_id"), thread.get("channel_id"), slack_ts(thread.get("thread_ts"))
    if not (isinstance(user, str) and user and isinstance(channel, str) and channel and ts):
        return None
    context = thread.get("context")
    viewed = context.get("channel_id") if isinstance(context, Mapping) else None
    return AssistantThread(user, channel, ts, viewed if isinstance(viewed, str) and viewed else None)


def _mapping(raw: object) -> Mapping[object, object]:
    if not isinstance(raw, Mapping):
        raise _Malformed("previous_message")
    return raw
