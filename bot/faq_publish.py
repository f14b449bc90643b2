"""Where the FAQ lives: a document the channel keeps (whatever the platform offers), updated in place
on every refresh, and the short reply to /faq that says what changed and where to find it. A platform that cannot
keep documents (the console), or refuses to (a missing scope or permission), gets the FAQ as the reply itself,
with the reason."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bot.faq import FaqWriter
from bot.faq_doc import FaqResult
from bot.ports import MESSAGE, REPLY, ChatPlatform, DocumentKeeper, DocumentPublisher, MessageLinks
from bot.types import ChannelRef, MessageRef

log = logging.getLogger(__name__)

TITLE = "FAQ"


def link_for(platform: ChatPlatform) -> Callable[[MessageRef], Awaitable[str]]:
    """The platform's link to a message, for FAQ sources; "" where it has none (the console)."""
    if isinstance(platform, MessageLinks):
        return platform.message_link

    async def none(ref: MessageRef) -> str:
        return ""

    return none


def publisher(
    platform: ChatPlatform, channel: ChannelRef
) -> Callable[[FaqResult, dict[str, str]], Awaitable[tuple[FaqResult, dict[str, str]]]]:
    async def publish(result: FaqResult, previous: dict[str, str]) -> tuple[FaqResult, dict[str, str]]:
        if not isinstance(platform, DocumentPublisher):
            return result, previous
        if result.unchanged and previous.get("place"):  # a document exists and nothing changed: point at it
            return replace(
                result, where=previous["where"], link=previous.get("link", ""), place=previous["place"]
            ), previous
        try:
            doc = await platform.publish_document(channel, title=TITLE, text=result.to_text(), previous=previous)
        except Exception as exc:
            # The FAQ is still answered in the reply; the document waits for the next run.
            log.exception("could not publish the FAQ in %s", channel.key)
            note = f"could not update the FAQ document ({type(exc).__name__})"
            return replace(result, where=MESSAGE, note=note), previous
        if doc.where == REPLY:  # the reply will carry the FAQ; keep_reply() then keeps it as the document
            return replace(result, where=REPLY), previous
        if not doc.kept:
            return replace(result, where=MESSAGE, note=doc.note), previous
        handle = {**previous, **doc.handle, "where": doc.where, "link": doc.link, "place": doc.place}
        return replace(result, where=doc.where, link=doc.link, note=doc.note, place=doc.place), handle

    return publish


async def keep_reply(
    writer: FaqWriter, platform: ChatPlatform, channel: ChannelRef, refs: list[MessageRef]
) -> None:
    """After a reply that carried the FAQ (where="reply"): the platform keeps those messages as the FAQ document
    (Discord pins them), and the next run updates them in place. Failing that, the FAQ stays a message."""
    if not isinstance(platform, DocumentKeeper) or not refs:
        return
    try:
        doc = await platform.keep_as_document(channel, refs, title=TITLE)
    except Exception:
        log.exception("could not keep the FAQ reply as the document in %s", channel.key)
        return
    if doc.kept:
        await writer.remember_document(
            channel, {**doc.handle, "where": doc.where, "link": doc.link, "place": doc.place}
        )
    else:
        log.info("the FAQ in %s stays a message: %s", channel.key, doc.note)


def reply_text(result: FaqResult) -> str:
    """The reply to /faq: a short note pointing at the document, or the FAQ itself where there is none."""
    if result.place:
        place = result.place + (f": {result.link}" if result.link else "")
        n, open_ = len(result.faqs), result.open_questions
        counts = f"{n} answered entr{'y' if n == 1 else 'ies'}, {open_:,} question{'' if open_ == 1 else 's'} not answered yet"
        if result.unchanged:
            return f"**FAQ** — no new questions or answers since the last run ({counts}). It is in {place}."
        changed = f"{result.rewritten} categories written, {result.kept} kept as they were"
        return f"**FAQ** — updated in {place}. {counts[0].upper()}{counts[1:]}; {changed}."
    text = result.to_text()
    if result.unchanged:
        made = result.made_at[:16].replace("T", " ")
        text = f"No new questions or answers since the last FAQ ({made} UTC); here it is.\n\n{text}"
    if result.note:
        text = f"{text}\n\n_(Posted here as a message: {result.note}.)_"
    return text
