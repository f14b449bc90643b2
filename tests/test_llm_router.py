"""llm/ through the real openai and anthropic SDKs against the fake provider server over real sockets.

Invariant checked throughout: every request the server received has exactly one ledger record.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from pydantic import BaseModel

from bot.stores.sqlite import SqliteStore
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import Route, RouteEntry, build_routes
from llm.types import Attribution, LLMError, Outcome, Request, StructuredOutputError, Task
from tests.fakes.llm_server import FakeLLMServer, FakeReply, Fault

WHO = Attribution("slack", "T1", "C1", "U1", "summary")
LONG_SYSTEM = "You are a careful support summarizer. " * 400  # ~3,000 tokens: above every cache minimum


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))


def make_router(
    server: FakeLLMServer,
    store: SqliteStore,
    *,
    routes: dict[Task, Route] | None = None,
    timeouts: Timeouts | None = None,
    max_retries: int = 2,
    sleeps: Sleeps | None = None,
) -> ModelRouter:
    router = create_router(
        openai_api_key="sk-test",
        openai_base_url=server.openai_base_url,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=server.anthropic_base_url,
        routes=routes or build_routes(providers=["openai", "anthropic"]),
        prices=PriceTable(),
        ledger=store.ledger,
        cache=store.kv,
        timeouts=timeouts or Timeouts(connect_s=2, first_token_s=5, idle_s=5),
        max_retries=max_retries,
        base_url_is_provider=True,  # the fake server stands in for OpenAI and Anthropic: list prices apply
    )
    if sleeps is not None:
        router._sleep = sleeps  # test hook: observe the retry delays without waiting them out
    return router


def one_route(*specs: str, task: Task = Task.SUMMARIZE, cache_ttl_s: float = 0) -> dict[Task, Route]:
    entries = tuple(RouteEntry.parse(s, max_tokens=300, temperature=0.0) for s in specs)
    return {task: Route(task, entries, cache_ttl_s)}


async def records(store: SqliteStore) -> list:
    from datetime import UTC, datetime, timedelta

    return await store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))


async def stream_text(router: ModelRouter, request: Request, task: Task = Task.SUMMARIZE) -> str:
    return "".join([c.text async for c in router.stream(task, request, bill_to=WHO)])


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
async def test_streamed_call_records_exact_usage_and_cost(server, store, spec) -> None:
    router = make_router(server, store, routes=one_route(spec))
    text = await stream_text(router, Request.of("Summarize.", "alice: the build fails on arm64"))
    served = server.served[-1]
    assert text == served.text and text
    [rec] = await records(store)
    assert rec.outcome is Outcome.OK and not rec.usage.estimated
    assert rec.usage.input == served.reported.input and rec.usage.output == served.reported.output
    assert rec.cost_usd == PriceTable().cost(rec.model, rec.usage) > 0
    assert (rec.channel, rec.user, rec.feature, rec.task) == ("C1", "U1", "summary", "summarize")
    assert rec.ttft_s is not None and rec.latency_s >= rec.ttft_s
    await router.close()


async def test_anthropic_prompt_cache_marks_stable_prefix_and_reads_it_back(server, store) -> None:
    router = make_router(server, store, routes=one_route("anthropic:claude-sonnet-4-5"))
    for question in ("first thread", "second thread"):
        await stream_text(router, Request.of(LONG_SYSTEM, question))
    system = server.received[0].body["system"]
    assert system[0]["cache_control"] == {"type": "ephemeral"}
    first, second = await records(store)
    assert first.usage.cache_write_5m > 0 and first.usage.cache_read == 0
    assert second.usage.cache_read == first.usage.cache_write_5m and second.usage.cache_write_5m == 0
    assert second.saved_usd > 0 and second.cost_usd < first.cost_usd
    # Anthropic's input_tokens excludes cache reads: the fresh part is only the user message.
    assert second.usage.input < 50
    await router.close()


async def test_short_prefix_is_not_marked(server, store) -> None:
    router = make_router(server, store, routes=one_route("anthropic:claude-haiku-4-5"))
    await stream_text(router, Request.of("Short system prompt.", "hi"))
    assert "cache_control" not in server.received[0].body["system"][0]
    await router.close()


async def test_openai_cached_tokens_are_split_from_prompt_tokens(server, store) -> None:
    router = make_router(server, store, routes=one_route("openai:gpt-4.1-mini"))
    await stream_text(router, Request.of(LONG_SYSTEM, "one"))
    await stream_text(router, Request.of(LONG_SYSTEM, "two"))
    _, second = await records(store)
    raw = server.served[-1].raw_usage
    assert raw is not None
    cached = raw["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0
    assert second.usage.cache_read == cached
    assert second.usage.input == raw["prompt_tokens"] - cached  # never priced twice
    await router.close()


async def test_429_is_retried_after_the_servers_retry_after(server, store) -> None:
    sleeps = Sleeps()
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini"), sleeps=sleeps)
    server.enqueue_fault(Fault.rate_limited(retry_after=0.3))
    text = await stream_text(router, Request.of("s", "u"))
    assert text and sleeps.delays == [pytest.approx(0.3)]
    recs = await records(store)
    assert [r.outcome for r in recs] == [Outcome.ERROR, Outcome.OK]
    assert recs[0].cost_usd == 0 and "rate_limited" in recs[0].error
    assert len(recs) == len(server.received) == 2
    await router.close()


async def test_retry_after_ms_is_preferred(server, store) -> None:
    sleeps = Sleeps()
    router = make_router(server, store, routes=one_route("anthropic:claude-haiku-4-5"), sleeps=sleeps)
    server.enqueue_fault(Fault.rate_limited(retry_after=5, retry_after_ms=120))
    await stream_text(router, Request.of("s", "u"))
    assert sleeps.delays == [pytest.approx(0.12)]
    await router.close()


async def test_overload_exhausts_retries_then_falls_back_to_other_provider(server, store) -> None:
    sleeps = Sleeps()
    router = make_router(
        server, store, routes=one_route("anthropic:claude-sonnet-4-5", "openai:gpt-4.1"), max_retries=1, sleeps=sleeps
    )
    server.enqueue_fault(Fault.overloaded(api="anthropic"))
    server.enqueue_fault(Fault.overloaded(api="anthropic"))
    text = await stream_text(router, Request.of("s", "u"))
    assert text
    assert [r.api for r in server.received] == ["anthropic", "anthropic", "openai"]
    recs = await records(store)
    assert [(r.provider, r.outcome) for r in recs] == [
        ("anthropic", Outcome.ERROR),
        ("anthropic", Outcome.ERROR),
        ("openai", Outcome.OK),
    ]
    assert len(sleeps.delays) == 1  # backoff between the two anthropic attempts only
    await router.close()


@pytest.mark.parametrize("fault", [Fault.unauthorized(api="openai"), Fault.bad_request(api="openai")])
async def test_other_4xx_are_never_retried_but_fall_back(server, store, fault) -> None:
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"))
    server.enqueue_fault(fault)
    await stream_text(router, Request.of("s", "u"))
    assert [r.api for r in server.received] == ["openai", "anthropic"]
    await router.close()


async def test_auth_failure_everywhere_says_so_clearly(server, store) -> None:
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini"))
    server.enqueue_fault(Fault.unauthorized())
    with pytest.raises(LLMError) as err:
        await stream_text(router, Request.of("s", "u"))
    assert err.value.kind == "auth" and "API key" in str(err.value)
    assert len(server.received) == 1  # no retry storm on a bad key
    [rec] = await records(store)
    assert rec.outcome is Outcome.ERROR
    await router.close()


async def test_stall_before_first_token_ends_at_the_first_token_timeout(server, store) -> None:
    router = make_router(
        server,
        store,
        routes=one_route("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"),
        timeouts=Timeouts(connect_s=2, first_token_s=0.4, idle_s=5),
    )
    server.enqueue_fault(Fault.stall(30, api="openai"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    text = await stream_text(router, Request.of("s", "u"))
    assert text and loop.time() - started < 10  # bounded by the first-token timeout, not the 30 s stall
    recs = await records(store)
    assert [(r.provider, r.outcome) for r in recs] == [("openai", Outcome.ERROR), ("anthropic", Outcome.OK)]
    assert "timeout" in recs[0].error
    await router.close()


async def test_stall_mid_stream_ends_at_the_idle_timeout_keeping_the_text(server, store) -> None:
    router = make_router(
        server, store, routes=one_route("anthropic:claude-haiku-4-5"), timeouts=Timeouts(2, 5, idle_s=0.3)
    )
    server.enqueue_fault(Fault.stall(30, after_pieces=4))
    got: list[str] = []
    with pytest.raises(LLMError) as err:
        async for c in router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO):
            got.append(c.text)
    assert err.value.kind == "timeout" and err.value.partial_text == "".join(got) != ""
    [rec] = await records(store)
    assert rec.outcome is Outcome.INTERRUPTED and rec.usage.estimated and rec.usage.output > 0
    await router.close()


@pytest.mark.parametrize(
    "fault",
    [
        Fault.disconnect(after_pieces=5),
        Fault.stream_error(after_pieces=3),
        Fault.malformed_sse(after_pieces=3),
    ],
    ids=["disconnect", "overloaded_error_event", "malformed_sse"],
)
@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
async def test_cut_stream_keeps_the_text_and_records_an_interrupted_call(server, store, spec, fault) -> None:
    router = make_router(server, store, routes=one_route(spec))
    server.enqueue_fault(fault)
    got: list[str] = []
    with pytest.raises(LLMError) as err:
        async for c in router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO):
            got.append(c.text)
    assert err.value.partial_text == "".join(got) != ""
    assert server.served[-1].text.startswith(err.value.partial_text)
    [rec] = await records(store)
    assert rec.outcome is Outcome.INTERRUPTED and rec.usage.estimated
    assert rec.usage.output >= 3 and rec.cost_usd > 0
    assert len(server.received) == 1  # text was visible: never retried behind the user's back
    await router.close()


async def test_abandoned_stream_is_still_recorded(server, store) -> None:
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini"))
    server.tokens_per_s = 200
    agen = router.stream(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)
    async for _ in agen:
        break
    await agen.aclose()
    [rec] = await records(store)
    assert rec.outcome is Outcome.INTERRUPTED and rec.error == "cancelled"
    await router.close()


class Verdict(BaseModel):
    category: str
    priority: int


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
async def test_structured_output_is_validated(server, store, spec) -> None:
    server.responder = lambda req: FakeReply(json.dumps({"category": "Billing", "priority": 2}))
    router = make_router(server, store, routes=one_route(spec, task=Task.CLASSIFY))
    result = await router.structured(Task.CLASSIFY, Request.of("Sort.", "refund?"), Verdict, bill_to=WHO)
    assert result == Verdict(category="Billing", priority=2)
    req = server.received[0]
    if spec.startswith("openai"):
        fmt = req.body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    else:
        assert req.forced_tool == "verdict" and req.body["tool_choice"] == {"type": "tool", "name": "verdict"}
    await router.close()


async def test_invalid_structured_output_gets_one_repair_then_a_typed_error(server, store) -> None:
    answers = iter(['{"category": "Billing"}', json.dumps({"category": "Billing", "priority": 1})])
    server.responder = lambda req: FakeReply(next(answers))
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini", task=Task.CLASSIFY))
    result = await router.structured(Task.CLASSIFY, Request.of("Sort.", "refund?"), Verdict, bill_to=WHO)
    assert result.priority == 1
    assert "did not match" in server.received[1].user_text
    server.responder = lambda req: FakeReply("not json at all")
    with pytest.raises(StructuredOutputError):
        await router.structured(Task.CLASSIFY, Request.of("Sort.", "other"), Verdict, bill_to=WHO)
    assert len(await records(store)) == len(server.received) == 4
    await router.close()


async def test_response_cache_hits_are_recorded_and_scoped_to_the_channel(server, store) -> None:
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini", cache_ttl_s=3600))
    request = Request.of("Summarize.", "same thread")
    first = await stream_text(router, request)
    second = await stream_text(router, request)
    assert first == second and len(server.received) == 1
    miss, hit = await records(store)
    assert hit.outcome is Outcome.CACHED and hit.cache_hit and hit.cost_usd == 0
    assert hit.saved_usd == miss.cost_usd > 0
    other = Attribution("slack", "T1", "C2", "U1", "summary")
    "".join([c.text async for c in router.stream(Task.SUMMARIZE, request, bill_to=other)])
    assert len(server.received) == 2  # another channel never sees this channel's cached answer
    await router.close()


async def test_invalid_structured_answer_is_never_cached(server, store) -> None:
    answers = iter(["{}", json.dumps({"category": "A", "priority": 1}), json.dumps({"category": "B", "priority": 2})])
    server.responder = lambda req: FakeReply(next(answers))
    router = make_router(server, store, routes=one_route("openai:gpt-4o-mini", task=Task.CLASSIFY, cache_ttl_s=60))
    request = Request.of("Sort.", "q")
    assert (await router.structured(Task.CLASSIFY, request, Verdict, bill_to=WHO)).category == "A"
    # The same request again: the repaired answer was cached under the repair's key, the invalid one nowhere.
    assert (await router.structured(Task.CLASSIFY, request, Verdict, bill_to=WHO)).category == "B"
    await router.close()


async def test_unconfigured_task_says_which_settings_to_set(store) -> None:
    router = ModelRouter(providers={}, routes=build_routes(providers=[]), prices=PriceTable(), ledger=store.ledger)
    with pytest.raises(LLMError) as err:
        await router.complete(Task.SUMMARIZE, Request.of("s", "u"), bill_to=WHO)
    assert "OPENAI_API_KEY" in str(err.value)


async def test_ledger_keeps_every_record_across_a_mixed_fault_run(server, store) -> None:
    router = make_router(
        server,
        store,
        routes=one_route("anthropic:claude-haiku-4-5", "openai:gpt-4o-mini"),
        timeouts=Timeouts(2, 0.5, 0.5),
        sleeps=Sleeps(),
    )
    faults = [
        Fault.rate_limited(retry_after=0.01),
        Fault.server_error(500),
        Fault.overloaded(),
        Fault.stall(5),
        Fault.disconnect(after_pieces=2),
        Fault.stream_error(after_pieces=1),
    ]
    for f in faults:
        server.enqueue_fault(f)
    outcomes = []
    for i in range(8):
        try:
            await stream_text(router, Request.of("s", f"question {i}"))
            outcomes.append("ok")
        except LLMError as exc:
            outcomes.append(exc.kind)
    recs = await records(store)
    assert len(recs) == len(server.received)
    assert sum(r.cost_usd for r in recs) >= Decimal(0)
    assert "ok" in outcomes
