"""The ports bot/ talks through. Kept small: adapters implement them, fakes implement them in tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from bot.types import ChannelRef, ChatMessage, MessageRef, PlatformLimits


class ChatPlatform(Protocol):
    limits: PlatformLimits

    async def post(self, channel: ChannelRef, text: str, *, thread_id: str | None = None) -> MessageRef:
        """Post a message; raises PlatformRateLimited, MessageTooLong or MessageGone."""
        ...

    async def edit(self, ref: MessageRef, text: str) -> None:
        """Replace a message's text; raises PlatformRateLimited, MessageTooLong or MessageGone."""
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
