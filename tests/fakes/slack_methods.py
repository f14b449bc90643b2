"""The Web API methods the fake Slack implements, one function each.

A handler takes the fake, the caller's workspace and the request parameters, and returns the
response body without "ok"; `Refusal(error)` becomes {"ok": false, "error": error} with HTTP 200,
as Slack answers API errors. Error names are Slack's, from each method's reference page
(https://docs.slack.dev/reference/methods/<method>).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.fakes.slack_records import Channel, FakeMessage, VersionKind, Workspace

if TYPE_CHECKING:
    from tests.fakes.slack_api import FakeSlack

# Block limits: https://docs.slack.dev/reference/block-kit/blocks (section text 3,000; markdown 12,000;
# 50 blocks per message).
SECTION_TEXT_MAX = 3000
MARKDOWN_BLOCK_MAX = 12000
BLOCKS_PER_MESSAGE_MAX = 50
# conversations.history defaults to 100 per page, conversations.replies to 1,000 (the documented maximum).
HISTORY_DEFAULT_LIMIT = 100
REPLIES_DEFAULT_LIMIT = 1000


class Refusal(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


Params = dict[str, Any]
Handler = Callable[["FakeSlack", Workspace, Params], dict[str, Any]]


def _required(params: Params, name: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise Refusal(
            "invalid_arguments", response_metadata={"messages": [f"[ERROR] missing required field: {name}"]}
        )
    return str(value)


def _json_list(value: Any) -> list[Any] | None:
    """Form bodies carry blocks/chunks as JSON strings, JSON bodies as lists."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Refusal("invalid_blocks_format") from exc
    if not isinstance(value, list):
        raise Refusal("invalid_blocks_format")
    return value


def _postable_channel(fake: FakeSlack, channel_id: str) -> Channel:
    channel = fake.channels.get(channel_id)
    if channel is None:
        raise Refusal("channel_not_found")
    if not channel.is_member:
        raise Refusal("not_in_channel")
    return channel


def _readable_channel(fake: FakeSlack, channel_id: str) -> Channel:
    channel = fake.channels.get(channel_id)
    if channel is None or (channel.is_private and not channel.is_member):
        # Slack hides private channels the bot is not in.
        raise Refusal("channel_not_found")
    if not channel.is_member:
        raise Refusal("not_in_channel")
    return channel


