"""Canvas methods of the fake Slack: canvases.create (standalone, tabbed in a channel with channel_id) and
canvases.edit (replace the whole document). Errors and limits from the methods' reference pages
(https://docs.slack.dev/reference/methods/canvases.create, …/canvases.edit): a token without canvases:write gets
``missing_scope`` with ``needed``/``provided``; a team whose plan refuses canvases gets ``canvas_disabled_user_team``;
markdown content is limited to 1 MiB."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.slack_methods import METHODS, Handler, Params, Refusal, _postable_channel, _required
from tests.fakes.slack_records import Workspace

if TYPE_CHECKING:
    from tests.fakes.slack_api import FakeSlack

MARKDOWN_MAX = 1_048_576
SCOPE = "canvases:write"
_ids = itertools.count(1)


@dataclass
class FakeCanvas:
    id: str
    title: str
    channel_id: str | None
    versions: list[str] = field(default_factory=list)  # markdown of every create/edit, oldest first

    @property
    def markdown(self) -> str:
        return self.versions[-1] if self.versions else ""


@dataclass
class CanvasState:
    granted: bool = True  # the app's token has canvases:write
    enabled: bool = True  # the team's plan allows canvases
    canvases: dict[str, FakeCanvas] = field(default_factory=dict)


def canvases(fake: FakeSlack) -> CanvasState:
    """The fake's canvas state (kept on the fake itself, created on first use)."""
    state = getattr(fake, "_canvas_state", None)
    if state is None:
        state = CanvasState()
        fake._canvas_state = state  # type: ignore[attr-defined]
    return state


def _allowed(fake: FakeSlack) -> CanvasState:
    state = canvases(fake)
    if not state.granted:
        raise Refusal("missing_scope", needed=SCOPE, provided="chat:write,channels:history")
    if not state.enabled:
        raise Refusal("canvas_disabled_user_team")
    return state


def _markdown(content: Any) -> str:
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError as exc:
            raise Refusal("invalid_arguments") from exc
    if not isinstance(content, dict) or content.get("type") != "markdown":
        raise Refusal("invalid_arguments")
    markdown = str(content.get("markdown", ""))
    if len(markdown) > MARKDOWN_MAX:
        raise Refusal("canvas_creation_failed")
    return markdown


def canvases_create(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    state = _allowed(fake)
    channel = params.get("channel_id")
    if channel:
        _postable_channel(fake, str(channel))
    canvas = FakeCanvas(f"F{next(_ids):09d}", str(params.get("title") or ""), channel and str(channel))
    if params.get("document_content") is not None:
        canvas.versions.append(_markdown(params["document_content"]))
    state.canvases[canvas.id] = canvas
    return {"canvas_id": canvas.id}


def canvases_edit(fake: FakeSlack, ws: Workspace, params: Params) -> dict[str, Any]:
    state = _allowed(fake)
    canvas = state.canvases.get(_required(params, "canvas_id"))
    if canvas is None:
        raise Refusal("canvas_not_found")
    changes = params.get("changes")
    if isinstance(changes, str):
        changes = json.loads(changes)
    if not isinstance(changes, list) or not changes:
        raise Refusal("invalid_arguments")
    for change in changes:
        if not isinstance(change, dict) or change.get("operation") != "replace" or "section_id" in change:
            raise Refusal("invalid_arguments")  # the fake implements whole-document replace only
        canvas.versions.append(_markdown(change.get("document_content")))
    return {}


CANVAS_METHODS: dict[str, Handler] = {"canvases.create": canvases_create, "canvases.edit": canvases_edit}
METHODS.update(CANVAS_METHODS)
