"""OpenAI Chat Completions (and any OpenAI-compatible server through base_url), streamed.

Self-hosted servers (llama.cpp, vLLM, Ollama, …) speak dialects of it (FACTS.md): this module sends each
structured-output mode the router chose (llm/servers.py), always sends ``max_tokens`` to them (llama.cpp ignores
``max_completion_tokens``), and asks them for their context window where they tell it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx2
import openai

from llm.batch import BatchAnswer, BatchLine, BatchState, BatchStatus, BatchUnsupported
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
    self_hosted_timeouts,
    status_error,
    wire_error,
)
from llm.routes import RouteEntry
from llm.servers import StructuredMode, is_context_overflow
from llm.structured import prompt_instruction
from llm.types import Request, Usage

log = logging.getLogger(__name__)

# Ollama's context when the model's parameters set no num_ctx: 2048 for most of its history (raised in some later
# versions; unverified which). The smaller figure is the safe one: a longer prompt is silently truncated.
OLLAMA_DEFAULT_CONTEXT = 2048
PROBE_TIMEOUT_S = 5.0


class OpenAIProvider:
    name = "openai"
    default_structured_mode = StructuredMode.JSON_SCHEMA

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        self_hosted: bool | None = None,
    ) -> None:
        """``self_hosted``: None decides from the base URL; create_router passes False for a gateway in front of
        OpenAI itself (SUPPORTBOT_BASE_URL_IS_PROVIDER)."""
        self._api_key = api_key
        self.base_url = (base_url or "").rstrip("/")
        self.self_hosted = is_self_hosted(self.name, base_url) if self_hosted is None else self_hosted
        # max_retries=0: the router owns the one retry loop (STYLE.md rule 7).
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=http_timeout(self_hosted_timeouts(timeouts) if self.self_hosted else timeouts),
        )

    def _params(
        self, entry: RouteEntry, request: Request, structured: StructuredSpec | None, streamed: bool
    ) -> dict[str, Any]:
        caps = capabilities(entry.model)
        system = request.system
        if structured is not None and structured.mode is not StructuredMode.JSON_SCHEMA:
            # Without strict decoding the model only knows the structure from the prompt (json_object also
            # requires the word "JSON" in the messages on OpenAI's own API).
            system = f"{system}\n\n{prompt_instruction(structured)}".strip()
        messages: list[dict[str, str]] = []
        if system:
            # The system prompt leads every request of a task, so OpenAI's automatic prefix cache can hit it.
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        # llama.cpp ignores max_completion_tokens and honours max_tokens (FACTS.md); every compatible server
        # takes max_tokens, so self-hosted servers get that whatever the model is called.
        limit_param = "max_tokens" if self.self_hosted else caps.max_tokens_param
        params: dict[str, Any] = {
            "model": entry.model,
            "messages": messages,
            limit_param: request.max_tokens or entry.max_tokens,
        }
        if streamed:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        if caps.temperature and entry.temperature is not None:
            params["temperature"] = entry.temperature
        if structured is not None:
            params.update(_structured_params(structured))
        return params

    async def stream(
        self,
        entry: RouteEntry,
        request: Request,
        *,
        structured: StructuredSpec | None = None,
        streamed: bool = True,
    ) -> AsyncGenerator[Delta, None]:
        params = self._params(entry, request, structured, streamed)
        if not streamed:
            whole = await self._client.chat.completions.create(**params)
            yield Delta(accepted=True)
            choice = whole.choices[0] if whole.choices else None
            text = ""
            if choice is not None:
                text = choice.message.content or ""
                for call in choice.message.tool_calls or []:
                    text += getattr(getattr(call, "function", None), "arguments", "") or ""
            usage = _usage(whole.usage) if whole.usage is not None else None
            yield Delta(text=text, usage=usage, final_usage=usage is not None,
                        finish=_finish(choice.finish_reason if choice else None))
            return
        stream = await self._client.chat.completions.create(**params)
        yield Delta(accepted=True)  # the SDK returns once the response headers arrived
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        yield Delta(text=delta.content)
                    for call in delta.tool_calls or []:
                        if call.function is not None and call.function.arguments:
                            yield Delta(text=call.function.arguments)
                    if choice.finish_reason:
                        yield Delta(finish=_finish(choice.finish_reason))
                if chunk.usage is not None:
                    yield Delta(usage=_usage(chunk.usage), final_usage=True)
        finally:
            await stream.close()

    async def context_window(self, entry: RouteEntry) -> int | None:
        """What a self-hosted server says its context is: llama.cpp ``/props`` (``n_ctx``), vLLM's
        ``max_model_len`` in ``/v1/models``, Ollama's ``/api/show``. None for OpenAI itself or when unsaid."""
        if not self.self_hosted:
            return None
        root = self.base_url.removesuffix("/v1")
        headers = {"authorization": f"Bearer {self._api_key}"}
        async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT_S, headers=headers) as http:
            for probe in (_llama_props, _vllm_models, _ollama_show):
                try:
                    window = await probe(http, root, self.base_url, entry.model)
                except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
                    log.debug("context probe %s failed: %r", probe.__name__, exc)
                    continue
                if window:
                    return window
        return None

    def classify(self, exc: BaseException) -> ErrorInfo | None:
        if isinstance(exc, openai.APITimeoutError):
            return ErrorInfo("timeout", True, message="request timed out")
        if isinstance(exc, openai.APIConnectionError):
            return ErrorInfo("connection", True, message="could not reach OpenAI")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            code = getattr(exc, "code", None)
            if status == 400 and is_context_overflow(str(exc), code if isinstance(code, str) else None):
                return ErrorInfo("context_length_exceeded", False, status=status, message=_short(exc, 400))
            # A retired or unknown model: OpenAI answers 404 `model_not_found`; vLLM and Ollama a 404 naming it.
            missing = status == 404 and (code == "model_not_found" or "model" in str(exc).lower())
            return status_error(status, exc.response.headers, _short(exc), model_missing=missing)
        if isinstance(exc, openai.APIError):  # e.g. an error object inside the stream, malformed SSE
            return ErrorInfo("stream", True, message=_short(exc))
        return wire_error(exc)

    async def list_models(self) -> list[str]:
        """Model ids the server offers this key (`supportbot doctor`); pages are followed by the SDK."""
        return [m.id async for m in self._client.models.list()]

    # ---- the Batch API (llm/batch.py): a JSONL file of chat completion requests, answered in an output file

    async def submit_batch(self, entry: RouteEntry, lines: list[BatchLine], spec: StructuredSpec | None) -> str:
        rows = [
            {"custom_id": line.custom_id, "method": "POST", "url": BATCH_ENDPOINT,
             "body": self._params(entry, line.request, spec, streamed=False)}
            for line in lines
        ]  # fmt: skip
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        try:
            uploaded = await self._client.files.create(
                file=("batch.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await self._client.batches.create(
                completion_window="24h", endpoint=BATCH_ENDPOINT, input_file_id=uploaded.id
            )
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):  # a compatible server without the Files/Batch endpoints
                raise BatchUnsupported(_short(exc)) from exc
            raise
        return batch.id

    async def batch_status(self, batch_id: str) -> BatchStatus:
        batch = await self._client.batches.retrieve(batch_id)
        if batch.status in ("validating", "in_progress", "finalizing", "cancelling"):
            return BatchStatus("running")
        if batch.status == "completed":
            return BatchStatus("ended")
        errors = batch.errors.data if batch.errors is not None and batch.errors.data else []
        detail = "; ".join(f"{e.code}: {e.message}" for e in errors[:3])
        return BatchStatus(_BATCH_STATES.get(batch.status, "failed"), detail)

    async def batch_answers(self, batch_id: str) -> list[BatchAnswer]:
        """The output file's answers and the error file's failures (an expired batch has both, partly)."""
        batch = await self._client.batches.retrieve(batch_id)
        out: list[BatchAnswer] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._client.files.content(file_id)
            for raw in content.text.splitlines():
                if raw.strip():
                    out.append(_batch_answer(json.loads(raw)))
        return out

    async def cancel_batch(self, batch_id: str) -> None:
        await self._client.batches.cancel(batch_id)

    async def close(self) -> None:
        await self._client.close()