def _check_blocks(blocks: list[Any] | None) -> None:
    if blocks is None:
        return
    if len(blocks) > BLOCKS_PER_MESSAGE_MAX:
        raise Refusal("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict):
            raise Refusal("invalid_blocks")
        text = block.get("text")
        if (
            block.get("type") == "section"
            and isinstance(text, dict)
            and len(str(text.get("text", ""))) > SECTION_TEXT_MAX
        ):
            raise Refusal("invalid_blocks")
        if block.get("type") == "markdown" and len(str(block.get("text", ""))) > MARKDOWN_BLOCK_MAX:
            raise Refusal("invalid_blocks")


def _message_body(fake: FakeSlack, params: Params) -> tuple[str, list[Any] | None]:
    text = params.get("text")
    blocks = _json_list(params.get("blocks"))
    if not text and not blocks:
        raise Refusal("no_text")
    text = str(text or "")
    if len(text) > fake.max_text_chars:
        raise Refusal("msg_too_long")
    _check_blocks(blocks)
    return text, blocks


def _existing(fake: FakeSlack, channel: str, ts: str) -> FakeMessage:
    message = fake.messages.get((channel, ts))
    if message is None or message.deleted:
        raise Refusal("message_not_found")
    return message


def _record(fake: FakeSlack, message: FakeMessage, kind: VersionKind) -> None:
    message.versions.append(fake.version_of(message, kind))


def auth_test(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    return {
        "url": f"{fake.base_url}/",
        "team": ws.name,
        "user": "supportbot",
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def chat_post_message(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _postable_channel(fake, _required(params, "channel"))
    text, blocks = _message_body(fake, params)
    thread_ts = params.get("thread_ts") or None
    message = fake.add_message(
        channel.id, text=text, user=ws.bot_user_id, bot_id=ws.bot_id, blocks=blocks, thread_ts=thread_ts
    )
    return {"channel": channel.id, "ts": message.ts, "message": message.as_api()}


def chat_update(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _postable_channel(fake, _required(params, "channel"))
    message = _existing(fake, channel.id, _required(params, "ts"))
    if message.user != ws.bot_user_id:
        raise Refusal("cant_update_message")
    if message.streaming and fake.now() - message.last_stream_activity <= fake.stream_idle_timeout:
        # chat.update's documented error: "The message is currently streaming text and cannot be edited."
        raise Refusal("streaming_state_conflict")
    message.streaming = False  # an idle stream has ended server-side
    text, blocks = _message_body(fake, params)
    message.text, message.blocks = text, blocks
    _record(fake, message, "update")
    return {"channel": channel.id, "ts": message.ts, "text": text, "message": message.as_api()}


def chat_delete(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _postable_channel(fake, _required(params, "channel"))
    message = _existing(fake, channel.id, _required(params, "ts"))
    if message.user != ws.bot_user_id:
        raise Refusal("cant_delete_message")
    fake.delete_message(channel.id, message.ts)
    return {"channel": channel.id, "ts": message.ts}


def chat_post_ephemeral(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _postable_channel(fake, _required(params, "channel"))
    user = _required(params, "user")
    if user not in fake.users:
        raise Refusal("user_not_found")
    text, blocks = _message_body(fake, params)
    ephemeral = fake.add_ephemeral(
        channel.id, user=user, text=text, blocks=blocks, thread_ts=params.get("thread_ts") or None
    )
    return {"message_ts": ephemeral.message_ts}


def _stream_text(fake: FakeSlack, params: Params) -> str:
    """markdown_text plus the text of any markdown_text chunks (what slack_sdk's chat_stream sends)."""
    parts = [str(params.get("markdown_text") or "")]
    for chunk in _json_list(params.get("chunks")) or []:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            parts.append(str(chunk.get("text", "")))
    text = "".join(parts)
    if len(text) > fake.max_markdown_chars:
        raise Refusal("msg_too_long")
    return text


def _streaming(fake: FakeSlack, params: Params) -> FakeMessage:
    channel = _postable_channel(fake, _required(params, "channel"))
    message = _existing(fake, channel.id, _required(params, "ts"))
    now = fake.now()
    if message.streaming and now - message.last_stream_activity > fake.stream_idle_timeout:
        # Slack ends idle streams server-side; the text streamed so far stays as the message.
        message.streaming = False
    if not message.streaming:
        raise Refusal("message_not_in_streaming_state")
    message.last_stream_activity = now
    return message


def chat_start_stream(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _postable_channel(fake, _required(params, "channel"))
    thread_ts = _required(params, "thread_ts")
    text = _stream_text(fake, params)
    message = fake.add_message(
        channel.id, text=text, user=ws.bot_user_id, bot_id=ws.bot_id, thread_ts=thread_ts, kind="stream_start"
    )
    message.streaming = True
    message.last_stream_activity = fake.now()
    return {"channel": channel.id, "ts": message.ts}


def chat_append_stream(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming(fake, params)
    addition = _stream_text(fake, params)
    if len(message.text) + len(addition) > fake.max_stream_chars:
        raise Refusal("msg_too_long")
    message.text += addition
    _record(fake, message, "stream_append")
    return {"channel": message.channel, "ts": message.ts}


def chat_stop_stream(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming(fake, params)
    message.text += _stream_text(fake, params)
    blocks = _json_list(params.get("blocks"))
    _check_blocks(blocks)
    if blocks is not None:
        message.blocks = blocks
    message.streaming = False
    _record(fake, message, "stream_stop")
    return {"channel": message.channel, "ts": message.ts, "message": message.as_api()}


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Refusal("invalid_cursor") from exc
    if kind != "next_ts" or not ts:
        raise Refusal("invalid_cursor")
    return ts


def _in_window(message: FakeMessage, params: Params) -> bool:
    inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
    ts = float(message.ts)
    if params.get("oldest"):
        oldest = float(params["oldest"])
        if ts < oldest or (ts == oldest and not inclusive):
            return False
    if params.get("latest"):
        latest = float(params["latest"])
        if ts > latest or (ts == latest and not inclusive):
            return False
    return True


def _page(fake: FakeSlack, items: list[FakeMessage], params: Params, *, default_limit: int) -> dict[str, Any]:
    """Cursor paging over `items` (already in the order Slack returns them)."""
    limit = int(params.get("limit") or default_limit)
    limit = max(1, min(limit, fake.history_page_max))
    start = 0
    if params.get("cursor"):
        next_ts = _decode_cursor(str(params["cursor"]))
        start = next((i for i, m in enumerate(items) if m.ts == next_ts), len(items))
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    next_cursor = _encode_cursor(items[start + limit].ts) if has_more else ""
    return {
        "messages": [m.as_api() for m in page],
        "has_more": has_more,
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_replies(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _readable_channel(fake, _required(params, "channel"))
    thread_ts = _required(params, "ts")
    parent = fake.messages.get((channel.id, thread_ts))
    if parent is None or parent.deleted:
        raise Refusal("thread_not_found")
    # Simplification: the parent comes first on the first page only (Slack may repeat it on later pages;
    # callers should de-duplicate by ts either way).
    thread = [m for m in fake.thread(channel.id, thread_ts) if m.ts != thread_ts]
    replies = [m for m in thread if _in_window(m, params)]
    page = _page(fake, [parent, *replies], params, default_limit=REPLIES_DEFAULT_LIMIT)
    if page["messages"] and page["messages"][0]["ts"] == thread_ts:
        page["messages"][0]["reply_count"] = len(thread)  # Slack's parent message carries its reply count
    return page


def conversations_history(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = _readable_channel(fake, _required(params, "channel"))
    top_level = [
        m
        for m in fake.messages_in(channel.id)
        if (m.thread_ts is None or m.thread_ts == m.ts) and _in_window(m, params)
    ]
    top_level.reverse()  # newest first, as Slack returns history
    return _page(fake, top_level, params, default_limit=HISTORY_DEFAULT_LIMIT)


def conversations_info(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = fake.channels.get(_required(params, "channel"))
    if channel is None or (channel.is_private and not channel.is_member):
        raise Refusal("channel_not_found")
    return {
        "channel": {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not channel.is_im and not channel.is_private,
            "is_group": channel.is_private,
            "is_im": channel.is_im,
            "is_private": channel.is_private,
            "is_member": channel.is_member,
            "is_archived": False,
            "context_team_id": channel.team_id or ws.team_id,
        }
    }


def users_info(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    user = fake.users.get(_required(params, "user"))
    if user is None:
        raise Refusal("user_not_found")
    return {
        "user": {
            "id": user.id,
            "team_id": user.team_id or ws.team_id,
            "name": user.name,
            "real_name": user.real_name,
            "is_bot": user.is_bot,
            "deleted": False,
            "profile": {
                "display_name": user.display_name,
                "display_name_normalized": user.display_name,
                "real_name": user.real_name,
                "real_name_normalized": user.real_name,
            },
        }
    }


def apps_connections_open(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    return {"url": fake.socket_url()}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.delete": chat_delete,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.startStream": chat_start_stream,
    "chat.appendStream": chat_append_stream,
    "chat.stopStream": chat_stop_stream,
    "conversations.replies": conversations_replies,
    "conversations.history": conversations_history,
    "conversations.info": conversations_info,
    "users.info": users_info,
    "apps.connections.open": apps_connections_open,
}
# Methods that take the app-level token (xapp-) instead of the bot token.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

# Canvas methods live in their own module, which adds them to METHODS when imported (last: it uses the names above).
import tests.fakes.slack_canvases  # noqa: E402, F401
