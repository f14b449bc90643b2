"""The fake LLM server, seen through the real openai and anthropic SDKs over a real socket.

First: the SDKs must parse our streams the way they parse the recorded real ones (replayed verbatim by the
same server). Then every scripted fault, the prompt-cache simulation, and the recording the other tests rely on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from llm.types import Usage
from tests.fakes.llm_profiles import LLAMA_CPP, OLLAMA, VLLM
from tests.fakes.llm_server import FakeLLMServer, FakeReply, Fault, ReceivedRequest

FIXTURES = Path(__file__).parent / "fixtures"
OPENAI_TEXT = FIXTURES / "openai" / "e2aad469b71d1d4894ff833ea147020a9d875eb7ce644a0ff355581690a4cbfd.sse"
OPENAI_JSON = FIXTURES / "openai" / "7e5ea4d12e7cc064399b6631415e65923f182256b6e6b752950a3aaa2ad2320a.sse"
ANTHROPIC_TEXT = FIXTURES / "anthropic" / "cassette_TestAsyncStream_a8b7dbb8-2321-4624-abdb-7ba2136b5c38.extracted.sse"
ANTHROPIC_TOOL = FIXTURES / "anthropic" / "tool_use_response.txt"

MODEL_O = "gpt-4o"
MODEL_A = "claude-haiku-4-5"  # claude-sonnet-4-5 makes anthropic 2.14 warn: deprecated
HELLO: Any = [{"role": "user", "content": "What is the weather in San Francisco today?"}]  # Any: SDK TypedDicts
LONG_SYSTEM = "You are a careful support assistant. Follow the house rules exactly. " * 200  # > 1,024 tokens


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
async def oai(server: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
async def ant(server: FakeLLMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="x", max_retries=0) as client:
        yield client


def frames(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per SSE frame; ``[DONE]`` stays a string."""
    out: list[tuple[str | None, Any]] = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        event = None
        data = None
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                text = line[5:].strip()
                data = text if text == "[DONE]" else json.loads(text)
        if data is not None:
            out.append((event, data))
    return out


async def raw_body(url: str, body: dict[str, Any]) -> bytes:
    async with httpx2.AsyncClient() as client:
        response = await client.post(url, json=body, headers={"x-api-key": "x", "authorization": "Bearer x"})
        return response.content


def openai_kinds(chunks: list[Any]) -> list[str]:
    """A chunk stream's shape with repeats collapsed: role, content, finish, usage."""
    kinds: list[str] = []
    for chunk in chunks:
        if not chunk.choices:
            kind = "usage"
        elif chunk.choices[0].finish_reason:
            kind = "finish"
        elif chunk.choices[0].delta.role:
            kind = "role"
        else:
            kind = "content"
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    return kinds