BATCH_ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
_BATCH_STATES: dict[str, BatchState] = {"failed": "failed", "expired": "expired", "cancelled": "cancelled"}


def _batch_answer(row: dict[str, Any]) -> BatchAnswer:
    """One line of a batch's output or error file: ``{custom_id, response: {status_code, body}, error}``."""
    custom_id = str(row.get("custom_id", ""))
    response = row.get("response") or {}
    body = response.get("body") or {}
    error = row.get("error") or (body.get("error") if isinstance(body, dict) else None)
    status = response.get("status_code", 0)
    usage = None
    if isinstance(body, dict) and isinstance(body.get("usage"), dict):
        u = body["usage"]
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        # prompt_tokens INCLUDES cached tokens (FACTS.md), as in a streamed answer.
        usage = Usage(input=u.get("prompt_tokens", 0) - cached, output=u.get("completion_tokens", 0),
                      cache_read=cached)  # fmt: skip
    if error or status != 200:
        what = error.get("message") or error.get("code") if isinstance(error, dict) else f"HTTP {status}"
        return BatchAnswer(custom_id, usage=usage, error=str(what or "failed"))
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    for call in message.get("tool_calls") or []:
        text += (call.get("function") or {}).get("arguments") or ""
    return BatchAnswer(custom_id, text=text, usage=usage, finish=_finish(choice.get("finish_reason")))


