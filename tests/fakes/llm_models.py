"""The fake LLM server's model catalogue: ``GET /v1/models`` in both providers' shapes, and the 404 a retired model
gets. Shapes follow the real APIs: OpenAI's list object (``{"object": "list", "data": [{"id", "object": "model",
"created", "owned_by"}]}``) and Anthropic's page (``{"data": [{"type": "model", "id", "display_name",
"created_at"}], "has_more", "first_id", "last_id"}``); the 404 bodies are those both providers send for a model
that does not exist (OpenAI code ``model_not_found``; Anthropic ``not_found_error`` with ``"model: <id>"``)."""

from __future__ import annotations

from typing import Any, Literal

from llm.routes import default_models

Api = Literal["openai", "anthropic"]
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z: the fake does not know real release dates


def default_catalogue() -> dict[Api, list[str]]:
    """What each fake provider offers unless a test says otherwise: every model a default route uses."""
    catalogue: dict[Api, list[str]] = {"openai": [], "anthropic": []}
    for provider, model in sorted(default_models()):
        catalogue["openai" if provider == "openai" else "anthropic"].append(model)
    return catalogue


def models_page(api: Api, ids: list[str]) -> dict[str, Any]:
    if api == "openai":
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "system"} for m in ids],
        }
    return {
        "data": [
            {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"} for m in ids
        ],
        "has_more": False,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


def retired_model_body(api: Api, model: str) -> dict[str, Any]:
    if api == "openai":
        return {
            "error": {
                "message": f"The model `{model}` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        }
    return {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model}"}}
