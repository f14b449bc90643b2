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


def _message(raw: object) -> SlackMessage:
    if not isinstance(raw, Mapping):
        raise _Malformed("message")
    ts = slack_ts(raw.get("ts"))
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
        if subtype == CHANGED:
            previous = raw.get("previous_message")
            before = None if previous is None else _optional_str(_mapping(previous), "text") or ""
            return SlackEvent(kind, channel, subtype, message=_message(raw.get("message")), previous_text=before)
        if subtype == DELETED:
            deleted = slack_ts(raw.get("deleted_ts"))
            return None if deleted is None else SlackEvent(kind, channel, subtype, deleted_ts=deleted)
        return SlackEvent(kind, channel, subtype, message=_message(raw))
    except _Malformed:
        return None


def _mapping(raw: object) -> Mapping[object, object]:
    if not isinstance(raw, Mapping):
        raise _Malformed("previous_message")
    return raw
