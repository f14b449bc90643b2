"""Pinned messages in the fake Discord: ``PUT``/``DELETE /channels/{channel_id}/messages/pins/{message_id}`` (the
routes discord.py 2.6 calls; https://discord.com/developers/docs/resources/message#pin-message). Pinning needs the
Pin Messages permission: without it Discord answers 403 with code 50013 ("Missing Permissions"); a channel holds
at most 250 pins (code 30003)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from tests.fakes.discord_rest import DiscordApiError, Json, _Route

if TYPE_CHECKING:
    from tests.fakes.discord_api import FakeDiscord
    from tests.fakes.discord_rest import RestApi

MISSING_PERMISSIONS = 50013
MAX_PINS_REACHED = 30003
MAX_PINS = 250


@dataclass
class PinState:
    allowed: bool = True  # the bot has the Pin Messages permission
    pinned: dict[int, list[int]] = field(
        default_factory=dict
    )  # channel id → pinned message ids, oldest first


def pins(fake: FakeDiscord) -> PinState:
    """The fake's pin state (kept on the fake itself, created on first use)."""
    state = getattr(fake, "_pin_state", None)
    if state is None:
        state = PinState()
        fake._pin_state = state  # type: ignore[attr-defined]
    return state


def pin_routes(api: RestApi) -> list[_Route]:
    fake = api.fake

    def target(request: web.Request) -> tuple[int, Json]:
        channel_id = int(request.match_info["channel_id"])
        fake.require_channel(channel_id)
        message = fake.messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel_id):
            raise DiscordApiError(404, 10008, "Unknown Message")
        return channel_id, message

    async def pin(request: web.Request, body: Json) -> web.StreamResponse:
        channel_id, message = target(request)
        state = pins(fake)
        if not state.allowed:
            raise DiscordApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        pinned = state.pinned.setdefault(channel_id, [])
        if int(message["id"]) not in pinned:
            if len(pinned) >= MAX_PINS:
                raise DiscordApiError(400, MAX_PINS_REACHED, "Maximum number of pins reached (250)")
            pinned.append(int(message["id"]))
        message["pinned"] = True
        return web.Response(status=204)

    async def unpin(request: web.Request, body: Json) -> web.StreamResponse:
        channel_id, message = target(request)
        state = pins(fake)
        if not state.allowed:
            raise DiscordApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        if int(message["id"]) in state.pinned.get(channel_id, []):
            state.pinned[channel_id].remove(int(message["id"]))
        message["pinned"] = False
        return web.Response(status=204)

    template = "/channels/{channel_id}/messages/pins/{message_id}"
    return [_Route("PUT", template, "pins", pin), _Route("DELETE", template, "pins", unpin)]
