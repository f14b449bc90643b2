"""No gateway payload can stop the bot: a dispatch that fails to parse is logged once and dropped.

discord.py 2.7 runs each DISPATCH through ``ConnectionState.parsers[event](data)`` inside
``DiscordWebSocket.received_message`` with no guard, and an exception there leaves ``Client.connect``, which
closes the client: one malformed payload (or a documented-but-partial one discord.py does not expect) ends the
process, cuts off every reply in progress and costs a fresh IDENTIFY. The websocket holds that very dict
(``DiscordWebSocket.from_client``: ``ws._discord_parsers = client._connection.parsers``), so wrapping its entries
once, after the client is built, guards every shard of every connection. tests/test_discord_guard.py pins that
contract against the installed discord.py.

A dropped dispatch is not silently lost where it matters to someone: a dropped INTERACTION_CREATE is answered
with an ephemeral error (Discord would otherwise show "did not respond"), and a dropped MESSAGE_UPDATE that still
carries its id, channel and content is handed on as a raw edit so the message log stays right.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import discord

log = logging.getLogger(__name__)

# (event name, the raw data, what went wrong) for a dispatch that was dropped.
OnDropped = Callable[[str, Any, Exception], None]


class _Guarded:
    """One parser entry, guarded. A class rather than a closure so a second install can see it is done."""

    __slots__ = ("event", "parse", "on_dropped", "seen")

    def __init__(self, event: str, parse: Callable[[Any], None], on_dropped: OnDropped, seen: set[tuple[str, str]]):
        self.event, self.parse, self.on_dropped, self.seen = event, parse, on_dropped, seen

    def __call__(self, data: Any) -> None:
        try:
            self.parse(data)
        except Exception as exc:  # noqa: BLE001 - whatever the payload did, the gateway session goes on
            log_dropped(self.event, exc, seen=self.seen, stage="did not parse")
            try:
                self.on_dropped(self.event, data, exc)
            except Exception:  # noqa: BLE001 - the fallback must not undo the guard
                log.exception("discord: handling the dropped %s failed", self.event)


def log_dropped(event: str, exc: BaseException, *, seen: set[tuple[str, str]], stage: str) -> None:
    """One line per dropped dispatch; the traceback only the first time a kind of failure shows up, so a burst of
    the same bad payload does not bury the log."""
    kind = (event, type(exc).__name__)
    first = kind not in seen
    seen.add(kind)
    log.warning("discord: dropped a %s dispatch that %s (%s: %s)", event, stage, type(exc).__name__, exc,
                exc_info=exc if first else None)


def guard_parsers(client: discord.Client, *, on_dropped: OnDropped) -> int:
    """Wrap every gateway parser of ``client`` (idempotent); returns how many entries are guarded."""
    parsers: dict[str, Callable[[Any], None]] = client._connection.parsers
    seen: set[tuple[str, str]] = set()
    for event, parse in list(parsers.items()):
        if not isinstance(parse, _Guarded):
            parsers[event] = _Guarded(event, parse, on_dropped, seen)
    return len(parsers)


def is_guarded(client: discord.Client) -> bool:
    parsers = client._connection.parsers
    return bool(parsers) and all(isinstance(p, _Guarded) for p in parsers.values())
