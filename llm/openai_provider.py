"""OpenAI Chat Completions (and any OpenAI-compatible server through base_url), streamed."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from llm.models import capabilities
from llm.provider import (
    DEFAULT_TIMEOUTS,
    Delta,
    ErrorInfo,
    StructuredSpec,
    Timeouts,
    http_timeout,
    status_error,
    wire_error,
)
from llm.routes import RouteEntry
from llm.types import Request, Usage


class OpenAIProvider:
    name = "openai"

    def __init__(
        self, *, api_key: str, base_url: str | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        # max_retries=0: the router owns the one retry loop (STYLE.md rule 7).
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=http_timeout(timeouts),
        )

    def _params(
        self, entry: RouteEntry, request: Request, structured: StructuredSpec | None
    ) -> dict[str, Any]:
        caps = capabilities(entry.model)
        messages: list[dict[str, str]] = []
        if request.system:
            # The system prompt leads every request of a task, so OpenAI's automatic prefix cache can hit it.
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        params: dict[str, Any] = {
            "model": entry.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            caps.max_tokens_param: request.max_tokens or entry.max_tokens,
        }
        if caps.temperature and entry.temperature is not None:
            params["temperature"] = entry.temperature
        if structured is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": structured.name, "schema": structured.json_schema, "strict": True},
            }
        return params

    async def stream(
        self, entry: RouteEntry, request: Request, *, structured: StructuredSpec | None = None
    ) -> AsyncGenerator[Delta, None]:
        stream = await self._client.chat.completions.create(**self._params(entry, request, structured))
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield Delta(text=choice.delta.content)
                if chunk.usage is not None:
                    u = chunk.usage
                    details = u.prompt_tokens_details
                    cached = (details.cached_tokens or 0) if details is not None else 0
                    # prompt_tokens INCLUDES cached tokens (FACTS.md): split them so each class is priced once.
                    yield Delta(
                        usage=Usage(
                            input=u.prompt_tokens - cached, output=u.completion_tokens, cache_read=cached
                        ),
                        final_usage=True,
                    )
        finally:
            await stream.close()

    def classify(self, exc: BaseException) -> ErrorInfo | None:
        if isinstance(exc, openai.APITimeoutError):
            return ErrorInfo("timeout", True, message="request timed out")
        if isinstance(exc, openai.APIConnectionError):
            return ErrorInfo("connection", True, message="could not reach OpenAI")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            # A retired or unknown model: OpenAI answers 404 `model_not_found`; vLLM and Ollama a 404 naming it.
            missing = status == 404 and (exc.code == "model_not_found" or "model" in str(exc).lower())
            return status_error(status, exc.response.headers, _short(exc), model_missing=missing)
        if isinstance(exc, openai.APIError):  # e.g. an error object inside the stream, malformed SSE
            return ErrorInfo("stream", True, message=_short(exc))
        return wire_error(exc)

    async def list_models(self) -> list[str]:
        """Model ids the server offers this key (`supportbot doctor`); pages are followed by the SDK."""
        return [m.id async for m in self._client.models.list()]

    async def close(self) -> None:
        await self._client.close()


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
