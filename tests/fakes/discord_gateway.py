"""The fake Discord gateway: an aiohttp websocket at /gateway speaking gateway v10 JSON.

Opcodes and the connection lifecycle follow https://discord.com/developers/docs/topics/gateway and
https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway. With `compress=zlib-stream` in the
query, every payload sent goes through one zlib compressor per connection and ends with a Z_SYNC_FLUSH
(suffix 00 00 ff ff), which discord.py's `_ZlibDecompressionContext` waits for before decoding.
"""

from __future__ import annotations

import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import Json

if TYPE_CHECKING:
    from tests.fakes.discord_api import FakeDiscord

# Gateway opcodes
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_DISALLOWED_INTENTS = 4014

# Intent bit of the privileged Message Content intent, https://discord.com/developers/docs/events/gateway#gateway-intents
MESSAGE_CONTENT_INTENT = 1 << 15

ZLIB_SUFFIX = b"\x00\x00\xff\xff"


@dataclass
class GatewaySession:
    """A session survives its websocket so that a RESUME can replay what was missed."""

    session_id: str
    shard: tuple[int, int]
    intents: int
    identify: Json
    seq: int = 0
    sent: list[Json] = field(default_factory=list)
    connection: GatewayConnection | None = None


@dataclass
class GatewayConnection:
    ws: web.WebSocketResponse
    compress: bool
    query: dict[str, str]
    compressor: zlib._Compress = field(default_factory=zlib.compressobj)
    session: GatewaySession | None = None

    async def send(self, payload: Json) -> None:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        if self.compress:
            # One compression context for the whole connection, flushed per payload, exactly as Discord does.
            await self.ws.send_bytes(self.compressor.compress(raw) + self.compressor.flush(zlib.Z_SYNC_FLUSH))
        else:
            await self.ws.send_str(raw.decode())


class Gateway:
    def __init__(self, fake: FakeDiscord, *, heartbeat_interval_ms: int) -> None:
        self.fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[GatewayConnection] = []
        self.received: list[Json] = []  # every payload any client sent, in order
        self.connect_queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        query = dict(request.query)
        self.connect_queries.append(query)
        conn = GatewayConnection(ws=ws, compress=query.get("compress") == "zlib-stream", query=query)
        self.connections.append(conn)
        try:
            await conn.send({"op": OP_HELLO, "s": None, "t": None, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                self.received.append(payload)
                await self._on_payload(conn, payload)
                self.fake.notify()
        finally:
            self.connections.remove(conn)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self.fake.notify()
        return ws

    async def _on_payload(self, conn: GatewayConnection, payload: Json) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            await conn.send({"op": OP_HEARTBEAT_ACK, "s": None, "t": None, "d": None})
        elif op == OP_IDENTIFY:
            await self._identify(conn, data or {})
        elif op == OP_RESUME:
            await self._resume(conn, data or {})
        elif op == OP_REQUEST_GUILD_MEMBERS and conn.session is not None:
            guild_id = int((data or {})["guild_id"])
            chunk = {"guild_id": str(guild_id), "members": self.fake.member_payloads(guild_id),
                     "chunk_index": 0, "chunk_count": 1, "not_found": [], "nonce": (data or {}).get("nonce")}
            await self.send_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _identify(self, conn: GatewayConnection, data: Json) -> None:
        if data.get("token") != self.fake.token:
            await conn.ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        if intents & MESSAGE_CONTENT_INTENT and not self.fake.message_content_enabled:
            await conn.ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        shard_pair = data.get("shard") or [0, 1]
        shard = (int(shard_pair[0]), int(shard_pair[1]))
        session = GatewaySession(session_id=secrets.token_hex(16), shard=shard, intents=intents, identify=data)
        self.sessions[session.session_id] = session
        session.connection, conn.session = conn, session
        guild_ids = [g for g in self.fake.guild_ids() if self._shard_of(g, shard[1]) == shard[0]]
        ready = {
            "v": 10,
            "user": {**self.fake.bot_user, "verified": True, "mfa_enabled": True, "email": None},
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "session_id": session.session_id,
            "resume_gateway_url": str(self.fake.gateway_url),
            "shard": list(shard),
            "application": {"id": str(self.fake.application_id), "flags": self.fake.application_flags},
            "private_channels": [], "presences": [], "relationships": [], "guild_join_requests": [],
            "user_settings": {}, "auth": {}, "session_type": "normal", "geo_ordered_rtc_regions": [],
        }
        await self.send_dispatch(session, "READY", ready)
        for guild_id in guild_ids:
            await self.send_dispatch(session, "GUILD_CREATE", self.fake.guild_create_payload(guild_id))

    async def _resume(self, conn: GatewayConnection, data: Json) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.fake.token:
            await conn.send({"op": OP_INVALID_SESSION, "s": None, "t": None, "d": False})
            return
        session.connection, conn.session = conn, session
        last_seen = int(data.get("seq") or 0)
        for payload in session.sent:
            if payload["s"] > last_seen:
                await conn.send(payload)
        await self.send_dispatch(session, "RESUMED", {})

    async def send_dispatch(self, session: GatewaySession, event: str, data: Json) -> None:
        """Number and send one DISPATCH on `session` (kept for RESUME replay even when it is disconnected)."""
        session.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append(payload)
        if session.connection is not None and not session.connection.ws.closed:
            await session.connection.send(payload)

    @staticmethod
    def _shard_of(guild_id: int, shard_count: int) -> int:
        # https://discord.com/developers/docs/topics/gateway#sharding-sharding-formula
        return (guild_id >> 22) % shard_count

    async def dispatch(self, event: str, data: Json, *, guild_id: int | None) -> int:
        """Send a DISPATCH to every live session that owns `guild_id` (shard 0 for DMs); returns how many."""
        delivered = 0
        for session in list(self.sessions.values()):
            if session.connection is None:
                continue
            shard_id, shard_count = session.shard
            if (self._shard_of(guild_id, shard_count) if guild_id is not None else 0) != shard_id:
                continue
            await self.send_dispatch(session, event, self._as_seen_by(session, event, data))
            delivered += 1
        return delivered

    def _as_seen_by(self, session: GatewaySession, event: str, data: Json) -> Json:
        """Without the Message Content intent Discord blanks content, except mentions of the bot and its own messages."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or session.intents & MESSAGE_CONTENT_INTENT:
            return data
        if not isinstance(data, dict):
            return data  # a malformed dispatch a test injects goes out as it is
        bot_id = str(self.fake.bot_user_id)
        author = data.get("author") if isinstance(data.get("author"), dict) else {}
        mentions = [u for u in data.get("mentions") or [] if isinstance(u, dict)]
        if author.get("id") == bot_id or any(u.get("id") == bot_id for u in mentions):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    async def reconnect_all(self, *, op7: bool) -> None:
        """Ask clients to reconnect (op 7, they RESUME) or drop their sockets (close 4000, they also RESUME)."""
        for conn in list(self.connections):
            if op7:
                await conn.send({"op": OP_RECONNECT, "s": None, "t": None, "d": None})
            else:
                await conn.ws.close(code=4000, message=b"Unknown error.")

    async def close(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"Server shutting down.")
