"""Pydantic models → the JSON schemas providers accept for structured output, the repair prompt for an answer
that did not validate, and the response-cache key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from llm.provider import StructuredSpec
from llm.routes import Route
from llm.types import Message, Request


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAI strict mode wants every object closed and every property required; Anthropic accepts the same."""

    def close(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: close(v) for k, v in node.items() if k not in ("default", "title")}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [close(v) for v in node]
        return node

    schema: dict[str, Any] = close(model.model_json_schema())
    return schema


def spec_for(model: type[BaseModel]) -> StructuredSpec:
    return StructuredSpec(name=model.__name__.lower()[:64], json_schema=strict_schema(model))


def prompt_instruction(spec: StructuredSpec) -> str:
    """The structure, said in words, for servers that cannot enforce it (json_object without a grammar, prompt)."""
    schema = json.dumps(spec.json_schema, ensure_ascii=False, separators=(",", ":"))
    return (
        "Answer with one JSON object and nothing else (no prose, no code fence). "
        f"It must match this JSON schema:\n{schema}"
    )


def json_text(text: str) -> str:
    """The JSON object in a model's answer: as is when it parses, else the span from the first ``{`` to the last
    ``}`` (models without enforced structure wrap it in code fences or a sentence)."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        return stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    return stripped[start : end + 1] if 0 <= start < end else stripped


def repair_request(request: Request, answer: str, error: ValidationError) -> Request:
    """``request`` again, its last message followed by what was wrong with ``answer`` and the answer itself."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:10])
    last = request.messages[-1]
    note = (
        f"\n\nYour previous answer did not match the required structure ({problems}). "
        f"Previous answer:\n{answer[:4000]}\nAnswer again, following the structure exactly."
    )
    return Request(
        request.system,
        request.messages[:-1] + (Message(last.role, last.content + note),),
        prompt_version=request.prompt_version,
        max_tokens=request.max_tokens,
    )


def cache_key(route: Route, request: Request, *, scope: str, structured: StructuredSpec | None) -> str:
    """Canonical hash of everything that shapes the answer, scoped so an answer never crosses channels."""
    canonical = {
        "task": route.task.value,
        "entries": [[e.provider, e.model, e.max_tokens, e.temperature] for e in route.entries],
        "prompt_version": request.prompt_version,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "schema": [structured.name, structured.json_schema] if structured else None,
        "scope": scope,
    }
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "rc:" + hashlib.sha256(blob.encode()).hexdigest()
