"""Self-hosted server dialects (llama.cpp, vLLM, Ollama) and honest stream endings, through the real openai and
anthropic SDKs against the fake provider server's profiles (tests/fakes/llm_profiles.py) over real sockets.

What is checked: the router learns each server's structured-output mode, context window and concurrency from
its answers and remembers them in the store (a second router on the same store — another replica — starts from
what the first learned); a stream that ends without a finish reason or empty is never `ok` and never cached; an
answer cut by the output limit says so; a summary too long for the server's context is re-planned in parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from adapters.console import Console, ConsolePlatform
from bot.app import App, build_app
from bot.settings import load_settings
from bot.stores.sqlite import SqliteStore
from bot.summarize import CUT_SHORT
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import Route, RouteEntry
from llm.servers import EntryKey, EntryOptions, StructuredMode, is_context_overflow, window_after_overflow
from llm.tokens import count_tokens
from llm.types import Attribution, LedgerRecord, LLMError, Outcome, Request, Task
from tests.fakes.faq_model import faq_responder
from tests.fakes.llm_profiles import (
    LLAMA_CPP,
    LLAMA_CPP_PYTHON,
    LLAMA_CPP_QUEUEING,
    OLLAMA,
    VLLM,
    ServerProfile,
)
from tests.fakes.llm_server import FakeLLMServer, FakeReply, Fault, ReceivedRequest
from tests.transcripts import banking_inquiries, irc_messages

WHO = Attribution("slack", "T1", "C1", "U1", "summary")
THREAD = "1000.000000"


class Verdict(BaseModel):
    category: str
    priority: int


async def served_by(profile: ServerProfile, **knobs: object) -> FakeLLMServer:
    return await FakeLLMServer(profile=profile, **knobs).start()  # type: ignore[arg-type]


def router_for(
    server: FakeLLMServer,
    store: SqliteStore,
    *specs: str,
    task: Task = Task.SUMMARIZE,
    options: dict[str, EntryOptions] | None = None,
    timeouts: Timeouts | None = None,
    max_tokens: int = 300,
) -> ModelRouter:
    entries = tuple(RouteEntry.parse(s, max_tokens=max_tokens, temperature=0.0) for s in specs)
    return create_router(
        openai_api_key="sk-local",
        openai_base_url=server.openai_base_url,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=server.anthropic_base_url,
        routes={task: Route(task, entries, 0)},
        prices=PriceTable(),
        ledger=store.ledger,
        cache=store.kv,
        timeouts=timeouts or Timeouts(connect_s=2, first_token_s=5, idle_s=5),
        server_options=options,
    )


async def records(store: SqliteStore) -> list:
    return await store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


def where(server: FakeLLMServer, model: str) -> EntryKey:
    return EntryKey("openai", model, server.openai_base_url)


# ---- structured output dialects ----------------------------------------------------------------------------


async def test_llama_cpp_refuses_json_schema_so_json_object_with_the_schema_is_learned_and_shared(store) -> None:
    server = await served_by(LLAMA_CPP)
    server.responder = lambda req: FakeReply(json.dumps({"category": "Billing", "priority": 2}))
    first = router_for(server, store, "openai:smollm2", task=Task.CLASSIFY)
    verdict = await first.structured(Task.CLASSIFY, Request.of("Sort.", "refund?"), Verdict, bill_to=WHO)
    assert verdict == Verdict(category="Billing", priority=2)
    refused, answered = server.received
    assert refused.body["response_format"]["type"] == "json_schema"
    assert answered.body["response_format"] == {"type": "json_object", "schema": refused.body["response_format"][
        "json_schema"]["schema"]}
    assert "JSON schema" in answered.system  # the structure is also said in words
    assert [r.outcome for r in await records(store)] == [Outcome.ERROR, Outcome.OK]
    # Another replica on the same store asks the way that worked at once.
    second = router_for(server, store, "openai:smollm2", task=Task.CLASSIFY)
    await second.structured(Task.CLASSIFY, Request.of("Sort.", "invoice?"), Verdict, bill_to=WHO)
    assert server.received[-1].body["response_format"]["type"] == "json_object"
    assert len(server.received) == 3
    await first.close()
    await second.close()
    await server.stop()


async def test_vllm_keeps_strict_json_schema(store) -> None:
    server = await served_by(VLLM)
    server.responder = lambda req: FakeReply(json.dumps({"category": "Access", "priority": 1}))
    router = router_for(server, store, "openai:Qwen/Qwen2.5-7B-Instruct", task=Task.CLASSIFY)
    await router.structured(Task.CLASSIFY, Request.of("Sort.", "login?"), Verdict, bill_to=WHO)
    [req] = server.received
    assert req.body["response_format"]["type"] == "json_schema"
    assert (await router.servers.get(where(server, "Qwen/Qwen2.5-7B-Instruct"))).structured_output is None
    await router.close()
    await server.stop()


@pytest.mark.parametrize("mode", [StructuredMode.TOOL, StructuredMode.PROMPT])
async def test_a_setting_chooses_the_mode_and_fenced_prompt_answers_still_validate(store, mode) -> None:
    server = await served_by(VLLM)
    answer = json.dumps({"category": "Access", "priority": 1})
    server.responder = lambda req: FakeReply(answer if mode is StructuredMode.TOOL else f"```json\n{answer}\n```")
    router = router_for(server, store, "openai:m", task=Task.CLASSIFY,
                        options={"openai:*": EntryOptions(structured_output=mode)})
    verdict = await router.structured(Task.CLASSIFY, Request.of("Sort.", "login?"), Verdict, bill_to=WHO)
    assert verdict.category == "Access"
    [req] = server.received
    if mode is StructuredMode.TOOL:
        assert req.body["tool_choice"] == {"type": "function", "function": {"name": "verdict"}}
    else:
        assert "response_format" not in req.body and "tools" not in req.body and "JSON schema" in req.system
    await router.close()
    await server.stop()


async def test_self_hosted_servers_get_max_tokens_whatever_the_model_is_called(store) -> None:
    server = await served_by(LLAMA_CPP)
    router = router_for(server, store, "openai:gpt-5-mini", max_tokens=7)
    answer = await router.answer(Task.SUMMARIZE, Request.of("s", "a long question " * 20), bill_to=WHO)
    body = server.received[0].body
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body
    assert answer.truncated  # 7 pieces of a ~60-piece answer: llama.cpp honoured it
    await router.close()
    await server.stop()


# ---- stream endings ------------------------------------------------------------------------------------------


async def test_llama_cpp_streams_no_usage_so_the_ledger_estimates_and_says_so(store) -> None:
    server = await served_by(LLAMA_CPP)
    router = router_for(server, store, "openai:smollm2")
    text = "".join([c.text async for c in router.stream(Task.SUMMARIZE, Request.of("s", "hello"), bill_to=WHO)])
    assert text and server.served[-1].reported is None
    [rec] = await records(store)
    assert rec.outcome is Outcome.OK and rec.usage.estimated and rec.usage.output > 0
    await router.close()
    await server.stop()


STREAM_WITHOUT_FINISH = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"The build"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":" fails on"},"finish_reason":null}]}\n\n'
    b"data: [DONE]\n\n"
)


async def test_a_visible_stream_without_a_finish_reason_is_interrupted_never_ok_never_cached(store) -> None:
    server = await FakeLLMServer().start()
    router = router_for(server, store, "openai:gpt-4o-mini")
    router.routes[Task.SUMMARIZE] = Route(Task.SUMMARIZE, router.routes[Task.SUMMARIZE].entries, 3600)
    server.replay_next(STREAM_WITHOUT_FINISH, api="openai")
    shown: list[str] = []
    with pytest.raises(LLMError) as err:
        async for c in router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO):
            shown.append(c.text)
    assert err.value.kind == "interrupted" and err.value.partial_text == "The build fails on" == "".join(shown)
    [rec] = await records(store)
    assert rec.outcome is Outcome.INTERRUPTED and rec.usage.estimated
    # Not cached: the same request goes to the model again and gets the whole answer.
    again = "".join([c.text async for c in router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)])
    assert again.startswith("Summary:") and len(server.received) == 2
    await router.close()
    await server.stop()


async def test_an_unwatched_answer_without_a_finish_reason_is_asked_again(store) -> None:
    server = await FakeLLMServer().start()
    router = router_for(server, store, "openai:gpt-4o-mini")
    server.replay_next(STREAM_WITHOUT_FINISH, api="openai")
    answer = await router.answer(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)
    assert answer.text.startswith("Summary:") and "The build" not in answer.text
    assert [r.outcome for r in await records(store)] == [Outcome.INTERRUPTED, Outcome.OK]
    await router.close()
    await server.stop()


async def test_an_empty_stream_is_asked_again_whole_and_never_recorded_ok(store) -> None:
    server = await FakeLLMServer().start()
    router = router_for(server, store, "openai:gpt-4o-mini")
    server.replay_next(b"data: [DONE]\n\n", api="openai")
    text = "".join([c.text async for c in router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)])
    assert text.startswith("Summary:")
    empty, whole = server.received
    assert empty.stream and not whole.stream
    first, second = await records(store)
    assert first.outcome is Outcome.INTERRUPTED and first.error.startswith("empty") and second.outcome is Outcome.OK
    await router.close()
    await server.stop()


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
async def test_an_answer_cut_by_the_output_limit_is_marked(store, spec) -> None:
    server = await FakeLLMServer().start()
    router = router_for(server, store, spec, max_tokens=6)
    seen: list[LedgerRecord] = []
    router._observers.append(seen.append)  # the record as the router wrote it (stores persist it separately)
    chunks = [c async for c in router.stream(Task.SUMMARIZE, Request.of("s", "a question " * 30), bill_to=WHO)]
    assert chunks[-1].truncated and not any(c.truncated for c in chunks[:-1])
    [rec] = seen
    assert rec.outcome is Outcome.OK and rec.truncated
    await router.close()
    await server.stop()


async def test_parallel_calls_cut_by_llama_cpp_lower_the_concurrency_and_all_finish(store) -> None:
    server = await served_by(LLAMA_CPP, tokens_per_s=400)
    router = router_for(server, store, "openai:smollm2")
    hosts = ["alpha", "bravo", "charlie", "delta"]
    requests = [Request.of("Notes.", f"the disk is full on {host}") for host in hosts]
    answers = await asyncio.gather(*(router.answer(Task.SUMMARIZE, r, bill_to=WHO) for r in requests))
    for host, answer in zip(hosts, answers, strict=True):
        assert answer.text.startswith("Summary:") and host in answer.text and not answer.truncated
    cut = [s for s in server.served if s.outcome == "cut"]
    assert cut, "the fake llama.cpp server cut no stream: the test did not exercise the cut"
    recs = await records(store)
    assert len(recs) == len(server.received)
    assert sum(r.outcome is Outcome.OK for r in recs) == 4
    assert sum(r.outcome is Outcome.INTERRUPTED for r in recs) == len(cut)
    learned = await router.servers.get(where(server, "smollm2"))
    assert learned.max_concurrency == 1
    # Remembered in the store: a new router (another replica) sends one call at a time from the start.
    other = router_for(server, store, "openai:smollm2")
    server.served.clear()
    await asyncio.gather(*(other.answer(Task.SUMMARIZE, r, bill_to=WHO) for r in requests))
    assert not [s for s in server.served if s.outcome == "cut"]
    await router.close()
    await other.close()
    await server.stop()


async def test_no_first_token_while_siblings_run_means_a_queueing_server_so_fewer_at_once(store) -> None:
    # llama-cpp-python with interrupt_requests off answers 200 at once and then queues: queue time would count
    # against the first-token timeout. The router takes such timeouts as overrun and sends fewer at once.
    server = await served_by(LLAMA_CPP_QUEUEING, tokens_per_s=100)  # ~0.6 s per answer
    slow = {"openai:*": EntryOptions(first_token_timeout_s=0.4)}
    router = router_for(server, store, "openai:smollm2", options=slow)
    hosts = ["alpha", "bravo", "charlie"]
    answers = await asyncio.gather(*(
        router.answer(Task.SUMMARIZE, Request.of("Notes.", f"the disk is full on {h}"), bill_to=WHO) for h in hosts
    ))
    assert all(h in a.text for h, a in zip(hosts, answers, strict=True))
    recs = await records(store)
    assert any("timeout" in r.error for r in recs), "nothing timed out: the test did not exercise the queue"
    assert sum(r.outcome is Outcome.OK for r in recs) == 3
    assert (await router.servers.get(where(server, "smollm2"))).max_concurrency == 1
    await router.close()
    await server.stop()


async def test_the_first_token_clock_starts_when_the_server_accepts_the_request(store) -> None:
    server = await FakeLLMServer().start()
    timeouts = Timeouts(connect_s=2, first_token_s=0.5, idle_s=5, accept_s=10)
    router = router_for(server, store, "openai:gpt-4o-mini", timeouts=timeouts)
    server.enqueue_fault(Fault.stall(1.0, before_headers=True))  # queued by a busy server, then quick
    answer = await router.answer(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)
    assert answer.text.startswith("Summary:")
    [rec] = await records(store)
    assert rec.outcome is Outcome.OK and len(server.received) == 1
    await router.close()
    await server.stop()


async def test_the_first_token_timeout_is_a_per_route_setting(store) -> None:
    server = await FakeLLMServer().start()
    timeouts = Timeouts(connect_s=2, first_token_s=0.3, idle_s=5)
    slow = {"openai:slow-model": EntryOptions(first_token_timeout_s=5)}
    router = router_for(server, store, "openai:slow-model", timeouts=timeouts, options=slow)
    server.enqueue_fault(Fault.stall(1.0))  # after the headers, before the first token
    assert (await router.answer(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)).text
    assert len(server.received) == 1
    impatient = router_for(server, store, "openai:other-model", timeouts=timeouts)
    impatient._max_retries = 0
    server.enqueue_fault(Fault.stall(1.0))
    with pytest.raises(LLMError) as err:
        await impatient.answer(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)
    assert err.value.kind == "timeout"
    await router.close()
    await impatient.close()
    await server.stop()


# ---- context windows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "model", "window"),
    [(LLAMA_CPP, "smollm2", 8192), (VLLM, "Qwen/Qwen2.5-7B-Instruct", 32768), (OLLAMA, "llama3.2:latest", 2048)],
    ids=["llama.cpp /props", "vLLM max_model_len", "Ollama /api/show"],
)
async def test_the_context_window_comes_from_the_server(store, profile, model, window) -> None:
    server = await served_by(profile)
    router = router_for(server, store, f"openai:{model}")
    assert await router.context_budget(Task.SUMMARIZE) == window - 300
    # A setting wins over what the server says.
    fixed = router_for(server, store, f"openai:{model}", options={"openai:*": EntryOptions(context_window=4000)})
    assert await fixed.context_budget(Task.SUMMARIZE) == 4000 - 300
    await router.close()
    await fixed.close()
    await server.stop()


async def test_a_context_overflow_answer_teaches_a_smaller_window(store) -> None:
    server = await served_by(VLLM)
    router = router_for(server, store, "openai:Qwen/Qwen2.5-7B-Instruct", max_tokens=1000)
    prompt = "word " * 40_000  # ~40k tokens: past 32,768
    with pytest.raises(LLMError) as err:
        await router.answer(Task.SUMMARIZE, Request.of("s", prompt), bill_to=WHO)
    assert err.value.kind == "context_length_exceeded" and len(server.received) == 1  # not retried
    # The window learned is in the bot's own token count (tiktoken, or its generous estimate in a clone without
    # the encodings): below what the overflowing request needed, and the budget never above it.
    learned = (await router.servers.get(where(server, "Qwen/Qwen2.5-7B-Instruct"))).context_window
    assert learned is not None and learned < count_tokens(prompt) + 1000
    assert await router.context_budget(Task.SUMMARIZE) <= min(32768, learned) - 1000
    await router.close()
    await server.stop()


# ---- through the console: summaries against each profile ----------------------------------------------------


async def app_for(tmp_path: Path, server: FakeLLMServer, **overrides: object) -> App:
    settings = load_settings(
        db=str(tmp_path / "bot.db"), redis_url=None, openai_api_key="sk-local",
        openai_base_url=server.openai_base_url, routes={t.value: ["openai:smollm2"] for t in Task}, **overrides,
    )
    return await build_app(settings)


async def summarize_thread(app: App, messages: list[tuple[str, str]]) -> str:
    out = io.StringIO()
    console = Console(app, ConsolePlatform(out=out), out=out)
    for i, (user, text) in enumerate(messages):
        await console.handle(channel="support", user=user, text=text, thread=None if i == 0 else THREAD,
                             ts=f"{1000 + i}.000000")
    await console.handle(channel="support", user="asker", text="@bot summarize", thread=THREAD)
    return console.replies[-1]


async def test_a_thread_past_llama_cpps_context_is_replanned_and_every_message_reaches_it(tmp_path) -> None:
    # llama-cpp-python's server does not say its context (no /props): the bot assumes the table's 32k, the
    # stream comes back empty, asked again whole it answers 400 context_length_exceeded with the window, the
    # router learns it and the summary is planned again in parts that fit.
    server = await served_by(LLAMA_CPP_PYTHON)
    app = await app_for(tmp_path, server)
    messages = irc_messages()[:700]
    reply = await summarize_thread(app, messages)
    assert reply.startswith("Summary:") and "no text" not in reply
    assert [s for s in server.served if s.outcome == "overflow"], "nothing overflowed: the test proves nothing"
    answered = [s for s in server.served if s.outcome == "complete" and "compact notes" in s.request.system]
    sent = "\n".join(s.request.user_text for s in answered)
    assert [t for _, t in messages if t not in sent] == []
    recs = await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    assert len(recs) == len(server.received)
    assert all(r.outcome is not Outcome.OK for r in recs if r.error)
    assert (await app.llm.servers.get(where(server, "smollm2"))).context_window is not None
    await app.close()
    await server.stop()


async def test_ollama_small_context_means_parts_that_are_never_truncated(tmp_path) -> None:
    server = await served_by(OLLAMA)
    app = await app_for(tmp_path, server)
    messages = irc_messages()[:200]
    reply = await summarize_thread(app, messages)
    assert reply.startswith("Summary:")
    assert server.truncated_prompts == 0
    assert len([r for r in server.received if "compact notes" in r.system]) >= 3
    await app.close()
    await server.stop()


async def test_a_summary_cut_by_the_output_limit_says_so_to_the_user(tmp_path) -> None:
    server = await served_by(VLLM)
    app = await app_for(tmp_path, server, max_tokens={"summarize": 8})
    reply = await summarize_thread(app, [("alice", "the build fails on arm64"), ("bob", "try the nightly")])
    assert CUT_SHORT in reply
    await app.close()
    await server.stop()


async def test_one_failed_part_cancels_its_siblings(tmp_path) -> None:
    server = await served_by(VLLM, tokens_per_s=30)
    calls = 0

    def responder(req):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return FakeReply("notes " * 200)

    server.responder = responder
    app = await app_for(tmp_path, server, summary_input_tokens=600, max_retries=0)
    server.enqueue_fault(Fault.unauthorized())  # the first part call is refused for good
    reply = await summarize_thread(app, irc_messages()[:200])
    assert "refused" in reply or "API key" in reply
    recs = await app.store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    cancelled = [r for r in recs if r.error == "cancelled"]
    assert cancelled, "no sibling was cancelled"
    assert not any(r.outcome is Outcome.OK for r in recs)
    await app.close()
    await server.stop()


async def test_faq_against_llama_cpp_learns_json_object_once_and_writes_entries(tmp_path) -> None:
    rows = banking_inquiries(limit=120)
    by_schema = faq_responder({text[:500]: cat for text, cat in rows})

    def respond(req: ReceivedRequest) -> FakeReply:
        # json_object carries no schema name: tell the FAQ model which step this is by the schema's fields.
        fields = set((req.schema or {}).get("properties", {}))
        name = "sorting" if "groups" in fields else "entries" if "entries" in fields else req.schema_name
        return by_schema(dataclasses.replace(req, schema_name=name))  # type: ignore[return-value]

    server = await served_by(LLAMA_CPP)
    server.responder = respond
    app = await app_for(tmp_path, server)
    out = io.StringIO()
    console = Console(app, ConsolePlatform(out=out), out=out)
    now = datetime.now(UTC).timestamp()
    for i, (text, _) in enumerate(rows):
        await console.handle(channel="bank", user=f"u{i % 9}", text=text, ts=f"{now - 3600 + i:.6f}")
    await console.handle(channel="bank", user="admin", text="/faq")
    reply = console.replies[-1]
    assert "*FAQ*" in reply, reply
    formats = [(r.body.get("response_format") or {}).get("type") for r in server.received]
    assert formats.count("json_schema") == 1 and set(formats[1:]) == {"json_object"}  # refused once, then learned
    await app.close()
    await server.stop()


def test_overflow_messages_teach_a_window_in_the_bots_own_token_count() -> None:
    # Verbatim from llama-cpp-python 0.3.36 (measured) and Anthropic's wording.
    llama = ("This model's maximum context length is 8192 tokens. However, you requested 13212 tokens (13192 in "
             "the messages, 20 in the completion). Please reduce the length of the messages or completion.")
    assert is_context_overflow(llama) and is_context_overflow("", "context_length_exceeded")
    assert is_context_overflow("prompt is too long: 210000 tokens > 200000 maximum")
    assert not is_context_overflow("Input should be 'text' or 'json_object'")
    # The bot counted 12,000 for that prompt + answer: the window it believes is scaled by 8192/13212, less 3 %.
    assert window_after_overflow(12_000, llama) == int(12_000 * 8192 / 13212 * 0.97)
    assert window_after_overflow(12_000, "no numbers here") == int(12_000 * 0.85)


async def test_a_providers_own_way_is_not_remembered_as_learned(store) -> None:
    server = await FakeLLMServer().start()
    server.responder = lambda req: FakeReply(json.dumps({"category": "Billing", "priority": 2}))
    router = router_for(server, store, "anthropic:claude-haiku-4-5", task=Task.CLASSIFY)
    await router.structured(Task.CLASSIFY, Request.of("Sort.", "refund?"), Verdict, bill_to=WHO)
    assert server.received[0].forced_tool == "verdict"  # Anthropic's way: a forced tool
    key = EntryKey("anthropic", "claude-haiku-4-5", server.anthropic_base_url)
    assert await store.kv.get(key.store_key) is None  # nothing learned, nothing written
    await router.close()
    await server.stop()
