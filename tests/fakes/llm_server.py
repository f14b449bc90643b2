"""A fake OpenAI + Anthropic server on 127.0.0.1 that the real SDKs talk to over a real socket.

    async with FakeLLMServer() as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x")
        client = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="x")

It speaks ``POST /v1/chat/completions``, ``POST /v1/messages`` and ``GET /v1/models``, streamed or not, and both
Batch APIs (llm_batches.py), in the wire format of the real services (see llm_wire.py), simulates prompt caching
(llm_cache.py), paces output, and plays scripted faults. ``profile=`` makes its OpenAI API play a self-hosted server instead (llama.cpp, vLLM,
Ollama: llm_profiles.py), with their endpoints (``/props``, ``/api/show``) and habits.
Every request lands in ``server.received``; every response's usage in ``server.served``.

Standalone: ``python -m tests.fakes.llm_server --port 8089`` prints the two base URLs and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from llm.types import Usage
from tests.fakes import llm_wire as wire
from tests.fakes.llm_batches import FakeBatches
from tests.fakes.llm_cache import AnthropicPromptCache, OpenAIPromptCache
from tests.fakes.llm_faults import Fault, Replay
from tests.fakes.llm_models import default_catalogue, models_page, retired_model_body
from tests.fakes.llm_profiles import (
    LLAMA_CPP,
    LLAMA_CPP_PYTHON,
    LLAMA_CPP_QUEUEING,
    OLLAMA,
    OPENAI,
    VLLM,
    ServerProfile,
    context_error_body,
    models_body,
    props_body,
    show_body,
)
from tests.fakes.llm_streams import AnthropicEncoder, Encoder, OpenAIEncoder, Plan

__all__ = [
    "LLAMA_CPP", "LLAMA_CPP_PYTHON", "LLAMA_CPP_QUEUEING", "OLLAMA", "OPENAI", "VLLM", "FakeLLMServer", "FakeReply", "Fault", "ReceivedRequest",
    "ServedResponse", "ServerProfile", "default_responder",
]

Api = Literal["openai", "anthropic"]
ANTHROPIC_MIN_CACHEABLE = 1024  # Anthropic docs: minimum cacheable prompt for Sonnet/Opus models


@dataclass(frozen=True, slots=True)
class FakeReply:
    """What the fake model answers. For structured requests ``text`` is the JSON document (for an Anthropic forced
    tool it becomes the tool_use ``input``, streamed as ``input_json_delta`` pieces).

    ``finish_reason`` overrides the natural one (OpenAI "stop"/"length", Anthropic "end_turn"/"max_tokens"/
    "tool_use"); ``ttft_s`` and ``tokens_per_s`` override the server's pacing for this reply."""

    text: str
    finish_reason: str | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    api: Api
    path: str
    model: str
    system: str  # OpenAI: system/developer messages joined; Anthropic: the system text
    messages: list[dict[str, Any]]  # raw, without OpenAI's system/developer messages
    body: dict[str, Any]  # the raw JSON
    headers: dict[str, str]  # names lower-cased
    stream: bool
    structured: bool  # json_schema/json_object response_format, a forced tool, or output_config json_schema
    schema: dict[str, Any] | None
    schema_name: str | None  # OpenAI json_schema name, or the forced Anthropic tool's name
    forced_tool: str | None  # Anthropic tool_choice {"type": "tool", "name": ...}: the answer is a tool_use block
    at: float  # time.monotonic() on arrival

    @property
    def user_text(self) -> str:
        """Text of the last user message (what a default answer is derived from)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return wire.content_text(message.get("content"))
        return ""


@dataclass(frozen=True, slots=True)
class ServedResponse:
    """One response as the server sent it.

    ``reported`` is the usage the client could read off the wire, normalised like ``llm.types.Usage`` (input
    excludes cache reads/writes): None for an OpenAI stream without include_usage or cut before its usage chunk;
    for an Anthropic stream cut mid-way, message_start's figures (output_tokens 1). ``billed`` is what the provider
    would charge: full input classes plus the output pieces actually generated."""

    request: ReceivedRequest
    status: int
    outcome: Literal["complete", "interrupted", "error", "replay", "cut", "overflow"]
    text: str = ""  # text (or tool JSON) actually sent
    reported: Usage | None = None
    billed: Usage | None = None
    raw_usage: dict[str, Any] | None = None  # last usage object sent on the wire, verbatim


Responder = Callable[[ReceivedRequest], "FakeReply | str | Awaitable[FakeReply | str]"]


def default_responder(request: ReceivedRequest) -> FakeReply:
    """Deterministic: ~60 pieces derived from the input; for structured requests a small instance of the schema."""
    if request.structured:
        return FakeReply(json.dumps(wire.example_for_schema(request.schema)) if request.schema else "{}")
    words = re.findall(r"[^\W\d_]{3,}", request.user_text or request.system) or ["nothing"]
    return FakeReply("Summary: " + " ".join(words[i % len(words)] for i in range(58)) + ".")


class FakeLLMServer:
    def __init__(
        self,
        *,
        port: int = 0,
        responder: Responder | None = None,
        ttft_s: float = 0.0,
        tokens_per_s: float | None = None,
        anthropic_min_cacheable: int = ANTHROPIC_MIN_CACHEABLE,
        openai_min_cacheable: int = 1024,
        profile: ServerProfile = OPENAI,
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s  # None or 0: no pacing between pieces
        self.received: list[ReceivedRequest] = []
        self.served: list[ServedResponse] = []
        self.anthropic_cache = AnthropicPromptCache(min_tokens=anthropic_min_cacheable)
        self.openai_cache = OpenAIPromptCache(min_tokens=openai_min_cacheable)
        self._script: list[Fault | Replay] = []
        self.catalogue = default_catalogue()  # what GET /v1/models lists, per API
        self.retired: set[str] = set()  # models that answer 404 "not found" (and are not listed)
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.profile = profile  # which server the OpenAI API plays (tests/fakes/llm_profiles.py)
        self._running: set[asyncio.Event] = set()  # cut signals of the OpenAI streams in progress
        self._model_lock = asyncio.Lock()  # one stream at a time, for profiles that queue
        self.truncated_prompts = 0  # prompts an Ollama-style server cut to its context
        # Batch APIs (llm_batches.py): Anthropic's always, OpenAI's only when playing OpenAI itself.
        self.batches = FakeBatches(self)

    # ------------------------------------------------------------ lifecycle and knobs

    async def start(self) -> FakeLLMServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/v1/models", self._models)
        self.batches.install(app, openai=self.profile is OPENAI)
        if self.profile.props:
            app.router.add_get("/props", self._props)
        if self.profile.ollama_show:
            app.router.add_post("/api/show", self._show)
        # Hanging handlers are released by `_closing`; the timeout only bounds a stop() during a long stall.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLLMServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def anthropic_min_cacheable(self) -> int:
        return self.anthropic_cache.min_tokens

    @anthropic_min_cacheable.setter
    def anthropic_min_cacheable(self, value: int) -> None:
        self.anthropic_cache.min_tokens = value

    def enqueue_fault(self, fault: Fault) -> None:
        """The next request (of ``fault.api``, or of either API) suffers this fault; one fault per request."""
        self._script.append(fault)

    def replay_next(self, body: bytes, *, api: Api | None = None, status: int = 200,
                    content_type: str = "text/event-stream; charset=utf-8") -> None:
        """The next request (of ``api``) gets ``body`` verbatim: recorded streams through the real SDKs."""
        self._script.append(Replay(body, api=api, status=status, content_type=content_type))

    @property
    def pending(self) -> int:
        """Faults and replays not consumed yet."""
        return len(self._script)

    # ------------------------------------------------------------ request handling

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        if self.profile.cuts_on_second_request:  # llama.cpp: the next request stops the running stream
            for cut in self._running:
                cut.set()
        return await self._handle(request, "openai")

    async def _models(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        if self.profile is not OPENAI:  # a self-hosted server lists what it serves, in its own shape
            return web.json_response(models_body(self.profile, int(time.time())))
        ids = [m for m in self.catalogue[api] if m not in self.retired]
        return self._json(api, 200, models_page(api, ids))

    async def _props(self, request: web.Request) -> web.Response:
        return web.json_response(props_body(self.profile))

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(show_body(self.profile, str(body.get("model") or body.get("name") or "")))

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        try:
            return await self._answer(request, api)
        except ConnectionResetError:  # stopped during a stall (or the client left): no response to finish
            _drop(request)
            return web.Response()

    async def _answer(self, request: web.Request, api: Api) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._json(api, 400, error_body(api, 400, message="body is not JSON"))
        rec = _parse_request(request, api, body)
        self.received.append(rec)
        if rec.model in self.retired:
            self.served.append(ServedResponse(rec, 404, "error"))
            return self._json(api, 404, retired_model_body(api, rec.model))
        item = next((s for s in self._script if s.api in (None, api)), None)
        if item is not None:
            self._script.remove(item)
        if isinstance(item, Replay):
            self.served.append(ServedResponse(rec, item.status, "replay"))
            return web.Response(status=item.status, body=item.body, content_type=None,
                                headers={"content-type": item.content_type, **_ids(api)})
        fault = item
        if fault is not None and fault.kind == "stall" and fault.before_headers:
            await self._pause(fault)
        if fault is not None and (fault.kind == "http_error" or (fault.kind == "stream_error" and not rec.stream)):
            status = fault.status or (529 if api == "anthropic" else 500)
            self.served.append(ServedResponse(rec, status, "error"))
            body_out = error_body(api, status, error_type=fault.error_type, message=fault.message)
            return self._json(api, status, body_out, dict(fault.headers))
        if api == "openai" and self.profile is not OPENAI:
            refused = self._dialect(rec)
            if isinstance(refused, web.Response):
                return refused
            rec = refused
        reply = await self._ask(rec)
        plan = self._plan(rec, reply)
        encoder: Encoder = (OpenAIEncoder if api == "openai" else AnthropicEncoder)(rec, plan)
        if not rec.stream:
            return await self._complete(request, rec, plan, encoder, fault)
        return await self._stream(request, rec, plan, encoder, fault)

    def _dialect(self, rec: ReceivedRequest) -> ReceivedRequest | web.Response:
        """What a self-hosted server's profile does before answering: refuse a response format, overflow its
        context (an error, an empty stream, or a silently truncated prompt)."""
        profile = self.profile
        fmt = (rec.body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and profile.json_schema_status:
            self.served.append(ServedResponse(rec, profile.json_schema_status, "error"))
            # llama-cpp-python 0.3.36's request model has no json_schema variant; its error handler turns the
            # validation error into a 500 (measured against the real server).
            message = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                       "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}")
            body = {"error": {"message": message, "type": "internal_server_error", "param": None, "code": None}}
            return self._json("openai", profile.json_schema_status, body)
        prompt = profile.prompt_tokens(wire.count_tokens(wire.openai_prompt(rec.body)))
        answer = int(self._limit(rec) or 0)
        if not profile.overflows(prompt, answer):
            return rec
        window = profile.context_window or 0
        if profile.overflow == "truncate":
            self.truncated_prompts += 1
            keep = max(1, len(rec.user_text) * window // max(prompt, 1) // 2)
            messages = [*rec.messages[:-1], {"role": "user", "content": rec.user_text[-keep:]}]
            return ReceivedRequest(**{**{f: getattr(rec, f) for f in rec.__dataclass_fields__}, "messages": messages})
        if profile.overflow == "empty_stream" and rec.stream:
            self.served.append(ServedResponse(rec, 200, "overflow"))
            return web.Response(status=200, body=b"", headers={"content-type": "text/event-stream; charset=utf-8"})
        self.served.append(ServedResponse(rec, 400, "overflow"))
        return self._json("openai", 400, context_error_body(window, prompt, answer))

    def _limit(self, rec: ReceivedRequest) -> int | None:
        body = rec.body
        if rec.api == "openai" and not self.profile.honours_max_completion_tokens:
            limit = body.get("max_tokens")
        else:
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return limit if isinstance(limit, int) else None

    async def _ask(self, rec: ReceivedRequest) -> FakeReply:
        answer = self.responder(rec)
        if inspect.isawaitable(answer):
            answer = await answer
        return FakeReply(answer) if isinstance(answer, str) else answer

    def _plan(self, rec: ReceivedRequest, reply: FakeReply) -> Plan:
        body = rec.body
        limit = self._limit(rec)
        if rec.api == "openai":
            tokens = self.openai_cache.account(rec.model, wire.openai_prompt(body))
            window = self.profile.context_window
            if window is not None and not self.profile.answer_counts:  # llama.cpp clips the answer to fit
                room = window - self.profile.prompt_tokens(tokens.total)
                limit = room if limit is None else min(limit, room)
        else:
            tokens = self.anthropic_cache.account(rec.model, wire.anthropic_blocks(body))
        pieces = wire.split_pieces(reply.text)
        cut = isinstance(limit, int) and len(pieces) > limit
        if cut:
            pieces = pieces[:limit]
        if rec.api == "openai":
            natural = "length" if cut else "stop"
        else:
            natural = "max_tokens" if cut else ("tool_use" if rec.forced_tool else "end_turn")
        rate = reply.tokens_per_s if reply.tokens_per_s is not None else self.tokens_per_s
        return Plan(
            pieces=pieces,
            finish=reply.finish_reason or natural,
            tokens=tokens,
            ttft_s=reply.ttft_s if reply.ttft_s is not None else self.ttft_s,
            gap_s=1.0 / rate if rate else 0.0,
        )

    async def _complete(self, request: web.Request, rec: ReceivedRequest, plan: Plan, encoder: Encoder,
                        fault: Fault | None) -> web.StreamResponse:
        text = "".join(plan.pieces)
        if fault is not None and fault.kind == "stall":
            await self._pause(fault)
        await self._sleep(plan.ttft_s + plan.gap_s * len(plan.pieces))
        billed = plan.usage(len(plan.pieces))
        if fault is not None and fault.kind == "disconnect":
            self.served.append(ServedResponse(rec, 200, "interrupted", "", None, billed))
            _drop(request)
            return web.Response(status=200)  # never reaches the client: the socket is gone
        try:
            payload = encoder.whole(text)
        except ValueError as exc:  # a forced-tool reply that is not a JSON object: a broken test, say so
            return self._json(rec.api, 500, error_body(rec.api, 500, message=f"fake: {exc}"))
        if fault is not None and fault.kind == "malformed":  # the client cannot read the usage it was sent
            self.served.append(ServedResponse(rec, 200, "complete", text, None, billed, payload["usage"]))
            return web.Response(status=200, body=json.dumps(payload)[:-7].encode(),
                                headers={"content-type": "application/json", **_ids(rec.api)})
        self.served.append(ServedResponse(rec, 200, "complete", text, billed, billed, payload["usage"]))
        return self._json(rec.api, 200, payload)

    async def _stream(self, request: web.Request, rec: ReceivedRequest, plan: Plan, encoder: Encoder,
                      fault: Fault | None) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                     **_ids(rec.api)},
        )
        sent: list[str] = []
        outcome: Literal["complete", "interrupted", "cut"] = "interrupted"
        cut = asyncio.Event()
        if rec.api == "openai":
            if not self.profile.streamed_usage:
                encoder.include_usage = False  # type: ignore[attr-defined]  # llama.cpp sends none, asked or not
            if self.profile.cuts_on_second_request:
                self._running.add(cut)
        queued = rec.api == "openai" and self.profile.one_at_a_time
        holding = False
        try:
            await resp.prepare(request)
            if queued:
                await self._model_lock.acquire()
                holding = True
            for frame in encoder.preamble():
                await resp.write(frame)
            await self._sleep(plan.ttft_s)
            first_at = time.monotonic()  # pieces follow on a fixed schedule: a busy machine must not slow the model
            for i, piece in enumerate([*plan.pieces, None]):
                if cut.is_set() and piece is not None:
                    # llama-cpp-python (server/app.py get_event_publisher): after a chunk, when another request
                    # waits, it sends [DONE] and stops — no finish_reason, no usage.
                    await resp.write(wire.sse_data("[DONE]"))
                    await resp.write_eof()
                    outcome = "cut"
                    return resp
                if fault is not None and min(fault.after_pieces, len(plan.pieces)) == i:
                    if fault.kind == "stall" and not fault.before_headers:
                        await self._pause(fault)
                    elif fault.kind == "disconnect":
                        _drop(request)
                        return resp
                    elif fault.kind == "stream_error":
                        await resp.write(encoder.error(fault))
                        await resp.write_eof()
                        return resp
                    elif fault.kind == "malformed":
                        await resp.write(encoder.malformed(fault.malformed))
                if piece is None:
                    break
                if i:
                    await self._sleep(first_at + i * plan.gap_s - time.monotonic())
                await resp.write(encoder.piece(piece))
                sent.append(piece)
            for frame in encoder.ending(len(sent)):
                await resp.write(frame)
            await resp.write_eof()
            outcome = "complete"
            return resp
        except ConnectionError:  # the client went away, or the server stops during a stall
            _drop(request)
            return resp
        finally:
            if holding:
                self._model_lock.release()
            self._running.discard(cut)
            raw = encoder.reported(len(sent), complete=outcome == "complete")
            reported = encoder.normalise(raw) if raw is not None else None
            self.served.append(ServedResponse(
                rec, 200, outcome, "".join(sent), reported, plan.usage(len(sent)), raw))

    # ------------------------------------------------------------ helpers

    async def _pause(self, fault: Fault) -> None:
        """Stall ``stall_s`` seconds; with ``hang``, until the server stops (then the connection is dropped)."""
        try:
            await asyncio.wait_for(self._closing.wait(), None if fault.hang else fault.stall_s)
        except TimeoutError:
            return
        raise ConnectionResetError("fake server stopping")  # ends the response wherever it was

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self._pause(Fault(kind="stall", stall_s=seconds))

    def _json(self, api: Api, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> web.Response:
        extra = dict(headers or {})
        if api == "anthropic" and (status == 429 or status >= 500):
            extra.setdefault("x-should-retry", "true")  # real Anthropic 429s carry it (recorded cassette)
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json",
                            headers={**_ids(api), **extra})


def error_body(api: Api, status: int, *, error_type: str | None = None, message: str = "") -> dict[str, Any]:
    build = wire.openai_error_body if api == "openai" else wire.anthropic_error_body
    return build(status, error_type=error_type, message=message)


def _ids(api: Api) -> dict[str, str]:
    if api == "openai":
        return {"x-request-id": wire.new_id("req_"), "openai-version": "2020-10-01", "openai-processing-ms": "1"}
    return {"request-id": wire.new_id("req_")}


def _drop(request: web.Request) -> None:
    """Close the socket abruptly: no terminating chunk, so the client sees an incomplete body."""
    if request.transport is not None:
        request.transport.abort()


def _parse_request(request: web.Request, api: Api, body: dict[str, Any]) -> ReceivedRequest:
    messages = list(body.get("messages") or [])
    schema: dict[str, Any] | None = None
    name: str | None = None
    forced: str | None = None
    structured = False
    if api == "openai":
        system = "\n".join(wire.content_text(m.get("content")) for m in messages
                           if m.get("role") in ("system", "developer"))
        messages = [m for m in messages if m.get("role") not in ("system", "developer")]
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_schema", "json_object"):
            structured = True
            js = fmt.get("json_schema") or {}
            # json_object may carry a schema of its own (llama.cpp compiles it into a grammar)
            schema, name = js.get("schema") or fmt.get("schema"), js.get("name")
    else:
        system = wire.content_text(body.get("system"))
        choice = body.get("tool_choice") or {}
        fmt = (body.get("output_config") or {}).get("format") or {}
        if choice.get("type") == "tool":
            structured, forced = True, choice.get("name")
            name = forced
            tool: dict[str, Any] = next((t for t in body.get("tools") or [] if t.get("name") == forced), {})
            schema = tool.get("input_schema")
        elif fmt.get("type") == "json_schema":
            structured, schema = True, fmt.get("schema")
    return ReceivedRequest(
        api=api, path=request.path, model=str(body.get("model", "")), system=system, messages=messages,
        body=body, headers={k.lower(): v for k, v in request.headers.items()}, stream=bool(body.get("stream")), structured=structured,
        schema=schema, schema_name=name, forced_tool=forced, at=time.monotonic(),
    )


async def _serve_forever(port: int) -> None:
    async with FakeLLMServer(port=port) as server:
        print(f"OPENAI_BASE_URL={server.openai_base_url}")
        print(f"ANTHROPIC_BASE_URL={server.anthropic_base_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic server on 127.0.0.1 for demos and tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    try:
        asyncio.run(_serve_forever(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
