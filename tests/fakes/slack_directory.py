"""More Web API methods of the fake Slack: who is in which channel, channels by name, and the AI-app side pane's
status and suggested prompts. Handlers follow slack_methods.py's contract (fake, workspace, params → body).

Error names and shapes are Slack's, from https://docs.slack.dev/reference/methods/<method>.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.slack_methods import Handler, Params, Refusal, _json_list, _required, auth_test
from tests.fakes.slack_records import Workspace

if TYPE_CHECKING:
    from tests.fakes.slack_api import FakeSlack

# conversations.members and conversations.list default to 100 per page; 1,000 is the documented maximum.
MEMBERS_DEFAULT_LIMIT = 100
LIST_DEFAULT_LIMIT = 100
PAGE_MAX = 1000
# assistant.threads.setSuggestedPrompts takes at most 4 prompts.
SUGGESTED_PROMPTS_MAX = 4


def _limit(params: Params, default: int) -> int:
    return max(1, min(int(params.get("limit") or default), PAGE_MAX))


def _offset(params: Params) -> int:
    cursor = str(params.get("cursor") or "")
    if not cursor:
        return 0
    if not cursor.startswith("offset:") or not cursor[7:].isdigit():
        raise Refusal("invalid_cursor")
    return int(cursor[7:])


def _paged(items: list[Any], params: Params, *, default: int) -> tuple[list[Any], str]:
    start, limit = _offset(params), _limit(params, default)
    page = items[start : start + limit]
    return page, f"offset:{start + limit}" if start + limit < len(items) else ""


def auth_test_with_org(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    """auth.test; for an org-wide (Enterprise Grid) install the token belongs to the organisation."""
    body = auth_test(fake, ws, params)
    if fake.enterprise_id:
        body.update(enterprise_id=fake.enterprise_id, is_enterprise_install=fake.enterprise_install)
        if fake.enterprise_install:
            body["team_id"] = None
    return body


def conversations_members(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    channel = fake.channels.get(_required(params, "channel"))
    if channel is None or (channel.is_private and not channel.is_member):
        raise Refusal("channel_not_found")  # Slack hides private channels the bot is not in
    members = sorted(fake.members.get(channel.id, set()))
    page, cursor = _paged(members, params, default=MEMBERS_DEFAULT_LIMIT)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


def conversations_list(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    types = set(str(params.get("types") or "public_channel").split(","))
    found = []
    for channel in fake.channels.values():
        kind = "im" if channel.is_im else "private_channel" if channel.is_private else "public_channel"
        if kind not in types or (channel.is_private and not channel.is_member):
            continue
        found.append({"id": channel.id, "name": channel.name, "is_private": channel.is_private,
                      "is_im": channel.is_im, "is_member": channel.is_member})  # fmt: skip
    page, cursor = _paged(found, params, default=LIST_DEFAULT_LIMIT)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


def _assistant_thread(fake: FakeSlack, params: Params) -> tuple[str, str]:
    """(channel, thread_ts); thread_ts is "" for the top of an agent's Messages tab (agent_view)."""
    channel, thread_ts = _required(params, "channel_id"), str(params.get("thread_ts") or "")
    if channel not in fake.channels:
        raise Refusal("channel_not_found")
    return channel, thread_ts


def assistant_threads_set_status(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    key = _assistant_thread(fake, params)
    if not key[1]:
        raise Refusal("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: thread_ts"]})
    fake.assistant_statuses.setdefault(key, []).append(str(params.get("status") or ""))
    return {}


def assistant_threads_set_suggested_prompts(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    key = _assistant_thread(fake, params)
    prompts = _json_list(params.get("prompts")) or []
    if not prompts or len(prompts) > SUGGESTED_PROMPTS_MAX:
        raise Refusal("invalid_arguments")
    for prompt in prompts:
        if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
            raise Refusal("invalid_arguments")
    fake.suggested_prompts[key] = prompts
    return {}


def assistant_threads_set_title(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    _assistant_thread(fake, params)
    return {}


DIRECTORY_METHODS: dict[str, Handler] = {
    "auth.test": auth_test_with_org,
    "conversations.members": conversations_members,
    "conversations.list": conversations_list,
    "assistant.threads.setStatus": assistant_threads_set_status,
    "assistant.threads.setSuggestedPrompts": assistant_threads_set_suggested_prompts,
    "assistant.threads.setTitle": assistant_threads_set_title,
}
