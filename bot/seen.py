"""Which messages of a thread the bot has already seen: decided here, once, for the core and every platform.

The bot records the messages of the channels it is in (its message log), from the moment it joins (or comes back
up). What it has seen of a thread is what the log holds of it; what it missed is everything older than the oldest
reply the log holds (it joined, or was down, before that), the thread's start included. So:

- bot/summarize.py asks the platform for a thread only when the log lacks its start (``saw_start``), and adds only
  the messages the log does not hold (``unseen``);
- a platform that pages history (adapters/slack/platform.py ``fetch_thread``) pages only what is older than
  ``missed_before`` and returns only what is ``unseen``: on Slack's restricted tier every page is a minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from bot.types import ChatMessage

T = TypeVar("T")


def message_id(message: ChatMessage) -> str:
    return message.ref.message_id


@dataclass(frozen=True, slots=True)
class SeenThread:
    """What the message log holds of one thread: the ids of its messages, and the oldest reply among them."""

    thread_id: str
    ids: frozenset[str] = frozenset()
    missed_before: str | None = None  # the oldest reply in the log: what the bot missed is older than it

    @classmethod
    def of(cls, thread_id: str, logged: Iterable[ChatMessage]) -> SeenThread:
        logged = list(logged)
        replies = [m for m in logged if m.ref.message_id != thread_id]
        oldest = min(replies, key=lambda m: m.sent_at, default=None)
        return cls(thread_id, frozenset(map(message_id, logged)), None if oldest is None else message_id(oldest))

    @property
    def saw_start(self) -> bool:
        """The log holds the thread's first message: nothing before it was missed."""
        return self.thread_id in self.ids

    def unseen(self, items: Iterable[T], id_of: Callable[[T], str]) -> list[T]:
        """``items`` the log does not hold, each id once (pages can overlap), in the order given."""
        fresh: dict[str, T] = {}
        for item in items:
            key = id_of(item)
            if key not in self.ids and key not in fresh:
                fresh[key] = item
        return list(fresh.values())
