"""Per-provider response encoders of the fake LLM server: frames of a stream, or one whole JSON answer.

Frame order follows the recorded real streams:
- OpenAI: role chunk, content chunks, finish_reason chunk, [usage chunk with ``choices: []`` when
  ``stream_options.include_usage``], ``data: [DONE]``.
- Anthropic: message_start, content_block_start, ping, content_block_delta..., content_block_stop, message_delta
  (stop_reason, cumulative usage), message_stop. A forced tool streams a tool_use block of input_json_delta pieces.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llm.types import Usage
from tests.fakes import llm_wire as wire
from tests.fakes.llm_cache import InputTokens
from tests.fakes.llm_faults import Fault

if TYPE_CHECKING:
    from tests.fakes.llm_server import ReceivedRequest


@dataclass(slots=True)
class Plan:
    """One answer, decided before the first byte: pieces, finish reason, input token classes, pacing."""

    pieces: list[str]
    finish: str
    tokens: InputTokens
    ttft_s: float
    gap_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def usage(self, output: int) -> Usage:
        t = self.tokens
        return Usage(t.uncached, output, t.cache_read, t.cache_write_5m, t.cache_write_1h)


class Encoder(Protocol):
    def preamble(self) -> list[bytes]: ...
    def piece(self, text: str) -> bytes: ...
    def ending(self, sent: int) -> list[bytes]: ...
    def error(self, fault: Fault) -> bytes: ...
    def malformed(self, kind: str) -> bytes: ...
    def whole(self, text: str) -> dict[str, Any]: ...
    def reported(self, sent: int, *, complete: bool) -> dict[str, Any] | None: ...
    def normalise(self, raw: dict[str, Any]) -> Usage: ...


# Looks like what a proxy in front of the API sends when it fails; not SSE, so decoders skip it.
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n\n"


class OpenAIEncoder:
    def __init__(self, rec: ReceivedRequest, plan: Plan) -> None:
        self.rec, self.plan = rec, plan
        self.id = wire.new_id("chatcmpl-")
        self.created = int(time.time())
        self.include_usage = bool((rec.body.get("stream_options") or {}).get("include_usage"))

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return wire.sse_data(wire.openai_chunk(self.id, self.rec.model, self.created, choices, **extra))

    def _usage(self, sent: int) -> dict[str, Any]:
        t = self.plan.tokens
        return wire.openai_usage(prompt_tokens=t.total, cached_tokens=t.cache_read, completion_tokens=sent)

    def preamble(self) -> list[bytes]:
        return [self._chunk([wire.openai_choice_delta({"role": "assistant", "content": "", "refusal": None})])]

    def piece(self, text: str) -> bytes:
        return self._chunk([wire.openai_choice_delta({"content": text})])

    def ending(self, sent: int) -> list[bytes]:
        frames = [self._chunk([wire.openai_choice_delta({}, self.plan.finish)])]
        if self.include_usage:
            frames.append(self._chunk([], usage=self._usage(sent)))
        return [*frames, wire.sse_data("[DONE]")]

    def error(self, fault: Fault) -> bytes:
        body = wire.openai_error_body(500, error_type=fault.error_type, message=fault.message)
        return wire.sse_data(body)

    def malformed(self, kind: str) -> bytes:
        return _GARBAGE if kind == "garbage" else b'data: {"id":"' + self.id.encode() + b'","object":"chat.comp\n\n'

    def whole(self, text: str) -> dict[str, Any]:
        usage = self._usage(len(self.plan.pieces))
        return wire.openai_completion(self.id, self.rec.model, text=text, finish_reason=self.plan.finish, usage=usage)

    def reported(self, sent: int, *, complete: bool) -> dict[str, Any] | None:
        return self._usage(sent) if complete and self.include_usage else None

    def normalise(self, raw: dict[str, Any]) -> Usage:
        cached = raw["prompt_tokens_details"]["cached_tokens"]
        return Usage(raw["prompt_tokens"] - cached, raw["completion_tokens"], cached)


class AnthropicEncoder:
    def __init__(self, rec: ReceivedRequest, plan: Plan) -> None:
        self.rec, self.plan = rec, plan
        self.id = wire.new_id("msg_")
        self.tool = rec.forced_tool

    def _usage(self, output: int) -> dict[str, Any]:
        t = self.plan.tokens
        return wire.anthropic_usage(input_tokens=t.uncached, cache_read=t.cache_read, write_5m=t.cache_write_5m,
                                    write_1h=t.cache_write_1h, output_tokens=output)

    def _block(self, tool_input: Any) -> dict[str, Any]:
        if self.tool:
            return {"type": "tool_use", "id": wire.new_id("toolu_"), "name": self.tool, "input": tool_input}
        return {"type": "text", "text": tool_input}

    def preamble(self) -> list[bytes]:
        start = wire.anthropic_message(self.id, self.rec.model, content=[], stop_reason=None, usage=self._usage(1))
        frames = [
            wire.sse_event("message_start", {"type": "message_start", "message": start}),
            wire.sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": self._block({} if self.tool else "")}),
            wire.sse_event("ping", {"type": "ping"}),
        ]
        if self.tool:  # real tool_use streams open with an empty partial_json (recorded tool_use fixture)
            frames.append(self.piece(""))
        return frames

    def piece(self, text: str) -> bytes:
        delta = {"type": "input_json_delta", "partial_json": text} if self.tool else {"type": "text_delta",
                                                                                      "text": text}
        return wire.sse_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})

    def ending(self, sent: int) -> list[bytes]:
        usage = {k: v for k, v in self._usage(sent).items()
                 if k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
        return [
            wire.sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            wire.sse_event("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": self.plan.finish, "stop_sequence": None},
                                             "usage": usage}),
            wire.sse_event("message_stop", {"type": "message_stop"}),
        ]

    def error(self, fault: Fault) -> bytes:
        kind = fault.error_type or "overloaded_error"
        return wire.sse_event("error", {"type": "error", "error": {"type": kind, "message": fault.message}})

    def malformed(self, kind: str) -> bytes:
        return _GARBAGE if kind == "garbage" else b'event: content_block_delta\ndata: {"type":"content_block_de\n\n'

    def whole(self, text: str) -> dict[str, Any]:
        if self.tool:
            value = json.loads(text)  # ValueError for a reply that is not JSON: the server answers 500
            if not isinstance(value, dict):
                raise ValueError("a forced-tool reply must be a JSON object")
            block = self._block(value)
        else:
            block = self._block(text)
        return wire.anthropic_message(self.id, self.rec.model, content=[block], stop_reason=self.plan.finish,
                                      usage=self._usage(len(self.plan.pieces)))

    def reported(self, sent: int, *, complete: bool) -> dict[str, Any]:
        return self._usage(sent if complete else 1)

    def normalise(self, raw: dict[str, Any]) -> Usage:
        created = raw.get("cache_creation") or {}
        return Usage(raw["input_tokens"], raw["output_tokens"], raw["cache_read_input_tokens"],
                     created.get("ephemeral_5m_input_tokens", 0), created.get("ephemeral_1h_input_tokens", 0))
