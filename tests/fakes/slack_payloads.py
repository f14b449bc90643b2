"""Builders for the payloads Slack sends an app, shaped after recorded fixtures in tests/fixtures/slack
(see tests/fixtures/SOURCES.md) and Slack's Events API reference (https://docs.slack.dev/reference/events).

Every builder returns plain dicts: `event_callback(...)` wraps an event the way both HTTP delivery
(slack_signing.SlackDelivery) and Socket Mode (FakeSlack.push_events_api) carry it.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slack"


def _fixture_json(name: str) -> dict[str, Any]:
    loaded = json.loads((FIXTURES / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def new_ts() -> str:
    """A Slack-style message ts for an event that did not go through the fake's Web API."""
    now = time.time()
    return f"{int(now)}.{int((now % 1) * 1_000_000):06d}"


def new_event_id() -> str:
    return "Ev" + secrets.token_hex(5).upper()


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = "T0FAKE",
    api_app_id: str = "AFAKE",
    bot_user_id: str = "UBOT",
    event_id: str | None = None,
) -> dict[str, Any]:
    """The Events API envelope (type "event_callback") around one event."""
    body = _fixture_json("app_mention_event_callback.bolt-python.json")
    body.pop("enterprise_id", None)
    body.update(
        team_id=team_id,
        api_app_id=api_app_id,
        event=event,
        event_id=event_id or new_event_id(),
        event_time=int(time.time()),
        authorizations=[
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        is_ext_shared_channel=False,
    )
    return body


def app_mention(
    *,
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = "T0FAKE",
) -> dict[str, Any]:
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "client_msg_id": secrets.token_hex(16),
        "type": "app_mention",
        "text": text,
        "user": user,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(
    *,
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    team_id: str = "T0FAKE",
) -> dict[str, Any]:
    """A plain user message; with thread_ts it is a reply in that thread."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "client_msg_id": secrets.token_hex(16),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    return event


def bot_message(
    *,
    channel: str,
    bot_id: str,
    text: str,
    user: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    legacy_subtype: bool = False,
) -> dict[str, Any]:
    """A bot's message: apps posting with a bot token carry bot_id (and user); legacy integrations
    carry subtype "bot_message" and no user."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "bot_id": bot_id,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "channel_type": "channel",
    }
    if legacy_subtype:
        event["subtype"] = "bot_message"
        event["username"] = "legacy-bot"
    elif user:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message_changed(
    *, channel: str, user: str, ts: str, old_text: str, new_text: str, thread_ts: str | None = None
) -> dict[str, Any]:
    event_ts = new_ts()
    edited: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": new_text,
        "ts": ts,
        "edited": {"user": user, "ts": event_ts},
    }
    previous: dict[str, Any] = {"type": "message", "user": user, "text": old_text, "ts": ts}
    if thread_ts:
        edited["thread_ts"] = previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": "channel",
        "message": edited,
        "previous_message": previous,
    }


def message_deleted(*, channel: str, user: str, deleted_ts: str, old_text: str) -> dict[str, Any]:
    event_ts = new_ts()
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "deleted_ts": deleted_ts,
        "channel_type": "channel",
        "previous_message": {"type": "message", "user": user, "text": old_text, "ts": deleted_ts},
    }


def slash_command_form(
    *,
    command: str,
    text: str,
    channel_id: str,
    user_id: str,
    response_url: str,
    team_id: str = "T0FAKE",
    api_app_id: str = "AFAKE",
    channel_name: str = "support",
    user_name: str = "someone",
) -> dict[str, str]:
    """The fields of a slash command as Slack posts them (form-encoded over HTTP)."""
    template = (FIXTURES / "slash_command_form_body.bolt-python.txt").read_text().strip()
    form = dict(urllib.parse.parse_qsl(template))
    form.pop("enterprise_id", None)
    form.pop("enterprise_name", None)
    form.update(
        team_id=team_id,
        team_domain="fake",
        api_app_id=api_app_id,
        channel_id=channel_id,
        channel_name=channel_name,
        user_id=user_id,
        user_name=user_name,
        command=command,
        text=text,
        response_url=response_url,
        trigger_id=f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
    )
    return form


def message_shortcut(
    *,
    callback_id: str,
    channel_id: str,
    user_id: str,
    message_ts: str,
    message_text: str,
    response_url: str,
    thread_ts: str | None = None,
    team_id: str = "T0FAKE",
) -> dict[str, Any]:
    """An interactive `message_action` payload (a message shortcut such as "Summarize thread")."""
    msg: dict[str, Any] = {"type": "message", "user": user_id, "ts": message_ts, "text": message_text}
    if thread_ts:
        msg["thread_ts"] = thread_ts
    return {
        "type": "message_action",
        "token": "verification_token",
        "action_ts": new_ts(),
        "team": {"id": team_id, "domain": "fake"},
        "user": {"id": user_id, "username": "someone", "team_id": team_id},
        "channel": {"id": channel_id, "name": "support"},
        "callback_id": callback_id,
        "trigger_id": f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
        "message_ts": message_ts,
        "message": msg,
        "response_url": response_url,
        "is_enterprise_install": False,
    }
