"""What each message of a live reply should show now, from the model text received so far: the parts
textsplit.StreamSplitter froze (finished messages), then the open tail with the writing marker and the status line.
Pure planning, no platform calls: bot/live_reply.py edits the messages towards the plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.safety import defang_mass_mentions, settled_length
from bot.textsplit import StreamSplitter, safe_prefix_len

log = logging.getLogger(__name__)

EMPTY_REPLY = "(The model returned no text.)"
# When the platform refuses a message as too long, the part limit shrinks to this share of the refused length.
SHRINK_FACTOR = 0.75
MIN_PART_CHARS = 16


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """What one message of the reply should show now."""

    text: str  # what the message should show
    visible_end: int  # offset in the defanged text up to which model text is then visible
    done: bool  # the message's finished text: only retries follow it
    body: str | None = None  # in progress: the model text in ``text`` ("" for the placeholder); None: all of it


class ReplyPlanner:
    """Splits a reply's text into messages of at most ``limit`` characters; ``placeholder`` stands in while there is
    no text yet, ``marker`` follows text still being written, ``status`` is a line under it."""

    def __init__(self, *, limit: int, marker: str, placeholder: str) -> None:
        if limit < MIN_PART_CHARS:
            raise ValueError(f"max_message_chars must be at least {MIN_PART_CHARS}")
        self.limit = limit
        self.marker = marker
        self.placeholder = placeholder
        self.status = ""
        self._splitter = StreamSplitter(limit=limit)

    def plan(self, text: str, *, final: bool) -> list[PlannedMessage]:
        """What each message should show for ``text`` (the model text, before defanging); frozen parts first, then
        the open tail (unless final)."""
        # While streaming, an unfinished crowd-ping token at the end waits for the next text, so what is shown
        # only ever grows (defanging it later would rewrite visible text).
        raw = text if final else text[: settled_length(text)]
        shown_text = defang_mass_mentions(raw)
        self._splitter.update(shown_text, final=final)
        wants: list[PlannedMessage] = []
        offset = 0
        for part in self._splitter.parts:
            offset += len(part)
            wants.append(PlannedMessage(part, offset, done=True))
        if final:
            return wants or [PlannedMessage(EMPTY_REPLY[: safe_prefix_len(EMPTY_REPLY, self.limit)], 0, done=True)]
        tail = self._splitter.tail(shown_text)
        if wants and not tail:
            return wants
        suffix = f"\n\n{self.status}" if self.status else ""
        suffix = suffix[: safe_prefix_len(suffix, self.limit // 3)]
        budget = self.limit - len(self.marker) - len(suffix)
        body = tail[: safe_prefix_len(tail, budget) or budget]
        shown = body + self.marker if body else self.placeholder[: safe_prefix_len(self.placeholder, budget)]
        wants.append(PlannedMessage(shown + suffix, offset + len(body), done=False, body=body))
        return wants

    def shrink(self, first: int, refused_len: int) -> bool:
        """The platform refused a text of ``refused_len`` as too long: re-split from message ``first`` on with a
        smaller limit. False when the limit cannot shrink any more (the platform refuses even the smallest part)."""
        new_limit = max(MIN_PART_CHARS, int(min(self.limit, refused_len) * SHRINK_FACTOR))
        if new_limit >= self.limit:
            log.warning("live reply: platform refuses even %d characters; giving up", self.limit)
            return False
        log.info("live reply: message too long, limit %d -> %d", self.limit, new_limit)
        self.limit = new_limit
        # Messages before ``first`` already show their final part (the plan is worked through in order).
        self._splitter.rewind(min(first, len(self._splitter.parts)), limit=new_limit)
        return True
