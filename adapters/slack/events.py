"""Slack event payloads checked at the edge: a clean typed view of what the bot uses, or a rejection.

Slack's payloads are JSON the bot does not control. A field of the wrong type (a ``user`` that is a list, a
``subtype`` that is an object, a ``ts`` that is not a timestamp) must not reach code that trusts its type: the
payload is validated once against the Pydantic models of adapters/slack/payloads.py (the shapes Slack documents)
and turned into the small frozen dataclasses below; one that does not fit raises ``Malformed``, whose message says
which field and why in one line, and the caller acknowledges it and logs that line instead of crashing a listener.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from adapters.slack.payloads import (
    CHANGED,
    DELETED,
    MENTION,
    MESSAGE,
    REPLIED,
    SHAPES,
    TIMESTAMP,
    AssistantThreadEvent,
    EventDelivery,
    MessageChanged,
    MessageDeleted,
    MessagePayload,
    MessageReplied,
)

__all__ = [
    "CHANGED", "DELETED", "DIRECT", "MENTION", "MESSAGE", "REPLIED", "AssistantThread", "Malformed",
    "SlackEvent", "SlackMessage", "read_assistant_thread", "read_delivery", "read_message", "slack_time", "slack_ts",
    "ts_of",
]  # fmt: skip
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


class Malformed(ValueError):
    """A payload without the shape Slack documents; ``str()`` says where and what, in one line (no values: they
    may be anyone's text)."""

    @classmethod
    def of(cls, error: ValidationError) -> Malformed:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        first = problems[0]
        # The event's shape (a tag of the union it was validated as) is not a field: "event.user", not
        # "event.message.user", which would read as a nested message.
        loc = list(first["loc"])
        if loc[:1] == ["event"] and len(loc) > 1 and loc[1] in SHAPES:
            del loc[1]
        where = ".".join(str(part) for part in loc) or "payload"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(f"{where}: {first['msg']}{more}")


def slack_ts(value: object) -> str | None:
    """``value`` if it is a Slack timestamp a datetime can hold, else None."""
    try:
        return TIMESTAMP.validate_python(value)
    except ValidationError:
        return None


def slack_time(ts: str) -> datetime:
    """A Slack timestamp as the moment it names."""
    return datetime.fromtimestamp(float(ts), UTC)


def ts_of(moment: datetime) -> str:
    """A moment as a Slack timestamp (for ``oldest``/``latest`` bounds)."""
    return f"{moment.timestamp():.6f}"


def _message(payload: MessagePayload) -> SlackMessage:
    return SlackMessage(
        ts=payload.ts,
        text=payload.text or "",
        user=payload.user,
        bot_id=payload.bot_id,
        username=payload.username,
        thread_ts=payload.thread_ts,
        subtype=payload.subtype,
        edited=payload.edited is not None,
    )


def read_message(raw: object) -> SlackMessage | None:
    """A message from an API page (``conversations.replies``) or an event, or None if it is malformed."""
    try:
        return _message(MessagePayload.model_validate(raw))
    except ValidationError:
        return None


def read_delivery(body: object) -> SlackEvent:
    """The ``app_mention`` or ``message`` event of an Events API delivery, its envelope checked too.

    Raises Malformed when the delivery lacks the shape Slack documents."""
    try:
        delivery = EventDelivery.model_validate(body)
    except ValidationError as error:
        raise Malformed.of(error) from None
    event = delivery.event
    if isinstance(event, MessageChanged):
        before = None if event.previous_message is None else event.previous_message.text or ""
        return SlackEvent(event.type, event.channel, CHANGED, message=_message(event.message), previous_text=before,
                          channel_type=event.channel_type)  # fmt: skip
    if isinstance(event, MessageDeleted):
        return SlackEvent(event.type, event.channel, DELETED, deleted_ts=event.deleted_ts,
                          channel_type=event.channel_type)  # fmt: skip
    if isinstance(event, MessageReplied):
        # Read as a message it would become an empty one from "unknown": only its kind is kept.
        return SlackEvent(event.type, event.channel, REPLIED, channel_type=event.channel_type)
    return SlackEvent(event.type, event.channel, event.subtype, message=_message(event),
                      channel_type=event.channel_type)  # fmt: skip


def read_assistant_thread(raw: object) -> AssistantThread:
    """The ``assistant_thread`` of an assistant_thread_started / _context_changed event.

    Raises Malformed (naming the field) when the event lacks the shape Slack documents."""
    try:
        thread = AssistantThreadEvent.model_validate(raw).assistant_thread
    except ValidationError as error:
        raise Malformed.of(error) from None
    viewed = None if thread.context is None else thread.context.channel_id
    return AssistantThread(thread.user_id, thread.channel_id, thread.thread_ts, viewed)
