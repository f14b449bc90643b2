"""Server profiles of the fake LLM server: how self-hosted OpenAI-compatible servers differ from OpenAI's API.

Each profile plays the behaviours FACTS.md records ("OpenAI-compatible servers"), measured against
llama-cpp-python 0.3.36's server and the vLLM / Ollama documentation:

- ``LLAMA_CPP``: no usage chunk while streaming even with ``include_usage``; HTTP 500 to ``response_format``
  ``json_schema`` but ``json_object`` with a ``schema`` works; ignores ``max_completion_tokens`` (honours
  ``max_tokens``); echoes any model name; a second request cuts the running stream (no finish_reason, then a
  normal ``[DONE]``); a streamed prompt past its context gets a 200 with an empty stream (non-streamed: 400
  ``context_length_exceeded``); ``/v1/models`` ids are file paths; ``/props`` reports ``n_ctx`` (llama.cpp's own
  C++ ``llama-server`` has it; ``LLAMA_CPP_PYTHON`` is the same without it: the bot then learns from overflows).
  Its tokenizer is not ours: it counts ``token_scale`` times the tokens the bot counts.
  ``LLAMA_CPP_QUEUEING`` plays it with ``interrupt_requests`` off: streams queue after their headers.
- ``VLLM``: ``max_model_len`` in ``/v1/models``; ``json_schema`` works; a prompt past the context is a 400.
- ``OLLAMA``: ``/api/show`` with the model's trained context but a small default ``num_ctx``; a longer prompt is
  silently truncated (the model sees only its end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

Overflow = Literal["error", "empty_stream", "truncate"]


@dataclass(frozen=True, slots=True)
class ServerProfile:
    name: str
    streamed_usage: bool = True  # sends the usage chunk when asked with stream_options.include_usage
    json_schema_status: int | None = None  # the HTTP status answered to response_format json_schema (None: ok)
    honours_max_completion_tokens: bool = True
    cuts_on_second_request: bool = False
    one_at_a_time: bool = False  # streams queue behind the running one, after their response headers went out
    context_window: int | None = None  # in the server's own tokens; None: unlimited
    overflow: Overflow = "error"  # what a streamed prompt past the context gets
    answer_counts: bool = True  # the answer's max_tokens counts against the context (llama.cpp clips it instead)
    token_scale: float = 1.0  # the server's tokens per token the bot counts (another tokenizer)
    props: bool = False  # GET /props (llama.cpp)
    max_model_len: bool = False  # max_model_len in GET /v1/models (vLLM)
    ollama_show: bool = False  # POST /api/show (Ollama)
    trained_context: int | None = None  # what /api/show says the model was trained for
    model_ids: tuple[str, ...] = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1", "gpt-5-mini")

    def prompt_tokens(self, counted: int) -> int:
        return math.ceil(counted * self.token_scale)

    def overflows(self, prompt: int, answer: int) -> bool:
        """Whether a prompt of ``prompt`` server tokens (plus room for ``answer`` where that counts) exceeds the
        context: llama-cpp-python refuses only a prompt that fills it (llama.py ``_create_completion``) and clips
        ``max_tokens`` to what is left; vLLM refuses prompt + max_tokens past ``max_model_len``."""
        if self.context_window is None:
            return False
        return prompt + (answer if self.answer_counts else 0) > self.context_window - (0 if self.answer_counts else 1)


OPENAI = ServerProfile("openai")
LLAMA_CPP = ServerProfile(
    "llama.cpp",
    streamed_usage=False,
    json_schema_status=500,
    honours_max_completion_tokens=False,
    cuts_on_second_request=True,
    context_window=8192,
    overflow="empty_stream",
    answer_counts=False,
    # SmolLM2's tokenizer vs the bot's o200k on the IRC fixture's first 700 lines: 12,895 vs 11,723 (measured).
    token_scale=1.1,
    props=True,
    model_ids=("/models/SmolLM2-135M-Instruct.Q4_1.gguf",),
)
# llama-cpp-python's server (0.3.36) has no /props: the bot can only learn its context from an overflow.
LLAMA_CPP_PYTHON = replace(LLAMA_CPP, name="llama-cpp-python", props=False)
# llama-cpp-python with interrupt_requests off: a second stream gets its 200 and headers at once, then waits for
# the running one (server/app.py takes the model lock inside the event publisher, after the response started).
LLAMA_CPP_QUEUEING = replace(LLAMA_CPP_PYTHON, name="llama-cpp-python (queueing)", cuts_on_second_request=False,
                             one_at_a_time=True)
VLLM = ServerProfile(
    "vllm", context_window=32768, max_model_len=True, model_ids=("Qwen/Qwen2.5-7B-Instruct",)
)
# Ollama's num_ctx when a model sets none: 2048 for most of its history (llm/openai_provider.py says the same).
OLLAMA = ServerProfile(
    "ollama", context_window=2048, overflow="truncate", ollama_show=True, trained_context=131072,
    model_ids=("llama3.2:latest",),
)


def context_error_body(window: int, prompt: int, answer: int) -> dict[str, Any]:
    """llama-cpp-python's (server/errors.py) and vLLM's wording of OpenAI's context_length_exceeded error."""
    message = (
        f"This model's maximum context length is {window} tokens. However, you requested {prompt + answer} "
        f"tokens ({prompt} in the messages, {answer} in the completion). Please reduce the length of the messages "
        "or completion."
    )
    return {"error": {"message": message, "type": "invalid_request_error", "param": "messages",
                      "code": "context_length_exceeded"}}


def models_body(profile: ServerProfile, created: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for model in profile.model_ids:
        row: dict[str, Any] = {"id": model, "object": "model", "created": created, "owned_by": profile.name}
        if profile.max_model_len:
            row.update(root=model, parent=None, max_model_len=profile.context_window)
        rows.append(row)
    return {"object": "list", "data": rows}


def props_body(profile: ServerProfile) -> dict[str, Any]:
    """The part of llama.cpp's /props the bot reads, in the shape llama-server sends it."""
    return {"default_generation_settings": {"n_ctx": profile.context_window, "temperature": 0.8},
            "total_slots": 1, "model_path": profile.model_ids[0]}


def show_body(profile: ServerProfile, model: str) -> dict[str, Any]:
    """Ollama's /api/show: the trained context in model_info; no num_ctx in parameters unless a Modelfile set it."""
    return {
        "modelfile": f"FROM {model}",
        "parameters": 'stop "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": "llama", "llama.context_length": profile.trained_context},
    }
