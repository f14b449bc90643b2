"""The Socket Mode side of the fake Slack: the WebSocket that `apps.connections.open` hands out.

Shapes follow Slack's Socket Mode protocol (https://docs.slack.dev/apis/events-api/using-socket-mode):
the server greets with {"type": "hello"}, pushes envelopes {"envelope_id", "type", "payload",
"accepts_response_payload", ...}, and the app acks each with {"envelope_id", "payload"?}.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.slack_records import SocketAck

SOCKET_PATH = "/socket-mode/link"
# How long the waiting helpers wait before failing the test instead of hanging it.
WAIT_LIMIT_SECONDS = 5.0


class SocketModeHub:
    """Serves Socket Mode connections, pushes envelopes to them and records the acks."""

    def __init__(self, *, app_id: str) -> None:
        self.app_id = app_id
        self.acks: list[SocketAck] = []
        self.unparsed: list[str] = []
        self._connections: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._ack_arrived = asyncio.Condition()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def wait_connected(self) -> None:
        await asyncio.wait_for(self._connected.wait(), WAIT_LIMIT_SECONDS)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # autoping answers slack_sdk's "sdk-ping-pong:<t>" pings with pongs carrying the same data.
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._connections.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._connections),
                "debug_info": {"host": "fake-applink", "approximate_connection_time": 3600},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._record_ack(msg.data)
        finally:
            self._connections.remove(ws)
            if not self._connections:
                self._connected.clear()
        return ws

    async def _record_ack(self, data: str) -> None:
        try:
            body = json.loads(data)
        except ValueError:
            self.unparsed.append(data)
            return
        if not isinstance(body, dict) or "envelope_id" not in body:
            self.unparsed.append(data)
            return
        async with self._ack_arrived:
            self.acks.append(
                SocketAck(envelope_id=body["envelope_id"], payload=body.get("payload"), at=time.monotonic())
            )
            self._ack_arrived.notify_all()

    async def push(
        self,
        *,
        type: str,
        payload: dict[str, Any],
        accepts_response_payload: bool,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        envelope_id: str | None = None,
    ) -> str:
        """Send one envelope to the newest connection; returns its envelope_id."""
        if not self._connections:
            raise RuntimeError("no Socket Mode connection: call wait_connected() first")
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason or ""
        await self._connections[-1].send_json(envelope)
        return str(envelope["envelope_id"])

    async def wait_for_ack(self, envelope_id: str) -> SocketAck:
        def find() -> SocketAck | None:
            return next((a for a in self.acks if a.envelope_id == envelope_id), None)

        async with self._ack_arrived:
            await asyncio.wait_for(self._ack_arrived.wait_for(lambda: find() is not None), WAIT_LIMIT_SECONDS)
        ack = find()
        assert ack is not None
        return ack

    async def send_disconnect(self, *, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours."""
        for ws in list(self._connections):
            await ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
            )

    async def close_all(self) -> None:
        for ws in list(self._connections):
            await ws.close()