def collapse(names: Sequence[str | None]) -> list[str | None]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def assert_same_shape(ours: Any, theirs: Any, where: str = "") -> None:
    """Every key the real payload has, ours has too, with a value of the same JSON type (recursively)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        for key, value in theirs.items():
            assert key in ours, f"{where}.{key} missing"
            if value is not None and ours[key] is not None:
                assert_same_shape(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), where
        if theirs and ours:
            assert_same_shape(ours[0], theirs[0], f"{where}[0]")
    else:
        assert type(ours) is type(theirs) or {type(ours), type(theirs)} <= {int, float}, where


# ------------------------------------------------------------------ our streams vs the recorded ones


async def test_openai_text_stream_matches_recorded(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    server.replay_next(OPENAI_TEXT.read_bytes())
    theirs = [c async for c in await oai.chat.completions.create(
        model=MODEL_O, messages=HELLO, stream=True, stream_options={"include_usage": True})]
    ours = [c async for c in await oai.chat.completions.create(
        model=MODEL_O, messages=HELLO, stream=True, stream_options={"include_usage": True})]

    assert openai_kinds(ours) == openai_kinds(theirs) == ["role", "content", "finish", "usage"]
    for chunks in (ours, theirs):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert text and usage is not None
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert chunks[-2].choices[0].finish_reason == "stop"
    assert type(ours[-1].usage) is type(theirs[-1].usage)
    assert ours[-1].usage is not None and ours[-1].usage.prompt_tokens_details is not None
    assert ours[-1].usage.prompt_tokens_details.cached_tokens == 0

    # Wire level: same frame keys, same usage field names and types, [DONE] last.
    recorded = frames(OPENAI_TEXT.read_bytes())
    generated = frames(await raw_body(f"{server.openai_base_url}/chat/completions", {
        "model": MODEL_O, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}))
    assert recorded[-1] == generated[-1] == (None, "[DONE]")
    for index in (0, 1, -3, -2):  # role chunk, a content chunk, finish chunk, usage chunk
        assert set(generated[index][1]) == set(recorded[index][1])
        assert_same_shape(generated[index][1], recorded[index][1])


class Weather(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


async def test_openai_structured_stream_parses_like_recorded(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    server.replay_next(OPENAI_JSON.read_bytes())
    server.responder = lambda req: FakeReply(json.dumps({"city": "Seoul", "temperature": 21, "units": "c"}))
    parsed = []
    for _ in range(2):  # first the recorded stream, then ours
        async with oai.chat.completions.stream(model=MODEL_O, messages=HELLO, response_format=Weather,
                                                stream_options={"include_usage": True}) as stream:
            final = await stream.get_final_completion()
        parsed.append(final.choices[0].message.parsed)
        assert final.usage is not None and final.usage.completion_tokens > 0
    assert isinstance(parsed[0], Weather) and isinstance(parsed[1], Weather)
    assert parsed[1] == Weather(city="Seoul", temperature=21, units="c")
    ours = server.received[-1]
    assert ours.structured and ours.schema_name == "Weather" and ours.schema is not None
    assert "city" in ours.schema["properties"]


async def test_anthropic_text_stream_matches_recorded(server: FakeLLMServer, ant: anthropic.AsyncAnthropic) -> None:
    server.replay_next(ANTHROPIC_TEXT.read_bytes())
    theirs = [e.type async for e in await ant.messages.create(
        model=MODEL_A, max_tokens=100, messages=HELLO, stream=True)]
    ours = [e.type async for e in await ant.messages.create(
        model=MODEL_A, max_tokens=100, messages=HELLO, stream=True)]
    assert collapse(ours) == collapse(theirs) == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"]

    finals = []
    server.replay_next(ANTHROPIC_TEXT.read_bytes())
    for _ in range(2):
        async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO) as stream:
            finals.append(await stream.get_final_message())
    theirs_msg, ours_msg = finals
    assert [type(b) for b in ours_msg.content] == [type(b) for b in theirs_msg.content]
    assert isinstance(ours_msg.content[0], anthropic.types.TextBlock)
    assert ours_msg.content[0].text and ours_msg.stop_reason == theirs_msg.stop_reason == "end_turn"
    assert_same_shape(ours_msg.usage.model_dump(), theirs_msg.usage.model_dump(), "usage")
    assert ours_msg.usage.output_tokens > 1  # message_delta's cumulative count replaced message_start's 1

    recorded = frames(ANTHROPIC_TEXT.read_bytes())
    generated = frames(await raw_body(f"{server.anthropic_base_url}/v1/messages", {
        "model": MODEL_A, "max_tokens": 100, "messages": HELLO, "stream": True}))
    assert collapse([e for e, _ in generated]) == collapse([e for e, _ in recorded])  # ping included
    by_event = {e: d for e, d in generated}
    for event, data in recorded:
        assert set(by_event[event]) == set(data), event
        assert_same_shape(by_event[event], data, str(event))


async def test_anthropic_tool_use_stream_matches_fixture(server: FakeLLMServer, ant: anthropic.AsyncAnthropic) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    server.replay_next(ANTHROPIC_TOOL.read_bytes())
    server.responder = lambda req: FakeReply('{"location": "Paris, France"}')
    finals, kinds = [], []
    for _ in range(2):
        async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO, tools=tools,
                                       tool_choice={"type": "tool", "name": "get_weather"}) as stream:
            kinds.append([e.type async for e in stream])
            finals.append(await stream.get_final_message())
    theirs, ours = finals
    their_tool = theirs.content[-1]
    our_tool = ours.content[0]
    assert isinstance(their_tool, anthropic.types.ToolUseBlock) and isinstance(our_tool, anthropic.types.ToolUseBlock)
    assert our_tool.name == their_tool.name == "get_weather"
    assert our_tool.input == {"location": "Paris, France"} and their_tool.input == {"location": "Paris"}
    assert ours.stop_reason == theirs.stop_reason == "tool_use"
    assert_same_shape(ours.usage.model_dump(), theirs.usage.model_dump(), "usage")
    theirs_events, ours_events = (collapse([k for k in ks if k not in ("text", "input_json")]) for ks in kinds)
    tool_block = ["content_block_start", "content_block_delta", "content_block_stop", "message_delta"]
    # The fixture file lacks the blank line after its last frame, so its message_stop is never dispatched.
    assert theirs_events[-4:] == tool_block
    assert ours_events == ["message_start", *tool_block, "message_stop"]
    assert server.received[-1].forced_tool == "get_weather"

    plain = await ant.messages.create(model=MODEL_A, max_tokens=100, messages=HELLO, tools=tools,
                                      tool_choice={"type": "tool", "name": "get_weather"})
    assert isinstance(plain.content[0], anthropic.types.ToolUseBlock)
    assert plain.content[0].input == {"location": "Paris, France"} and plain.stop_reason == "tool_use"


# ------------------------------------------------------------------ faults through the SDKs


async def test_openai_429_headers_are_readable(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    server.enqueue_fault(Fault.rate_limited(retry_after=1))
    server.enqueue_fault(Fault.rate_limited(retry_after_ms=250))
    server.enqueue_fault(Fault.rate_limited())
    with pytest.raises(openai.RateLimitError) as first:
        await oai.chat.completions.create(model=MODEL_O, messages=HELLO)
    assert first.value.response.headers["retry-after"] == "1"
    assert first.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as second:
        await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True)
    assert second.value.response.headers["retry-after-ms"] == "250"
    with pytest.raises(openai.RateLimitError) as third:
        await oai.chat.completions.create(model=MODEL_O, messages=HELLO)
    assert "retry-after" not in third.value.response.headers
    assert [s.outcome for s in server.served] == ["error"] * 3 and server.pending == 0


async def test_anthropic_status_faults(server: FakeLLMServer, ant: anthropic.AsyncAnthropic) -> None:
    cases: list[tuple[Fault, type[anthropic.APIStatusError], str]] = [
        (Fault.rate_limited(retry_after=2), anthropic.RateLimitError, "rate_limit_error"),
        (Fault.overloaded(), anthropic.OverloadedError, "overloaded_error"),
        (Fault.server_error(500), anthropic.InternalServerError, "api_error"),
        (Fault.server_error(503), anthropic.InternalServerError, "api_error"),
        (Fault.unauthorized(), anthropic.AuthenticationError, "authentication_error"),
        (Fault.bad_request(), anthropic.BadRequestError, "invalid_request_error"),
    ]
    for fault, error, error_type in cases:
        server.enqueue_fault(fault)
        with pytest.raises(error) as caught:
            await ant.messages.create(model=MODEL_A, max_tokens=50, messages=HELLO)
        assert isinstance(caught.value, anthropic.APIStatusError)
        assert caught.value.type == error_type and caught.value.request_id
    assert [s.status for s in server.served] == [429, 529, 500, 503, 401, 400]


async def test_openai_status_faults(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    cases: list[tuple[Fault, type[openai.APIStatusError]]] = [
        (Fault.server_error(500), openai.InternalServerError),
        (Fault.server_error(503), openai.InternalServerError),
        (Fault.overloaded(), openai.InternalServerError),
        (Fault.unauthorized(), openai.AuthenticationError),
        (Fault.bad_request(), openai.BadRequestError),
    ]
    for fault, error in cases:
        server.enqueue_fault(fault)
        with pytest.raises(error) as caught:
            await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True)
        assert isinstance(caught.value.body, dict) and "message" in caught.value.body  # OpenAI-shaped error
        assert caught.value.response.headers["x-request-id"]


async def test_faults_can_target_one_api(server: FakeLLMServer, oai: openai.AsyncOpenAI,
                                         ant: anthropic.AsyncAnthropic) -> None:
    server.enqueue_fault(Fault.overloaded(api="anthropic"))
    reply = await oai.chat.completions.create(model=MODEL_O, messages=HELLO)  # passes by the anthropic fault
    assert reply.choices[0].message.content
    with pytest.raises(anthropic.OverloadedError):
        await ant.messages.create(model=MODEL_A, max_tokens=50, messages=HELLO)


async def test_sdk_retries_a_429_with_retry_after(server: FakeLLMServer) -> None:
    oai = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=1)
    ant = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="x", max_retries=1)
    server.enqueue_fault(Fault.rate_limited(retry_after=0.2, api="openai"))
    server.enqueue_fault(Fault.rate_limited(retry_after=0.2, api="anthropic"))
    async with oai, ant:
        o = await oai.chat.completions.create(model=MODEL_O, messages=HELLO)
        a = await ant.messages.create(model=MODEL_A, max_tokens=100, messages=HELLO)
    assert o.choices[0].message.content and a.content
    assert [(r.api, r.headers.get("x-stainless-retry-count")) for r in server.received] == [
        ("openai", "0"), ("openai", "1"), ("anthropic", "0"), ("anthropic", "1")]
    assert [s.outcome for s in server.served] == ["error", "complete", "error", "complete"]


async def test_disconnect_mid_stream(server: FakeLLMServer, oai: openai.AsyncOpenAI,
                                     ant: anthropic.AsyncAnthropic) -> None:
    server.enqueue_fault(Fault.disconnect(after_pieces=3, api="openai"))
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await oai.chat.completions.create(
                model=MODEL_O, messages=HELLO, stream=True, stream_options={"include_usage": True}):
            got += [c.delta.content or "" for c in chunk.choices]
    served = server.served[-1]
    assert served.outcome == "interrupted" and served.reported is None  # no usage chunk on a cut stream
    assert "".join(got) == served.text and served.billed is not None and served.billed.output == 3

    server.enqueue_fault(Fault.disconnect(after_pieces=2, api="anthropic"))
    # The anthropic SDK lets httpx2's read error through unwrapped while iterating a stream.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO) as stream:
            await stream.get_final_message()
    served = server.served[-1]
    assert served.outcome == "interrupted" and served.reported is not None and served.reported.output == 1

    server.enqueue_fault(Fault.disconnect())
    with pytest.raises(anthropic.APIConnectionError):  # non-streamed: the connection closes with no response
        await ant.messages.create(model=MODEL_A, max_tokens=100, messages=HELLO)


async def test_mid_stream_error_event(server: FakeLLMServer, oai: openai.AsyncOpenAI,
                                      ant: anthropic.AsyncAnthropic) -> None:
    server.enqueue_fault(Fault.stream_error(after_pieces=2, api="anthropic"))
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert caught.value.type == "overloaded_error" and len(texts) == 2
    assert server.served[-1].outcome == "interrupted"

    server.enqueue_fault(Fault.stream_error(after_pieces=1, api="openai", error_type="server_error"))
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True):
            pass


async def test_malformed_sse(server: FakeLLMServer, oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    server.enqueue_fault(Fault.malformed_sse(after_pieces=2, api="openai"))
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's sse.json()
        async for _ in await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True):
            pass
    server.enqueue_fault(Fault.malformed_sse(after_pieces=2, api="anthropic"))
    with pytest.raises(ValueError):
        async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO) as stream:
            await stream.get_final_message()
    # A non-SSE line is skipped by the SDKs' decoders; the answer still arrives whole.
    server.enqueue_fault(Fault.malformed_sse(after_pieces=2, kind="garbage", api="anthropic"))
    async with ant.messages.stream(model=MODEL_A, max_tokens=100, messages=HELLO) as stream:
        message = await stream.get_final_message()
    assert message.content[0].text == server.served[-1].text  # type: ignore[union-attr]
    # Non-streamed: a truncated JSON body, which the SDK fails to decode; the server knows it reported nothing.
    server.enqueue_fault(Fault.malformed_sse())
    with pytest.raises(ValueError):
        await oai.chat.completions.create(model=MODEL_O, messages=HELLO)
    assert server.served[-1].reported is None and server.served[-1].billed is not None


async def test_stalls(server: FakeLLMServer) -> None:
    timeout = httpx2.Timeout(5.0, read=0.5)
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0,
                                  timeout=timeout) as oai:
        await stall_three_ways(server, oai)


async def stall_three_ways(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    # A short stall before the first token, then the stream goes on.
    server.enqueue_fault(Fault.stall(0.05))
    chunks = [c async for c in await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True)]
    assert chunks[-1].choices[0].finish_reason == "stop"
    # A hang after 2 pieces: the client's read timeout fires, after the 2 pieces arrived.
    server.enqueue_fault(Fault.stall(hang=True, after_pieces=2))
    got: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        async for chunk in await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True):
            got += [c.delta.content or "" for c in chunk.choices]
    assert len([g for g in got if g]) == 2
    # A hang before the headers: the request itself times out.
    server.enqueue_fault(Fault.stall(hang=True, before_headers=True))
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(model=MODEL_O, messages=HELLO, stream=True)
    # Stopping the server releases the hanging handlers (the fixture's stop must not wait for them).


# ------------------------------------------------------------------ prompt-cache simulation


def cached_system(text: str, ttl: str | None = None) -> Any:  # Any: the SDK wants its TypedDicts
    control: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": text, "cache_control": control}]


async def test_anthropic_cache_write_then_read(server: FakeLLMServer, ant: anthropic.AsyncAnthropic) -> None:
    first = await ant.messages.create(model=MODEL_A, max_tokens=50, system=cached_system(LONG_SYSTEM),
                                      messages=HELLO)
    async with ant.messages.stream(model=MODEL_A, max_tokens=50, system=cached_system(LONG_SYSTEM),
                                   messages=[{"role": "user", "content": "Another question"}]) as stream:
        second = await stream.get_final_message()
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens >= 1024
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert 0 < second.usage.input_tokens < 50  # input_tokens excludes the cached prefix
    assert server.served[-1].reported == Usage(second.usage.input_tokens, second.usage.output_tokens,
                                               second.usage.cache_read_input_tokens)

    hour = await ant.messages.create(model=MODEL_A, max_tokens=50, system=cached_system("x" + LONG_SYSTEM, "1h"),
                                     messages=HELLO)
    assert hour.usage.cache_creation is not None and hour.usage.cache_creation.ephemeral_1h_input_tokens > 0
    assert hour.usage.cache_creation.ephemeral_5m_input_tokens == 0


async def test_anthropic_top_level_cache_control(ant: anthropic.AsyncAnthropic) -> None:
    messages: Any = [{"role": "user", "content": LONG_SYSTEM}]
    first = await ant.messages.create(model=MODEL_A, max_tokens=50, messages=messages,
                                      cache_control={"type": "ephemeral"})
    second = await ant.messages.create(model=MODEL_A, max_tokens=50, messages=messages,
                                       cache_control={"type": "ephemeral"})
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


async def test_anthropic_short_prefix_is_not_cached(server: FakeLLMServer, ant: anthropic.AsyncAnthropic) -> None:
    for _ in range(2):
        reply = await ant.messages.create(model=MODEL_A, max_tokens=50, system=cached_system("Be brief."),
                                          messages=HELLO)
        assert reply.usage.cache_creation_input_tokens == 0 and reply.usage.cache_read_input_tokens == 0


async def test_openai_automatic_cache(server: FakeLLMServer, oai: openai.AsyncOpenAI) -> None:
    usages: list[Any] = []
    for question in ("First question?", "Second question?"):
        stream = await oai.chat.completions.create(
            model=MODEL_O, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": question}])
        usages.append([c async for c in stream][-1].usage)
    first, second = usages
    assert first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens
    assert cached > 0 and cached % 128 == 0 and cached <= second.prompt_tokens  # prompt_tokens includes cached
    assert server.served[-1].reported == Usage(second.prompt_tokens - cached, second.completion_tokens, cached)


# ------------------------------------------------------------------ responder, limits, recording, entry point


async def test_async_responder_sees_the_request(server: FakeLLMServer, oai: openai.AsyncOpenAI,
                                                ant: anthropic.AsyncAnthropic) -> None:
    seen: list[ReceivedRequest] = []

    async def answer(request: ReceivedRequest) -> FakeReply:
        seen.append(request)
        return FakeReply(f"{request.api} says hi to {request.user_text}", tokens_per_s=1000.0, ttft_s=0.01)

    server.responder = answer
    o = await oai.chat.completions.create(
        model=MODEL_O, messages=[{"role": "system", "content": "Rules."}, {"role": "user", "content": "Ann"}])
    a = await ant.messages.create(model=MODEL_A, max_tokens=50, system="Rules.", messages=[
        {"role": "user", "content": "Bob"}])
    assert o.choices[0].message.content == "openai says hi to Ann"
    assert a.content[0].text == "anthropic says hi to Bob"  # type: ignore[union-attr]
    assert [(r.system, r.model, r.stream, r.structured) for r in seen] == [
        ("Rules.", MODEL_O, False, False), ("Rules.", MODEL_A, False, False)]
    assert seen[0].messages == [{"role": "user", "content": "Ann"}]
    assert server.received == seen and seen[0].at <= seen[1].at
    # anthropic 2.14 sends the key as a bearer token (x-api-key in older versions); header names are lower-cased.
    assert (seen[1].headers.get("x-api-key") or seen[1].headers["authorization"]).endswith("x")
    assert "anthropic-version" in seen[1].headers and seen[1].path == "/v1/messages"


async def test_max_tokens_cuts_the_answer(server: FakeLLMServer, oai: openai.AsyncOpenAI,
                                          ant: anthropic.AsyncAnthropic) -> None:
    o = await oai.chat.completions.create(model=MODEL_O, messages=HELLO, max_tokens=5)
    assert o.choices[0].finish_reason == "length" and o.usage is not None and o.usage.completion_tokens == 5
    async with ant.messages.stream(model=MODEL_A, max_tokens=4, messages=HELLO) as stream:
        a = await stream.get_final_message()
    assert a.stop_reason == "max_tokens" and a.usage.output_tokens == 4
    assert server.served[-1].text == a.content[0].text  # type: ignore[union-attr]


async def test_default_structured_answer_fits_the_schema(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.parse(model=MODEL_O, messages=HELLO, response_format=Weather)
    assert isinstance(reply.choices[0].message.parsed, Weather)


def test_standalone_entry_point_prints_urls() -> None:
    root = Path(__file__).parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.llm_server", "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("OPENAI_BASE_URL=http://127.0.0.1:") and first.strip().endswith("/v1")
        assert second.startswith("ANTHROPIC_BASE_URL=http://127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_stop_releases_a_hanging_request() -> None:
    server = await FakeLLMServer().start()
    async with anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="x", max_retries=0) as client:
        server.enqueue_fault(Fault.stall(hang=True))
        stream = await client.messages.create(model=MODEL_A, max_tokens=50, messages=HELLO, stream=True)
        await server.stop()  # returns although a handler is hanging: stop() releases it
        with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
            async for _ in stream:
                pass
    assert server.served[-1].outcome == "interrupted" and server.served[-1].text == ""


# ------------------------------------------------------------------ server profiles (tests/fakes/llm_profiles.py)

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
          "additionalProperties": False}


async def test_llama_cpp_profile_speaks_its_dialect() -> None:
    async with FakeLLMServer(profile=LLAMA_CPP) as srv, openai.AsyncOpenAI(
        base_url=srv.openai_base_url, api_key="x", max_retries=0
    ) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="anything", messages=HELLO,
                response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
            )
        fmt: Any = {"type": "json_object", "schema": SCHEMA}
        whole = await client.chat.completions.create(model="anything", messages=HELLO, response_format=fmt)
        assert whole.model == "anything" and list(json.loads(whole.choices[0].message.content or "")) == ["name"]
        stream = await client.chat.completions.create(
            model="any-name/at all", messages=HELLO, stream=True, stream_options={"include_usage": True},
            max_completion_tokens=2, max_tokens=5,
        )
        chunks = [c async for c in stream]
        assert all(c.usage is None for c in chunks)  # no usage chunk, asked or not
        assert chunks[0].model == "any-name/at all"
        assert sum(1 for c in chunks for ch in c.choices if ch.delta.content) == 5  # max_tokens, not the other
        assert chunks[-1].choices[0].finish_reason == "length"
        models = await client.models.list()
        assert [m.id for m in models.data] == ["/models/SmolLM2-135M-Instruct.Q4_1.gguf"]
        async with httpx2.AsyncClient() as http:
            props = (await http.get(f"http://127.0.0.1:{srv.port}/props")).json()
        assert props["default_generation_settings"]["n_ctx"] == 8192


async def test_llama_cpp_second_request_cuts_the_running_stream() -> None:
    async with FakeLLMServer(profile=LLAMA_CPP, tokens_per_s=200) as srv, openai.AsyncOpenAI(
        base_url=srv.openai_base_url, api_key="x", max_retries=0
    ) as client:
        first = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        got = [await anext(aiter(first))]  # the role chunk: the stream runs
        second = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        got += [c async for c in first]
        assert not any(ch.finish_reason for c in got for ch in c.choices)  # then a normal [DONE]
        rest = [c async for c in second]
        assert rest[-1].choices[0].finish_reason == "stop"
        assert [s.outcome for s in srv.served] == ["cut", "complete"]


async def test_llama_cpp_prompt_past_the_context() -> None:
    long_prompt: Any = [{"role": "user", "content": "word " * 9000}]
    async with FakeLLMServer(profile=LLAMA_CPP) as srv, openai.AsyncOpenAI(
        base_url=srv.openai_base_url, api_key="x", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(model="m", messages=long_prompt, stream=True)
        assert [c async for c in stream] == []  # 200, and nothing at all
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="m", messages=long_prompt, max_tokens=100)
        assert err.value.code == "context_length_exceeded"
        assert "maximum context length is 8192 tokens" in str(err.value)


async def test_vllm_and_ollama_report_their_context() -> None:
    async with FakeLLMServer(profile=VLLM) as srv, openai.AsyncOpenAI(
        base_url=srv.openai_base_url, api_key="x", max_retries=0
    ) as client:
        [model] = (await client.models.list()).data
        assert (model.model_extra or {})["max_model_len"] == 32768
        with pytest.raises(openai.BadRequestError):  # vLLM counts the answer's room against the context too
            await client.chat.completions.create(
                model=model.id, messages=[{"role": "user", "content": "word " * 32000}], max_tokens=1000
            )
    async with FakeLLMServer(profile=OLLAMA) as srv, httpx2.AsyncClient() as http:
        shown = (await http.post(f"http://127.0.0.1:{srv.port}/api/show", json={"model": "llama3.2"})).json()
        assert shown["model_info"]["llama.context_length"] == 131072 and "num_ctx" not in shown["parameters"]
        async with openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0) as client:
            whole = await client.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": "early words " * 2000 + "late"}]
            )
        assert whole.choices[0].finish_reason == "stop" and srv.truncated_prompts == 1
        seen = srv.served[-1].request.user_text  # what the model read: only the end, and no error said so
        assert seen.endswith("late") and len(seen) < len("early words " * 2000) // 2
