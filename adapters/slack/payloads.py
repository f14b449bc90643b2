"""Slack's payloads as Slack documents them, in Pydantic models: the shapes the bot accepts, declared once.

Slack's JSON is input the bot does not control. A field the bot reads must have the type Slack documents
(https://docs.slack.dev/reference/events/message, .../app_mention, .../assistant_thread_started) or the whole
payload is rejected (adapters/slack/events.py turns a rejection into one log line and a 200). Everything else is
tolerated as Slack is loose: unknown fields are kept (``extra="allow"``: Slack adds fields without notice), an
empty string counts as absent (java-slack-sdk's samples and some Slack payloads send ``""`` for "none"), ids are
opaque strings (Slack Connect and Enterprise Grid ids look like any other), and an envelope's ``team_id`` may be
null (an org-wide Grid install) or another organisation's (a Slack Connect channel).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    StrictStr,
    StringConstraints,
    Tag,
    TypeAdapter,
    model_validator,
)

MENTION = "app_mention"
MESSAGE = "message"
CHANGED = "message_changed"
DELETED = "message_deleted"
REPLIED = "message_replied"

# A Slack message timestamp: seconds, a dot, microseconds ("1700000000.000100"). Anything else is not one.
_TS = re.compile(r"\d{1,12}\.\d{1,6}")


def _timestamp(value: str) -> str:
    if not _TS.fullmatch(value):
        raise ValueError("not a Slack timestamp")
    try:
        # Every ts becomes a datetime later (ChatMessage.sent_at): one out of a datetime's range is refused here.
        datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("a Slack timestamp out of range") from None
    return value


def _absent_if_empty(value: object) -> object:
    return None if value == "" else value


SlackTs = Annotated[StrictStr, AfterValidator(_timestamp)]
OptionalTs = Annotated[SlackTs | None, BeforeValidator(_absent_if_empty)]
OptionalStr = Annotated[StrictStr | None, BeforeValidator(_absent_if_empty)]
Id = Annotated[StrictStr, StringConstraints(min_length=1)]  # a channel or user id: never empty


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MessagePayload(_Payload):
    """A message as an event or a ``conversations.replies`` page carries it."""

    ts: SlackTs
    text: OptionalStr = None
    user: OptionalStr = None
    bot_id: OptionalStr = None
    username: OptionalStr = None
    thread_ts: OptionalTs = None
    subtype: OptionalStr = None
    edited: dict[str, Any] | None = None  # {"user", "ts"}: its presence is what counts


class _InChannel(_Payload):
    """What every event the bot reads says about where it happened."""

    type: Literal["app_mention", "message"]
    channel: Id
    channel_type: OptionalStr = None  # channel, group, im, mpim (message events; app_mention has none)


class MessageEvent(MessagePayload, _InChannel):
    """``app_mention``, or ``message`` with no subtype or one of a message someone (or some bot) posted."""


class PreviousMessage(_Payload):
    text: OptionalStr = None


class MessageChanged(_InChannel):
    subtype: Literal["message_changed"]
    message: MessagePayload  # the message after the edit
    previous_message: PreviousMessage | None = None

    @model_validator(mode="before")
    @classmethod
    def _ts_of_previous(cls, data: Any) -> Any:
        # An edited message keeps its ts; some payloads (bolt-python's sample) carry it only on previous_message.
        if isinstance(data, dict):
            after, before = data.get("message"), data.get("previous_message")
            if isinstance(after, dict) and "ts" not in after and isinstance(before, dict) and "ts" in before:
                return {**data, "message": {**after, "ts": before["ts"]}}
        return data


class MessageDeleted(_InChannel):
    subtype: Literal["message_deleted"]
    deleted_ts: SlackTs


class MessageReplied(_InChannel):
    """A thread got a reply: a notice about the parent, not something anyone said. Slack sends it without its
    subtype over the Events API (the "bug alert" on docs.slack.dev/reference/events/message/message_replied)."""

    subtype: OptionalStr = None


def _shape(raw: Any) -> str:
    """Which of the shapes above a message event has, from its subtype (or, for message_replied delivered without
    one, from the nested message a plain message never has)."""
    if not isinstance(raw, dict):
        return MESSAGE  # refused as "not an object" by MessageEvent
    subtype = _absent_if_empty(raw.get("subtype"))
    if subtype in (CHANGED, DELETED, REPLIED):
        return str(subtype)
    if subtype is None and isinstance(raw.get("message"), dict):
        return REPLIED
    return MESSAGE


SHAPES = frozenset({MESSAGE, CHANGED, DELETED, REPLIED})  # the union's tags (they show in error locations)
SlackEventPayload = Annotated[
    Annotated[MessageEvent, Tag(MESSAGE)]
    | Annotated[MessageChanged, Tag(CHANGED)]
    | Annotated[MessageDeleted, Tag(DELETED)]
    | Annotated[MessageReplied, Tag(REPLIED)],
    Discriminator(_shape),
]


class Authorization(_Payload):
    """One installation the delivery is for (Bolt's ``extract_team_id`` reads the first)."""

    team_id: OptionalStr = None  # null for an org-wide Enterprise Grid install
    enterprise_id: OptionalStr = None
    user_id: OptionalStr = None
    is_bot: bool | None = None
    is_enterprise_install: bool | None = None


class EventDelivery(_Payload):
    """The Events API envelope (``event_callback``) around an ``app_mention`` or ``message`` event."""

    type: OptionalStr = None
    event_id: OptionalStr = None  # absent in some recorded payloads: the message's own ts de-duplicates then
    team_id: OptionalStr = None  # in a Slack Connect channel, possibly the other organisation's
    enterprise_id: OptionalStr = None
    authorizations: list[Authorization] | None = None
    event: SlackEventPayload


class ViewedChannel(_Payload):
    channel_id: OptionalStr = None  # absent when the pane opens somewhere that is not a channel
    team_id: OptionalStr = None
    enterprise_id: OptionalStr = None


class AssistantThreadPayload(_Payload):
    user_id: Id
    channel_id: Id  # the DM with the bot the pane's thread lives in
    thread_ts: SlackTs
    context: ViewedChannel | None = None


class AssistantThreadEvent(_Payload):
    """``assistant_thread_started`` / ``assistant_thread_context_changed``."""

    assistant_thread: AssistantThreadPayload


TIMESTAMP: TypeAdapter[str] = TypeAdapter(SlackTs)
