"""The ports bot/ talks through. Kept small: adapters implement them, fakes implement them in tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.types import ChannelRef, ChatMessage, MessageRef, PlatformLimits


class EditPacer(Protocol):
    """Decides when the next edit of a message may go out; one per platform (``ChatPlatform.pacer``), shared by
    every live reply on it, so an implementation can budget per message, channel or workspace from the ref alone.

    ``final`` says the edit carries the message's finished text (nothing will follow it but retries), so a pacer
    can keep budget for finals or let them pass ahead of progress edits."""

    async def wait_turn(self, ref: MessageRef, *, final: bool) -> None:
        """Wait until an edit of ``ref`` may go out, and count it."""
        ...

    async def penalize(self, ref: MessageRef, retry_after_s: float) -> None:
        """The platform answered an edit of ``ref`` with 429 and this Retry-After."""
        ...


class ChatPlatform(Protocol):
    limits: PlatformLimits

    @property
    def pacer(self) -> EditPacer:
        """Whose turn it is to edit: every live reply and the orphan janitor wait here before ``edit``. A platform
        with no shared budget to keep uses an IntervalPacer (bot.pacing). Read-only here, so an adapter may
        declare its own pacer class."""
        ...

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        """Post a message; raises PlatformRateLimited, MessageTooLong or MessageGone. ``body``: see ``edit``."""
        ...

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        """Replace a message's text; raises PlatformRateLimited, MessageTooLong or MessageGone.

        ``final``: the message's finished text (nothing follows but retries). ``body``: while a live reply is
        written, the reply's own text within ``text``, without the in-progress marker, status line or placeholder
        that ``text`` adds ("" while only the placeholder shows); None when ``text`` is all body. A platform that
        shows progress its own way (Slack's native streams) shows only this; others show ``text``."""
        ...

    async def fetch_thread(
        self,
        ref: MessageRef,
        *,
        since: datetime | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[ChatMessage]:
        """Messages of the thread ``ref`` belongs to (or recent channel messages), oldest first. A platform that
        reads slowly (Slack's restricted history tier: a page a minute) tells the person waiting through
        ``progress`` ("" clears the line); others may ignore it."""
        ...


@dataclass(frozen=True, slots=True)
class PublishedDocument:
    """Where a platform put a document (the channel's FAQ) and what it needs to update it in place next time."""

    # "canvas", "pinned messages"; "reply" when the platform keeps the reply itself as the document (see
    # keep_as_document); "message" when it could not keep a document
    where: str
    handle: dict[str, str]  # opaque to bot/: canvas id, message ids … (stored, then handed back as ``previous``)
    link: str = ""  # where people open it, "" when the platform gives none
    note: str = ""  # why it fell back to a message, for the person who asked
    place: str = ""  # where it is, in the platform's words for people ("this channel's canvas (…)")

    @property
    def kept(self) -> bool:
        """The platform keeps it as a document (not the reply itself, not a plain message)."""
        return self.where not in (REPLY, MESSAGE)


# PublishedDocument.where values every platform shares; any other names the platform's own kind of document.
REPLY = "reply"
MESSAGE = "message"


@runtime_checkable
class DocumentPublisher(Protocol):
    """A platform that can keep a document in a channel (Slack canvases, Discord pinned messages)."""

    async def publish_document(
        self, channel: ChannelRef, *, title: str, text: str, previous: dict[str, str]
    ) -> PublishedDocument:
        """Create the document, or update the one ``previous`` names in place; never raises for a missing
        permission or feature: falls back to where="message" (posting nothing) with a ``note`` saying why."""
        ...


@runtime_checkable
class DocumentKeeper(Protocol):
    """A platform that can make messages already posted into the channel's document (Discord pins them)."""

    async def keep_as_document(self, channel: ChannelRef, refs: list[MessageRef], *, title: str) -> PublishedDocument:
        """Keep messages already posted (the reply that carried the document) as the document, e.g. pin them."""
        ...


@runtime_checkable
class MessageLinks(Protocol):
    """A platform whose messages have links people can open (FAQ sources); the console has none."""

    async def message_link(self, ref: MessageRef) -> str: ...
