"""The providers' Batch APIs on the fake model server, in their wire formats (the real SDKs talk to them).

OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``) takes the JSONL of requests, ``POST /v1/batches`` starts
the batch, ``GET /v1/batches/{id}`` says ``validating`` → ``in_progress`` → ``completed`` (or ``failed``,
``expired``, ``cancelled``), and ``GET /v1/files/{output_file_id}/content`` gives one line per request:
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
Anthropic: ``POST /v1/messages/batches`` with ``{"requests": [{"custom_id", "params"}]}``, ``GET …/{id}``
(``processing_status`` ``in_progress`` → ``ended``, ``request_counts``, ``results_url``), and the results JSONL
``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"} | {"type": "expired"}}``.

Each request of a batch is answered by the server's responder, priced by its prompt caches like a normal call, and
only after ``delay_s`` (a batch is never done at once). ``end_next("failed" | "expired" | "completed")`` scripts
how the next batches end; ``error_lines`` makes single requests error inside a finished batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from tests.fakes import llm_wire as wire
from tests.fakes.llm_streams import AnthropicEncoder, OpenAIEncoder

if TYPE_CHECKING:
    from tests.fakes.llm_server import FakeLLMServer, ReceivedRequest

Api = Literal["openai", "anthropic"]
Ending = Literal["completed", "failed", "expired"]


@dataclass
class FakeBatch:
    id: str
    api: Api
    lines: list[dict[str, Any]]  # OpenAI: the JSONL rows; Anthropic: the requests
    created: float
    ready_at: float
    ending: Ending = "completed"
    cancelled: bool = False
    results: list[dict[str, Any]] | None = None  # one row per request, once done
    input_file_id: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def done(self) -> bool:
        return self.results is not None


@dataclass(frozen=True, slots=True)
class _Origin:
    """What the request parser reads of an HTTP request, for a request that came inside a batch."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)


