"""The channel's FAQ as a Slack canvas, and links to Slack messages.

The FAQ is a standalone canvas tabbed in the channel (``canvases.create`` with ``channel_id``), not the channel
canvas: a channel canvas may hold what the team wrote by hand, and the FAQ's refresh replaces the whole document
(``canvases.edit`` with a ``replace`` change). Both need the ``canvases:write`` scope; without it, or on a plan that
refuses canvases, the FAQ falls back to a message and the reply says why.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.calls import translate
from bot.ports import PublishedDocument
from bot.safety import defang_mass_mentions
from bot.types import ChannelRef, MessageRef, PlatformRateLimited

log = logging.getLogger(__name__)

CANVAS_SCOPE = "canvases:write"
CANVAS_PLACE = "this channel's canvas (the FAQ tab at the top of the channel)"
# "The markdown content is limited to 1 MiB (1,048,576 characters)" (conversations.canvases.create reference).
CANVAS_MARKDOWN_MAX = 1_048_576


def canvas_markdown(text: str) -> str:
    """The core's text (Markdown: ``**bold**``, ``_italic_``, "• " bullets, links) → canvas markdown, which needs
    only its bullets as "- " and no crowd pings."""
    text = defang_mass_mentions(text)
    lines = [("- " + line[2:]) if line.startswith("• ") else line for line in text.split("\n")]
    return "\n".join(lines)[:CANVAS_MARKDOWN_MAX]


async def publish_canvas(
    client: AsyncWebClient, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
) -> PublishedDocument:
    content = {"type": "markdown", "markdown": canvas_markdown(text)}
    canvas_id = previous.get("canvas_id", "")
    try:
        if canvas_id:
            try:
                await client.canvases_edit(
                    canvas_id=canvas_id, changes=[{"operation": "replace", "document_content": content}]
                )
                return PublishedDocument("canvas", {"canvas_id": canvas_id}, place=CANVAS_PLACE)
            except SlackApiError as exc:
                if exc.response.get("error") != "canvas_not_found":  # deleted by someone: make a new one
                    raise
        response = await client.canvases_create(
            title=title, document_content=content, channel_id=channel.channel
        )
        return PublishedDocument("canvas", {"canvas_id": str(response["canvas_id"])}, place=CANVAS_PLACE)
    except SlackApiError as exc:
        translated = translate(exc)
        if isinstance(translated, PlatformRateLimited):
            raise translated from exc
        error = str(exc.response.get("error", "unknown"))
        log.info("canvas refused in %s: %s", channel.key, error)
        if error == "missing_scope":
            note = f"the app lacks Slack's {exc.response.get('needed') or CANVAS_SCOPE} scope for canvases"
        else:
            note = f"Slack refused the canvas ({error})"
        return PublishedDocument("message", {}, note=note)


async def team_url(client: AsyncWebClient) -> str:
    """The workspace's URL ("https://acme.slack.com/"), from auth.test."""
    response = await client.auth_test()
    url = str(response.get("url") or "")
    return url if url.endswith("/") else url + "/"


def permalink(base: str, ref: MessageRef) -> str:
    """A message's link in the shape chat.getPermalink returns (``…/archives/C123/p1700000000000100``, with
    ``thread_ts`` and ``cid`` for a reply), without a call per message."""
    link = f"{base}archives/{ref.channel.channel}/p{ref.message_id.replace('.', '')}"
    if ref.thread_id and ref.thread_id != ref.message_id:
        link += f"?thread_ts={ref.thread_id}&cid={ref.channel.channel}"
    return link
