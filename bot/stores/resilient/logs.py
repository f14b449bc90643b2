"""The message and inquiry logs while Redis is down: writes wait in the guard's backlog, reads raise
StoreUnavailable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.stores.base import InquiryLog, MessageLog
from bot.stores.resilient.guard import Guard
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef


class ResilientMessages:
    def __init__(self, inner: MessageLog, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def add(self, message: ChatMessage) -> None:
        await self._guard.write("messages.add", lambda: self._inner.add(message), chars=len(message.text))

    async def edit(self, ref: MessageRef, text: str) -> None:
        await self._guard.write("messages.edit", lambda: self._inner.edit(ref, text), chars=len(text))

    async def delete(self, ref: MessageRef) -> None:
        await self._guard.write("messages.delete", lambda: self._inner.delete(ref))

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        await self._guard.replay()  # what was buffered belongs in the answer
        return await self._guard.run(
            "messages.thread",
            lambda: self._inner.thread(channel, thread_id, since=since),
            lambda: self._guard.unavailable("the thread"),
        )

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        await self._guard.replay()
        return await self._guard.run(
            "messages.recent",
            lambda: self._inner.recent(channel, limit=limit),
            lambda: self._guard.unavailable("recent messages"),
        )

    async def forget_user(self, user: str) -> int:
        return await self._strict("messages.forget_user", lambda: self._inner.forget_user(user))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._strict("messages.forget_channel", lambda: self._inner.forget_channel(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._strict("messages.purge_before", lambda: self._inner.purge_before(cutoff))

    async def count(self) -> int:
        return await self._strict("messages.count", self._inner.count)

    async def _strict(self, what: str, op: Callable[[], Awaitable[int]]) -> int:
        await self._guard.replay()  # a buffered add must not survive a forget that ran after it
        return await self._guard.run(what, op, lambda: self._guard.unavailable(what))


class ResilientInquiries:
    def __init__(self, inner: InquiryLog, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def add(self, inquiry: Inquiry) -> None:
        await self._guard.write("inquiries.add", lambda: self._inner.add(inquiry), chars=len(inquiry.text))

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        await self._guard.write("inquiries.delete", lambda: self._inner.delete(channel, message_id))

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        await self._guard.replay()
        return await self._guard.run(
            "inquiries.list",
            lambda: self._inner.list(channel, since=since),
            lambda: self._guard.unavailable("the collected questions"),
        )

    async def forget_user(self, user: str) -> int:
        return await self._strict("inquiries.forget_user", lambda: self._inner.forget_user(user))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._strict("inquiries.forget_channel", lambda: self._inner.forget_channel(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._strict("inquiries.purge_before", lambda: self._inner.purge_before(cutoff))

    async def count(self) -> int:
        return await self._strict("inquiries.count", self._inner.count)

    async def _strict(self, what: str, op: Callable[[], Awaitable[int]]) -> int:
        await self._guard.replay()
        return await self._guard.run(what, op, lambda: self._guard.unavailable(what))
