"""Redis: the message log and the inquiry log — one JSON document per (channel, id), indexed by time per channel,
by thread (messages) and by author (for forget_user)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from redis.asyncio import Redis

from bot.stores import codec
from bot.stores.redis.client import chunks, strs
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where one stored document is indexed."""

    ck: str
    member: str  # the id, as stored in the sorted sets
    score: int  # µs since the epoch
    author: str
    extra: tuple[str, ...] = ()  # further sorted sets listing ``member``


class _Documents:
    """Documents per (channel, id), indexed by time per channel and by author; shared by messages and inquiries."""

    def __init__(self, r: Redis, prefix: str, *, doc: str, by_time: str, by_author: str, channels: str,
                 entry: Callable[[str], _Entry]) -> None:  # fmt: skip
        self._r, self._p = r, prefix
        self._doc, self._by_time, self._by_author = doc, by_time, by_author
        self._channels = f"{prefix}{channels}"
        self._entry = entry

    def doc_key(self, ck: str, member: str) -> str:
        return f"{self._p}{self._doc}:{ck}:{codec.part(member)}"

    def time_key(self, ck: str) -> str:
        return f"{self._p}{self._by_time}:{ck}"

    def _author_key(self, author: str) -> str:
        return f"{self._p}{self._by_author}:{codec.part(author)}"

    async def put(self, raw: str) -> None:
        new = self._entry(raw)
        key = self.doc_key(new.ck, new.member)
        old_raw = await self._r.get(key)
        async with self._r.pipeline(transaction=True) as tx:
            if old_raw is not None:  # a replacement may move the document to another thread or author
                old = self._entry(str(old_raw))
                for zset in set(old.extra) - set(new.extra):
                    tx.zrem(zset, old.member)
                if old.author != new.author:
                    tx.srem(self._author_key(old.author), key)
            tx.set(key, raw)
            for zset in (self.time_key(new.ck), *new.extra):
                tx.zadd(zset, {new.member: new.score})
            tx.sadd(self._author_key(new.author), key)
            tx.sadd(self._channels, new.ck)
            await tx.execute()

    async def get_many(self, keys: list[str]) -> list[str]:
        found: list[str] = []
        for chunk in chunks(keys):
            found += strs(raw for raw in await self._r.mget(chunk) if raw is not None)
        return found

    async def remove(self, keys: list[str]) -> int:
        removed = 0
        for chunk in chunks(keys):
            raws = strs(raw for raw in await self._r.mget(chunk) if raw is not None)
            if not raws:
                continue
            deletes: list[int] = []  # positions of the DEL replies
            async with self._r.pipeline(transaction=True) as tx:
                for raw in raws:
                    entry = self._entry(raw)
                    key = self.doc_key(entry.ck, entry.member)
                    deletes.append(len(tx))
                    tx.delete(key)
                    for zset in (self.time_key(entry.ck), *entry.extra):
                        tx.zrem(zset, entry.member)
                    tx.srem(self._author_key(entry.author), key)
                results = await tx.execute()
            # Count only what this call deleted: another replica may be removing the same documents.
            removed += sum(int(results[i]) for i in deletes)
        return removed

    async def in_range(self, ck: str, low: str, high: str) -> list[str]:
        members = strs(await self._r.zrangebyscore(self.time_key(ck), low, high))
        return [self.doc_key(ck, m) for m in members]

    async def forget_user(self, author: str) -> int:
        keys = strs(await self._r.smembers(self._author_key(author)))
        removed = await self.remove(keys)
        await self._r.delete(self._author_key(author))
        return removed

    async def forget_channel(self, channel: ChannelRef) -> int:
        ck = codec.channel_key(channel)
        removed = await self.remove(await self.in_range(ck, "-inf", "+inf"))
        await self._r.srem(self._channels, ck)
        return removed

    async def purge_before(self, cutoff: datetime) -> int:
        removed = 0
        for ck in strs(await self._r.smembers(self._channels)):
            removed += await self.remove(await self.in_range(ck, "-inf", f"({codec.to_us(cutoff)}"))
        return removed

    async def count(self) -> int:
        cks = strs(await self._r.smembers(self._channels))
        async with self._r.pipeline(transaction=False) as pipe:
            for ck in cks:
                pipe.zcard(self.time_key(ck))
            return sum(int(n) for n in await pipe.execute())


