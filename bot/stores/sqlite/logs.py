"""SQLite: the message log and the inquiry log. Each row keeps the whole document as JSON (codec.py) next to the
columns its indexes need: channel, id, thread, author, time."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime

from bot.stores import codec
from bot.stores.sqlite.db import CH_WHERE, Db, channel_args
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL, message_id TEXT NOT NULL,
    thread_id TEXT, author TEXT NOT NULL, sent_us INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (platform, workspace, channel, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (platform, workspace, channel, sent_us);
-- A thread's replies in time order (replaces messages_by_thread, which lacked sent_us: SQLite then preferred
-- messages_by_time and scanned the whole channel).
DROP INDEX IF EXISTS messages_by_thread;
CREATE INDEX IF NOT EXISTS messages_by_thread_time ON messages (platform, workspace, channel, thread_id, sent_us);
CREATE INDEX IF NOT EXISTS messages_by_author ON messages (author);
CREATE INDEX IF NOT EXISTS messages_sent ON messages (sent_us);
CREATE TABLE IF NOT EXISTS inquiries (
    platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL, message_id TEXT NOT NULL,
    author TEXT NOT NULL, asked_us INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (platform, workspace, channel, message_id)
);
CREATE INDEX IF NOT EXISTS inquiries_by_time ON inquiries (platform, workspace, channel, asked_us);
CREATE INDEX IF NOT EXISTS inquiries_by_author ON inquiries (author);
CREATE INDEX IF NOT EXISTS inquiries_asked ON inquiries (asked_us);
"""


class SqliteMessages:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, message: ChatMessage) -> None:
        ref = message.ref
        row = (*channel_args(ref.channel), ref.message_id, ref.thread_id, message.author,
               codec.to_us(message.sent_at))  # fmt: skip
        doc = codec.encode_message(message)
        await self._db.write(
            lambda c: c.execute("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?)", (*row, doc))
        )

    async def thread(
        self, channel: ChannelRef, thread_id: str, *, since: datetime | None = None
    ) -> list[ChatMessage]:
        since_us = codec.to_us(since) if since is not None else -(2**62)
        # Two indexed lookups (the starter by primary key, the replies by messages_by_thread_time): one WHERE with
        # "message_id = ? OR thread_id = ?" made SQLite scan the channel's whole log, so a mention's cost grew
        # with the channel's history (the soak bench showed 0.06 → 2.4 ms per call over 8,000 mentions).
        query = (
            f"SELECT doc, sent_us, message_id FROM messages WHERE {CH_WHERE} AND message_id = ? AND sent_us > ?"
            f" UNION SELECT doc, sent_us, message_id FROM messages WHERE {CH_WHERE} AND thread_id = ?"
            " AND sent_us > ? ORDER BY sent_us, message_id"
        )
        args = (*channel_args(channel), thread_id, since_us, *channel_args(channel), thread_id, since_us)
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        return [codec.decode_message(doc) for (doc, _, _) in rows]

    async def recent(self, channel: ChannelRef, *, limit: int) -> list[ChatMessage]:
        query = f"SELECT doc FROM messages WHERE {CH_WHERE} ORDER BY sent_us DESC, message_id DESC LIMIT ?"
        args = (*channel_args(channel), max(limit, 0))
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        return [codec.decode_message(doc) for (doc,) in reversed(rows)]

    async def edit(self, ref: MessageRef, text: str) -> None:
        key = (*channel_args(ref.channel), ref.message_id)

        def edit(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                f"SELECT doc FROM messages WHERE {CH_WHERE} AND message_id = ?", key
            ).fetchone()
            if row is not None:
                doc = codec.encode_message(replace(codec.decode_message(row[0]), text=text))
                conn.execute(f"UPDATE messages SET doc = ? WHERE {CH_WHERE} AND message_id = ?", (doc, *key))

        await self._db.write(edit)

    async def delete(self, ref: MessageRef) -> None:
        key = (*channel_args(ref.channel), ref.message_id)
        await self._db.delete(f"DELETE FROM messages WHERE {CH_WHERE} AND message_id = ?", key)

    async def forget_user(self, user: str) -> int:
        return await self._db.delete("DELETE FROM messages WHERE author = ?", (user,))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._db.delete(f"DELETE FROM messages WHERE {CH_WHERE}", channel_args(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._db.delete("DELETE FROM messages WHERE sent_us < ?", (codec.to_us(cutoff),))

    async def count(self) -> int:
        return await self._db.count("messages")


class SqliteInquiries:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, inquiry: Inquiry) -> None:
        row = (*channel_args(inquiry.channel), inquiry.message_id, inquiry.author, codec.to_us(inquiry.asked_at))
        doc = codec.encode_inquiry(inquiry)
        await self._db.write(
            lambda c: c.execute("INSERT OR REPLACE INTO inquiries VALUES (?,?,?,?,?,?,?)", (*row, doc))
        )

    async def list(self, channel: ChannelRef, *, since: datetime) -> list[Inquiry]:
        query = f"SELECT doc FROM inquiries WHERE {CH_WHERE} AND asked_us >= ? ORDER BY asked_us, message_id"
        args = (*channel_args(channel), codec.to_us(since))
        rows = await self._db.read(lambda c: c.execute(query, args).fetchall())
        return [codec.decode_inquiry(doc) for (doc,) in rows]

    async def delete(self, channel: ChannelRef, message_id: str) -> None:
        query = f"DELETE FROM inquiries WHERE {CH_WHERE} AND message_id = ?"
        await self._db.delete(query, (*channel_args(channel), message_id))

    async def forget_user(self, user: str) -> int:
        return await self._db.delete("DELETE FROM inquiries WHERE author = ?", (user,))

    async def forget_channel(self, channel: ChannelRef) -> int:
        return await self._db.delete(f"DELETE FROM inquiries WHERE {CH_WHERE}", channel_args(channel))

    async def purge_before(self, cutoff: datetime) -> int:
        return await self._db.delete("DELETE FROM inquiries WHERE asked_us < ?", (codec.to_us(cutoff),))

    async def count(self) -> int:
        return await self._db.count("inquiries")
