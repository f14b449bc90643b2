"""Wire formats of the fake LLM server: token estimates, request flattening, response payloads, error bodies.

Shapes follow recorded real traffic (tests/fixtures/openai/*.sse, tests/fixtures/anthropic/*.sse) and the SDKs'
own types (openai ``CompletionUsage``, anthropic ``Usage``); nothing here talks to a socket.

Token counting (what the fake reports as usage) is deliberately simple and deterministic:
- input text: tiktoken ``o200k_base`` when ``TIKTOKEN_CACHE_DIR`` holds that encoding (never downloads), otherwise
  ``ceil(len(text) / 4)``;
- output: one token per streamed piece (``split_pieces``), so a reply's usage equals what a client can count.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# tiktoken names its cache files by the sha1 of the encoding's download URL (tiktoken/load.py read_file_cached).
_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"

# A streamed piece: optional leading whitespace plus at most 8 non-space characters, so long words and JSON
# without spaces still arrive in several pieces (real providers stream ~1 token, 3-4 characters, per delta).
_PIECE = re.compile(r"\s*\S{1,8}|\s+$")


@lru_cache(maxsize=1)
def _encoding() -> Any:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if not cache_dir:
        return None
    if not os.path.exists(os.path.join(cache_dir, hashlib.sha1(_O200K_URL.encode()).hexdigest())):
        return None  # tiktoken would try to download it; the fake must work offline
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # a corrupt cache must not break the fake: fall back to the estimate
        return None


def count_tokens(text: str) -> int:
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text) / 4)


def split_pieces(text: str) -> list[str]:
    """Split text into stream pieces whose concatenation is exactly ``text``."""
    pieces = _PIECE.findall(text)
    assert "".join(pieces) == text
    return pieces


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


# ---------------------------------------------------------------- requests, flattened for counting and caching


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of blocks/parts (text kept, others as JSON)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(json.dumps(block, sort_keys=True))
        return "".join(parts)
    return "" if content is None else json.dumps(content, sort_keys=True)


def openai_prompt(body: dict[str, Any]) -> str:
    """The prompt as one string, in the order OpenAI's prefix cache sees it: tools and schema, then messages."""
    head = ""
    if body.get("tools"):
        head += json.dumps(body["tools"], sort_keys=True)
    if isinstance(body.get("response_format"), dict):
        head += json.dumps(body["response_format"], sort_keys=True)
    return head + "".join(
        f"<|{m.get('role', '')}|>{content_text(m.get('content'))}<|end|>" for m in body.get("messages", [])
    )


@dataclass(frozen=True, slots=True)
class Block:
    """One cacheable unit of an Anthropic request (a tool, a system block or a message content block)."""

    text: str
    cache_control: dict[str, Any] | None


def anthropic_blocks(body: dict[str, Any]) -> list[Block]:
    """Anthropic's cache prefix order: tools, then system, then messages (docs: prompt caching)."""
    blocks = [Block(json.dumps(t, sort_keys=True), t.get("cache_control")) for t in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        blocks.append(Block(system, None))
    elif isinstance(system, list):
        blocks += [Block(content_text([b]), b.get("cache_control")) for b in system]
    for message in body.get("messages", []):
        marker = f"\n\n{message.get('role', '')}: "
        content = message.get("content")
        if isinstance(content, list) and content:
            blocks += [
                Block((marker if i == 0 else "") + content_text([b]), b.get("cache_control"))
                for i, b in enumerate(content)
            ]
        else:
            blocks.append(Block(marker + content_text(content), None))
    if body.get("cache_control") and blocks:
        # Top-level cache_control marks the last cacheable block (anthropic SDK 2.x messages.create docstring).
        blocks[-1] = Block(blocks[-1].text, body["cache_control"])
    return blocks


# ---------------------------------------------------------------- OpenAI Chat Completions payloads


def openai_usage(*, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> dict[str, Any]:
    # prompt_tokens INCLUDES cached_tokens (OpenAI docs: prompt caching; CompletionUsage type).
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chunk(cid: str, model: str, created: int, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake0000",
        "choices": choices,
        **extra,
    }


def openai_choice_delta(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def openai_completion(
    cid: str, model: str, *, text: str, finish_reason: str, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_fake0000",
    }


def sse_data(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


# ---------------------------------------------------------------- Anthropic Messages payloads


def anthropic_usage(
    *, input_tokens: int, cache_read: int, write_5m: int, write_1h: int, output_tokens: int
) -> dict[str, Any]:
    # input_tokens EXCLUDES cache reads and writes (Anthropic docs: prompt caching, "Tracking cache performance").
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def anthropic_message(
    mid: str, model: str, *, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": model,
        "id": mid,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def sse_event(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


# ---------------------------------------------------------------- error bodies

# Anthropic: docs "Errors" (HTTP status -> error.type); 503 is not listed there, api_error is the generic one.
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# OpenAI: docs "Error codes" (type, code) per status.
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request (fake)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: x."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake). Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def anthropic_error_body(status: int, *, error_type: str | None = None, message: str = "") -> dict[str, Any]:
    kind = error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message or f"{kind} (fake)"},
        "request_id": new_id("req_"),
    }


def openai_error_body(status: int, *, error_type: str | None = None, message: str = "") -> dict[str, Any]:
    kind, code, default = _OPENAI_ERRORS.get(status, ("server_error", None, f"Error {status} (fake)."))
    return {"error": {"message": message or default, "type": error_type or kind, "param": None, "code": code}}


# ---------------------------------------------------------------- default structured answers


def example_for_schema(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A small instance of a JSON schema (objects, arrays, scalars, enums, $ref): enough for simple models."""
    if not isinstance(schema, dict):
        return {}
    if defs is None:
        defs = schema.get("$defs") or schema.get("definitions") or {}
    if "$ref" in schema:
        return example_for_schema(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_for_schema(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), defs)] * max(1, schema.get("minItems", 1))
    return {"string": "fake", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(kind, "fake")
