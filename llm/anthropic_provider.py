"""Anthropic Messages, streamed, with prompt-cache markers on the stable prefix."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anthropic

from llm.batch import BatchAnswer, BatchLine, BatchStatus, BatchUnsupported
from llm.models import capabilities
from llm.provider import (
    DEFAULT_TIMEOUTS,
    FINISH_LENGTH,
    Delta,
    ErrorInfo,
    StructuredSpec,
    Timeouts,
    http_timeout,
    is_self_hosted,
    status_error,
    wire_error,
)
from llm.routes import RouteEntry
from llm.servers import StructuredMode, is_context_overflow
from llm.structured import prompt_instruction
from llm.tokens import count_tokens
from llm.types import Request, Usage


class AnthropicProvider:
    name = "anthropic"
    # A forced tool is Anthropic's structured output on every model; JSON in the prompt is the only fallback.
    default_structured_mode = StructuredMode.TOOL

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        cache_ttl: str = "5m",
        self_hosted: bool | None = None,
    ) -> None:
        # max_retries=0: the router owns the one retry loop (STYLE.md rule 7).
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=http_timeout(timeouts),
        )
        self._cache_control: dict[str, str] = {"type": "ephemeral"}
        if cache_ttl == "1h":
            self._cache_control["ttl"] = "1h"
        self._prefix_tokens: dict[str, int] = {}  # system prompt → token count, counted once per prompt
        self.base_url = (base_url or "").rstrip("/")
        self.self_hosted = is_self_hosted(self.name, base_url) if self_hosted is None else self_hosted

    def _cacheable(self, model: str, system: str, tools: list[dict[str, Any]]) -> bool:
        # Below the model's minimum a marked block is silently not cached (FACTS.md); marking is then pointless,
        # and above it the prefix (tools + system) is what every call of the task repeats.
        key = system + "".join(str(t) for t in tools)
        if key not in self._prefix_tokens:
            if len(self._prefix_tokens) > 256:
                self._prefix_tokens.clear()
            self._prefix_tokens[key] = count_tokens(key)
        return self._prefix_tokens[key] >= capabilities(model).min_cacheable_tokens

    def _params(
        self, entry: RouteEntry, request: Request, structured: StructuredSpec | None
    ) -> dict[str, Any]:
        caps = capabilities(entry.model)
        tools: list[dict[str, Any]] = []
        system = request.system
        if structured is not None and structured.mode is StructuredMode.PROMPT:
            system = f"{system}\n\n{prompt_instruction(structured)}".strip()
            structured = None
        params: dict[str, Any] = {
            "model": entry.model,
            "max_tokens": request.max_tokens or entry.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
        }
        if structured is not None:
            tools = [
                {
                    "name": structured.name,
                    "description": "Record the answer in this exact structure.",
                    "input_schema": structured.json_schema,
                }
            ]
            params["tools"] = tools
            params["tool_choice"] = {"type": "tool", "name": structured.name}
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if self._cacheable(entry.model, system, tools):
                block["cache_control"] = self._cache_control
            params["system"] = [block]
        if caps.temperature and entry.temperature is not None:
            # anthropic>=2 dropped `temperature` from create()'s signature (newer models reject it); the models
            # whose capability says they take it still do, so it travels in the body.
            params["extra_body"] = {"temperature": entry.temperature}
        return params

    async def stream(
        self,
        entry: RouteEntry,
        request: Request,
        *,
        structured: StructuredSpec | None = None,
        streamed: bool = True,  # Anthropic's streams tell their errors: always streamed
    ) -> AsyncGenerator[Delta, None]:
        stream = await self._client.messages.create(**self._params(entry, request, structured))
        yield Delta(accepted=True)  # the SDK returns once the response headers arrived
        usage = Usage()
        try:
            async for event in stream:
                kind = event.type
                if kind == "content_block_delta":
                    d = event.delta
                    if d.type == "text_delta":
                        yield Delta(text=d.text)
                    elif d.type == "input_json_delta":
                        yield Delta(text=d.partial_json)
                elif kind == "message_start":
                    usage = _start_usage(event.message.usage)
                    yield Delta(usage=usage)
                elif kind == "message_delta":
                    # output_tokens in message_delta is cumulative; input figures came with message_start.
                    u = event.usage
                    usage = Usage(
                        input=u.input_tokens if u.input_tokens is not None else usage.input,
                        output=u.output_tokens,
                        cache_read=usage.cache_read,
                        cache_write_5m=usage.cache_write_5m,
                        cache_write_1h=usage.cache_write_1h,
                    )
                    reason = event.delta.stop_reason
                    yield Delta(
                        usage=usage,
                        final_usage=True,
                        finish=FINISH_LENGTH if reason == "max_tokens" else reason,
                    )
        finally:
            await stream.close()

    def classify(self, exc: BaseException) -> ErrorInfo | None:
        if isinstance(exc, anthropic.APITimeoutError):
            return ErrorInfo("timeout", True, message="request timed out")
        if isinstance(exc, anthropic.APIConnectionError):
            return ErrorInfo("connection", True, message="could not reach Anthropic")
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
            err: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
            # A mid-stream `event: error` arrives as APIStatusError carrying the 200 of the stream.
            if status < 400:
                etype = str(err.get("type", "stream"))
                kind = "overloaded" if etype == "overloaded_error" else "stream"
                return ErrorInfo(kind, True, status=status, message=etype)
            message = str(err.get("message", "")) or type(exc).__name__
            if status == 400 and is_context_overflow(message):
                return ErrorInfo("context_length_exceeded", False, status=status, message=message[:400])
            # A retired or unknown model: 404 `not_found_error` whose message names the model ("model: …").
            missing = status == 404 and "model" in message.lower()
            return status_error(status, exc.response.headers, message, model_missing=missing)
        if isinstance(exc, anthropic.APIError):
            return ErrorInfo("stream", True, message=str(exc)[:200])
        return wire_error(exc)

    async def list_models(self) -> list[str]:
        """Model ids the server offers this key (`supportbot doctor`); pages are followed by the SDK."""
        return [m.id async for m in self._client.models.list()]

    # ---- Message Batches (llm/batch.py): the requests in one body, the results as a JSONL stream

    async def submit_batch(self, entry: RouteEntry, lines: list[BatchLine], spec: StructuredSpec | None) -> str:
        requests: list[Any] = []
        for line in lines:
            params = self._params(entry, line.request, spec)
            params.pop("stream", None)
            params.update(params.pop("extra_body", None) or {})  # a batch request's params are the body itself
            requests.append({"custom_id": line.custom_id, "params": params})
        try:
            batch = await self._client.messages.batches.create(requests=requests)
        except anthropic.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):  # a compatible server without the batch endpoints
                raise BatchUnsupported(str(exc)[:200]) from exc
            raise
        return batch.id

    async def batch_status(self, batch_id: str) -> BatchStatus:
        batch = await self._client.messages.batches.retrieve(batch_id)
        if batch.processing_status != "ended":
            return BatchStatus("running")
        counts = batch.request_counts
        if counts.succeeded + counts.errored == 0 and counts.expired:
            return BatchStatus("expired", f"{counts.expired} request(s) expired")
        if counts.succeeded + counts.errored == 0 and counts.canceled:
            return BatchStatus("cancelled", f"{counts.canceled} request(s) cancelled")
        if counts.expired:  # partly done: what was answered is read and recorded, the batch still failed
            return BatchStatus("expired", f"{counts.expired} of {counts.succeeded + counts.errored + counts.expired}"
                               " request(s) expired")  # fmt: skip
        return BatchStatus("ended")

    async def batch_answers(self, batch_id: str) -> list[BatchAnswer]:
        out: list[BatchAnswer] = []
        async for row in await self._client.messages.batches.results(batch_id):
            result = row.result
            if result.type == "succeeded":
                message = result.message
                text = "".join(
                    b.text if b.type == "text" else json.dumps(b.input) if b.type == "tool_use" else ""
                    for b in message.content
                )
                usage = _start_usage(message.usage)
                reason = message.stop_reason
                out.append(BatchAnswer(row.custom_id, text=text, usage=usage,
                                       finish=FINISH_LENGTH if reason == "max_tokens" else reason))  # fmt: skip
            elif result.type == "errored":
                out.append(BatchAnswer(row.custom_id, error=f"{result.error.error.type}: {result.error.error.message}"))
            else:  # canceled, expired: never processed, never billed
                out.append(BatchAnswer(row.custom_id, error=result.type))
        return out

    async def cancel_batch(self, batch_id: str) -> None:
        await self._client.messages.batches.cancel(batch_id)
    async def context_window(self, entry: RouteEntry) -> int | None:
        return None  # Anthropic's API does not say; the model table does

    async def close(self) -> None:
        await self._client.close()


def _start_usage(u: Any) -> Usage:
    # Anthropic's input_tokens EXCLUDES cache reads and writes (FACTS.md); total = input + reads + writes.
    written = u.cache_creation_input_tokens or 0
    split = getattr(u, "cache_creation", None)
    w5 = getattr(split, "ephemeral_5m_input_tokens", None) if split is not None else None
    w1 = getattr(split, "ephemeral_1h_input_tokens", None) if split is not None else None
    if w5 is None and w1 is None:
        w5, w1 = written, 0
    return Usage(
        input=u.input_tokens or 0,
        output=u.output_tokens or 0,
        cache_read=u.cache_read_input_tokens or 0,
        cache_write_5m=w5 or 0,
        cache_write_1h=w1 or 0,
    )