def _short(exc: BaseException, limit: int = 200) -> str:
    return str(exc).splitlines()[0][:limit] if str(exc) else type(exc).__name__


def _usage(u: Any) -> Usage:
    details = u.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    # prompt_tokens INCLUDES cached tokens (FACTS.md): split them so each class is priced once.
    return Usage(input=u.prompt_tokens - cached, output=u.completion_tokens, cache_read=cached)


def _finish(reason: str | None) -> str | None:
    return FINISH_LENGTH if reason == "length" else reason


def _structured_params(spec: StructuredSpec) -> dict[str, Any]:
    if spec.mode is StructuredMode.JSON_SCHEMA:
        schema = {"name": spec.name, "schema": spec.json_schema, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if spec.mode is StructuredMode.JSON_OBJECT:
        # llama.cpp (and llama-cpp-python) compile the attached schema into a grammar; OpenAI ignores it.
        return {"response_format": {"type": "json_object", "schema": spec.json_schema}}
    if spec.mode is StructuredMode.TOOL:
        function = {"name": spec.name, "description": "Record the answer.", "parameters": spec.json_schema}
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": spec.name}},
        }
    return {}  # PROMPT: the instruction is in the system prompt


async def _llama_props(http: httpx2.AsyncClient, root: str, base: str, model: str) -> int | None:
    resp = await http.get(f"{root}/props")
    resp.raise_for_status()
    doc = resp.json()
    settings = doc.get("default_generation_settings") or {}
    value = settings.get("n_ctx") or doc.get("n_ctx")
    return int(value) if value else None


async def _vllm_models(http: httpx2.AsyncClient, root: str, base: str, model: str) -> int | None:
    resp = await http.get(f"{base}/models")
    resp.raise_for_status()
    rows = resp.json().get("data") or []
    for row in rows:
        if row.get("id") == model or row.get("root") == model or len(rows) == 1:
            value = row.get("max_model_len") or (row.get("meta") or {}).get("n_ctx_train")
            if value:
                return int(value)
    return None


async def _ollama_show(http: httpx2.AsyncClient, root: str, base: str, model: str) -> int | None:
    resp = await http.post(f"{root}/api/show", json={"model": model})
    resp.raise_for_status()
    doc = resp.json()
    for line in str(doc.get("parameters") or "").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "num_ctx":
            return int(words[1])
    trained = next(
        (v for k, v in (doc.get("model_info") or {}).items() if k.endswith(".context_length")), None
    )
    # Ollama runs a model with its own default context unless num_ctx says otherwise, whatever it was trained on.
    return min(int(trained), OLLAMA_DEFAULT_CONTEXT) if trained else OLLAMA_DEFAULT_CONTEXT if doc else None