def _by_time(items: list[ChatMessage]) -> list[ChatMessage]:
    return sorted(items, key=lambda m: (codec.to_us(m.sent_at), m.ref.message_id))


class RedisMessages:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._r, self._p = r, prefix
        self._docs = _Documents(
            r,
            prefix,
            doc="msg",
            by_time="msgs",
            by_author="msgs-by",
            channels="msg-channels",
            entry=self._entry,
        )

    def _thread_key(self, ck: str, thread_id: str) -> str:
        return f"{self._p}thread:{ck}:{codec.part(thread_id)}"

    def _entry(self, raw: str) -> _Entry:
        message = codec.decode_message(raw)
        ref = message.ref
        ck = codec.channel_key(ref.channel)
        is_reply = ref.thread_id is not None and ref.thread_id != ref.message_id
        extra = (self._thread_key(ck, ref.thread_id),) if is_reply and ref.thread_id is not None else ()
        return _Entry(ck, ref.message_id, codec.to_us(message.sent_at), message.author, extra)

    async def add(self, message: ChatMessage) -> None:
        await self._docs.put(codec.encode_message(message))

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        ck = codec.channel_key(channel)
        low = f"({codec.to_us(since)}" if since is not None else "-inf"
        replies = strs(await self._r.zrangebyscore(self._thread_key(ck, thread_id), low, "+inf"))
        keys = [self._docs.doc_key(ck, thread_id)] + [self._docs.doc_key(ck, m) for m in replies]
        messages = [codec.decode_message(raw) for raw in await self._docs.get_many(keys)]
        if since is not None:  # the root was read by key, not by score
            messages = [m for m in messages if m.sent_at > since]
        return _by_time(messages)

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        if limit <= 0:
            return []
        ck = codec.channel_key(channel)
        members = strs(await self._r.zrange(self._docs.time_key(ck), -limit, -1))
        raws = await self._docs.get_many([self._docs.doc_key(ck, m) for m in members])
        return _by_time([codec.decode_message(raw) for raw in raws])

    async def edit(self, ref: MessageRef, text: str) -> None:
        raw = await self._r.get(self._docs.doc_key(codec.channel_key(ref.channel), ref.message_id))
        if raw is not None:
            await self._docs.put(codec.encode_message(replace(codec.decode_message(str(raw)), text=text)))

    async def delete(self, ref: MessageRef) -> None:
        await self._docs.remove([self._docs.doc_key(codec.channel_key(ref.channel), ref.message_id)])

    async def forget_user(self, user: str) -> int:
        return await self._docs.forget_user(user)

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._docs.forget_channel(channel)

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._docs.purge_before(cutoff)

    async def count(self) -> int:
        return await self._docs.count()


def _inquiry_entry(raw: str) -> _Entry:
    inquiry = codec.decode_inquiry(raw)
    return _Entry(
        codec.channel_key(inquiry.channel), inquiry.message_id, codec.to_us(inquiry.asked_at), inquiry.author
    )


class RedisInquiries:
    def __init__(self, r: Redis, prefix: str) -> None:
        self._docs = _Documents(
            r,
            prefix,
            doc="inq",
            by_time="inqs",
            by_author="inqs-by",
            channels="inq-channels",
            entry=_inquiry_entry,
        )

    async def add(self, inquiry: Inquiry) -> None:
        await self._docs.put(codec.encode_inquiry(inquiry))

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        keys = await self._docs.in_range(codec.channel_key(channel), str(codec.to_us(since)), "+inf")
        inquiries = [codec.decode_inquiry(raw) for raw in await self._docs.get_many(keys)]
        return sorted(inquiries, key=lambda i: (codec.to_us(i.asked_at), i.message_id))

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        await self._docs.remove([self._docs.doc_key(codec.channel_key(channel), message_id)])

    async def forget_user(self, user: str) -> int:
        return await self._docs.forget_user(user)

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._docs.forget_channel(channel)

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._docs.purge_before(cutoff)

    async def count(self) -> int:
        return await self._docs.count()