class FakeBatches:
    def __init__(self, server: FakeLLMServer, *, delay_s: float = 0.2) -> None:
        self.server = server
        self.delay_s = delay_s
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        self.answered: list[ReceivedRequest] = []  # every request answered inside a batch
        self.polls = 0
        self.error_lines: set[str] = set()  # custom ids that error inside their batch
        self.poll_errors = 0  # the next this many polls (either API) answer 500, as an overloaded API does
        self._endings: list[Ending] = []

    def end_next(self, ending: Ending) -> None:
        """How the next batch not yet scripted (either API) ends: ``completed``, ``failed`` or ``expired``."""
        self._endings.append(ending)

    def install(self, app: web.Application, *, openai: bool) -> None:
        if openai:
            app.router.add_post("/v1/files", self._upload)
            app.router.add_get("/v1/files/{id}/content", self._file_content)
            app.router.add_post("/v1/batches", self._openai_create)
            app.router.add_get("/v1/batches/{id}", self._openai_get)
            app.router.add_post("/v1/batches/{id}/cancel", self._openai_cancel)
        app.router.add_post("/v1/messages/batches", self._anthropic_create)
        app.router.add_get("/v1/messages/batches/{id}", self._anthropic_get)
        app.router.add_get("/v1/messages/batches/{id}/results", self._anthropic_results)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._anthropic_cancel)

    # ---- OpenAI

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField) or form.get("purpose") != "batch":
            return _openai_error(400, "a batch input file with purpose 'batch' is required")
        data = upload.file.read()
        file_id = wire.new_id("file-")
        self.files[file_id] = data
        return web.json_response({
            "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": upload.filename, "purpose": "batch", "status": "processed",
        })  # fmt: skip

    async def _file_content(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        if data is None:
            return _openai_error(404, "No such File object")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _openai_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = self.files.get(str(body.get("input_file_id")))
        if data is None:
            return _openai_error(400, "input_file_id does not exist")
        if body.get("completion_window") != "24h" or body.get("endpoint") != "/v1/chat/completions":
            return _openai_error(400, "unsupported completion_window or endpoint")
        rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        batch = self._start("openai", rows, wire.new_id("batch_"))
        batch.input_file_id = str(body["input_file_id"])
        return web.json_response(self._openai_view(batch))

    async def _openai_get(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _openai_error(404, "No such batch")
        self.polls += 1
        if self.poll_errors > 0:
            self.poll_errors -= 1
            return _openai_error(500, "The server had an error while processing your request.")
        return web.json_response(self._openai_view(batch))

    async def _openai_cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _openai_error(404, "No such batch")
        batch.cancelled = True
        return web.json_response(self._openai_view(batch))

    def _openai_view(self, b: FakeBatch) -> dict[str, Any]:
        done = b.done
        status = "cancelled" if b.cancelled else (b.ending if done else "in_progress")
        counts = {"total": len(b.lines), "completed": 0, "failed": 0}
        if done and b.results is not None:
            counts["failed"] = sum(1 for r in b.results if r.get("error"))
            counts["completed"] = len(b.results) - counts["failed"]
        errors = None
        if done and b.ending == "failed":
            errors = {"object": "list", "data": [{"code": "invalid_request", "message": "fake: the batch failed",
                                                  "param": None, "line": None}]}  # fmt: skip
        return {
            "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": errors,
            "input_file_id": b.input_file_id, "completion_window": "24h", "status": status,
            "output_file_id": b.output_file_id if done else None, "error_file_id": b.error_file_id if done else None,
            "created_at": int(b.created), "in_progress_at": int(b.created), "expires_at": int(b.created) + 86400,
            "completed_at": int(b.ready_at) if done and b.ending == "completed" else None,
            "failed_at": int(b.ready_at) if done and b.ending == "failed" else None,
            "expired_at": int(b.ready_at) if done and b.ending == "expired" else None,
            "request_counts": counts, "metadata": None,
        }  # fmt: skip

    # ---- Anthropic

    async def _anthropic_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return web.json_response(wire.anthropic_error_body(400, message="requests: at least one"), status=400)
        batch = self._start("anthropic", requests, wire.new_id("msgbatch_"))
        return web.json_response(self._anthropic_view(batch, request))

    async def _anthropic_get(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response(wire.anthropic_error_body(404, message="not found"), status=404)
        self.polls += 1
        if self.poll_errors > 0:
            self.poll_errors -= 1
            return web.json_response(wire.anthropic_error_body(529, message="Overloaded"), status=529)
        return web.json_response(self._anthropic_view(batch, request))

    async def _anthropic_cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response(wire.anthropic_error_body(404, message="not found"), status=404)
        batch.cancelled = True
        return web.json_response(self._anthropic_view(batch, request))

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.results is None:
            return web.json_response(wire.anthropic_error_body(404, message="results not ready"), status=404)
        data = "".join(json.dumps(r) + "\n" for r in batch.results)
        return web.Response(body=data.encode(), content_type="application/binary")

    def _anthropic_view(self, b: FakeBatch, request: web.Request) -> dict[str, Any]:
        counts = {"processing": 0 if b.done else len(b.lines), "succeeded": 0, "errored": 0, "canceled": 0,
                  "expired": 0}  # fmt: skip
        for row in b.results or []:
            kind = row["result"]["type"]
            counts["canceled" if kind == "canceled" else kind] += 1
        base = f"{request.scheme}://{request.host}"
        return {
            "id": b.id, "type": "message_batch", "processing_status": "ended" if b.done else "in_progress",
            "request_counts": counts, "created_at": _iso(b.created), "expires_at": _iso(b.created + 86400),
            "ended_at": _iso(b.ready_at) if b.done else None, "archived_at": None,
            "cancel_initiated_at": None, "results_url": f"{base}/v1/messages/batches/{b.id}/results" if b.done else None,
        }  # fmt: skip

    # ---- processing

    def _start(self, api: Api, lines: list[dict[str, Any]], batch_id: str) -> FakeBatch:
        now = time.time()
        ending = self._endings.pop(0) if self._endings else "completed"
        batch = FakeBatch(batch_id, api, lines, now, now + self.delay_s, ending)
        self.batches[batch_id] = batch
        asyncio.get_running_loop().call_later(self.delay_s, lambda: asyncio.ensure_future(self._finish(batch)))
        return batch

    async def _finish(self, batch: FakeBatch) -> None:
        rows: list[dict[str, Any]] = []
        for line in batch.lines:
            custom_id = str(line.get("custom_id"))
            if batch.ending == "failed":
                if batch.api == "openai":
                    break  # OpenAI fails the batch as a whole (status "failed", no output file)
                rows.append(self._errored(batch.api, custom_id))  # Anthropic has no failed batches, only requests
                continue
            if batch.ending == "expired":
                rows.append(self._expired(batch.api, custom_id))
                continue
            if custom_id in self.error_lines:
                rows.append(self._errored(batch.api, custom_id))
                continue
            params = line.get("body") if batch.api == "openai" else line.get("params")
            rows.append(await self._answer(batch.api, custom_id, params or {}))
        batch.results = rows
        if batch.api == "openai" and rows:
            ok = [r for r in rows if not r.get("error")]
            bad = [r for r in rows if r.get("error")]
            if ok:
                batch.output_file_id = self._file(ok)
            if bad:
                batch.error_file_id = self._file(bad)

    def _file(self, rows: list[dict[str, Any]]) -> str:
        file_id = wire.new_id("file-")
        self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return file_id

    async def _answer(self, api: Api, custom_id: str, params: dict[str, Any]) -> dict[str, Any]:
        from tests.fakes.llm_server import _parse_request

        path = "/v1/chat/completions" if api == "openai" else "/v1/messages"
        rec = _parse_request(_Origin(path), api, {**params, "stream": False})  # type: ignore[arg-type]
        self.answered.append(rec)
        reply = await self.server._ask(rec)
        plan = self.server._plan(rec, reply)
        text = "".join(plan.pieces)
        if api == "openai":
            body = OpenAIEncoder(rec, plan).whole(text)
            response = {"status_code": 200, "request_id": wire.new_id("req_"), "body": body}
            return {"id": wire.new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": None}
        message = AnthropicEncoder(rec, plan).whole(text)
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    @staticmethod
    def _errored(api: Api, custom_id: str) -> dict[str, Any]:
        if api == "openai":
            error = {"message": "fake: this request failed", "type": "server_error", "param": None, "code": None}
            response = {"status_code": 500, "request_id": wire.new_id("req_"), "body": {"error": error}}
            return {"id": wire.new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": None}
        error = {"type": "error", "error": {"type": "api_error", "message": "fake: this request failed"}}
        return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}

    @staticmethod
    def _expired(api: Api, custom_id: str) -> dict[str, Any]:
        if api == "openai":
            error = {"code": "batch_expired", "message": "This request could not be executed before the completion "
                     "window expired."}  # fmt: skip
            return {"id": wire.new_id("batch_req_"), "custom_id": custom_id, "response": None, "error": error}
        return {"custom_id": custom_id, "result": {"type": "expired"}}


def _openai_error(status: int, message: str) -> web.Response:
    return web.json_response(wire.openai_error_body(status, message=message), status=status)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
