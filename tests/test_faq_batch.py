"""The scheduled FAQ refresh through the providers' Batch APIs: the real OpenAI and Anthropic SDKs against the fake
model server's batch endpoints, the real Slack client against the fake Slack (the canvas is the document)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import genai_prices
import pytest
from pydantic import BaseModel, SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.platform import SlackPlatform
from bot.app import App, build_app
from bot.faq import FaqWriter
from bot.faq_schedule import FaqSchedule
from bot.settings import Settings
from bot.types import ChannelRef, ChatMessage, Command, MessageRef
from llm import PriceTable, create_router
from llm.batch import BatchJob, is_batch
from llm.routes import build_routes
from llm.types import Attribution, LedgerRecord, Request, Task
from tests.fakes.faq_model import faq_responder
from tests.fakes.llm_server import LLAMA_CPP, FakeLLMServer
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_canvases import canvases

TEAM = "T0FAKE"
CHANNEL = ChannelRef("slack", TEAM, "C1")
POLL_S = 0.05


def topic(text: str) -> str:
    return "Vpn" if "vpn" in text.lower() else "Printers" if "print" in text.lower() else "Other"


@dataclass
class World:
    slack: FakeSlack
    llm: FakeLLMServer
    app: App
    platform: SlackPlatform
    schedule: FaqSchedule
    clock: float
    offset: timedelta = timedelta(0)

    async def say(self, user: str, text: str, *, thread: str | None = None) -> str:
        self.clock += 1
        ts = f"{self.clock:.6f}"
        await self.app.assistant.record(
            ChatMessage(MessageRef(CHANNEL, ts, thread), user, user, text, datetime.fromtimestamp(self.clock, UTC))
        )
        return ts

    async def faq(self) -> str:
        outcome = await self.app.assistant.faq(Command("faq", "7", CHANNEL, "UADMIN"), self.platform)
        return outcome.text

    def later(self, **delta: float) -> None:
        """The schedule's clock moves on (the store's own clock does not need to)."""
        self.offset += timedelta(**delta)

    async def scheduled_records(self) -> list[LedgerRecord]:
        since = datetime.now(UTC) - timedelta(hours=1)
        return [r for r in await self.app.store.ledger.records(since=since) if r.user == "scheduled"]


@pytest.fixture(params=["openai", "anthropic"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with FakeSlack() as slack, FakeLLMServer(responder=faq_responder(label=topic)) as llm:
        slack.add_channel("C1", name="support")
        slack.add_channel("CADMIN", name="bot-admin")
        keys = {f"{request.param}_api_key": SecretStr("x"), f"{request.param}_base_url": llm.openai_base_url
                if request.param == "openai" else llm.anthropic_base_url}  # fmt: skip
        settings = Settings(
            **keys,
            base_url_is_provider=True,  # priced like the provider itself
            db=str(tmp_path / "bot.db"),
            admins=["UADMIN"],
            admin_channel="CADMIN",
            faq_refresh_days=7,
        )
        app = await build_app(settings)
        app.llm.batches.poll_s = POLL_S
        platform = SlackPlatform(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), team_id=TEAM)
        schedule = app.faq_schedule(platform_for=lambda c: platform)
        w = World(slack, llm, app, platform, schedule, datetime.now(UTC).timestamp() - 3600)
        schedule.clock = lambda: datetime.now(UTC) + w.offset
        try:
            yield w
        finally:
            await app.close()


async def seed(w: World) -> str:
    q = await w.say("U1", "How do I connect to the VPN from home?")
    await w.say("U2", "Install the client from the portal, then sign in with SSO", thread=q)
    await w.say("U3", "Why does the printer on floor 3 jam?")
    await w.faq()
    return q


def batch_price(r: LedgerRecord) -> object:
    usage = genai_prices.Usage(
        input_tokens=r.usage.total_input,
        cache_read_tokens=r.usage.cache_read,
        cache_write_tokens=r.usage.cache_write_5m + r.usage.cache_write_1h,
        output_tokens=r.usage.output,
    )
    price = genai_prices.calc_price(usage, r.model, provider_id=r.provider, price_context={"processing": "batch"})
    return price.total_price


async def test_a_scheduled_refresh_goes_through_the_batch_apis_and_publishes(world: World) -> None:
    q = await seed(world)
    canvas = next(iter(canvases(world.slack).canvases.values()))
    assert len(canvas.versions) == 1
    assert await world.schedule.tick() == 0  # refreshed a moment ago: not due
    await world.say("U4", "Or use the web VPN at vpn.example when the client fails", thread=q)
    await world.say("U5", "How do I print double-sided?")
    await world.say("U6", "Printer settings, then Layout, then Two-sided", thread=await world.say("U7", "print duplex?"))
    world.later(days=8)
    streamed_before = len(world.llm.received)

    assert await world.schedule.tick() == 1

    assert len(canvas.versions) == 2 and "web VPN" in canvas.markdown and "Two-sided" in canvas.markdown
    assert len(world.llm.received) == streamed_before  # no call went the normal way
    records = await world.scheduled_records()
    # Sorting and writing (small topics: the cheap route), each answered inside a batch.
    assert {r.model for r in world.llm.batches.answered} == {r.model for r in records}
    assert len(world.llm.batches.batches) == 2 and len(records) == len(world.llm.batches.answered)
    assert {r.task for r in records} == {"classify", "faq_brief"} and all(r.feature == "faq" for r in records)
    for r in records:
        assert is_batch(r) and r.outcome == "ok" and not r.unpriced
        assert r.cost_usd == batch_price(r) and r.cost_usd > 0  # genai-prices' batch variant: half the list price
    # A day after that refresh, nothing is due; a week after it, with nothing new, no model is asked.
    world.offset = timedelta(days=1)
    assert await world.schedule.tick() == 0
    world.offset = timedelta(days=8)
    assert await world.schedule.tick() == 1
    assert len(world.llm.batches.batches) == 2 and len(canvas.versions) == 2


async def test_a_failed_batch_tells_the_admins_loses_nothing_and_is_retried(world: World) -> None:
    q = await seed(world)
    canvas = next(iter(canvases(world.slack).canvases.values()))
    before = canvas.markdown
    await world.say("U4", "Or use the web VPN at vpn.example when the client fails", thread=q)
    await world.say("U5", "Is there a VPN for phones?")
    world.later(days=8)
    world.llm.batches.end_next("expired")  # the sorting batch

    assert await world.schedule.tick() == 0

    (notice,) = [m.text for m in world.slack.messages_in("CADMIN")]
    assert "scheduled FAQ refresh" in notice and "expired" in notice and "stays as it was" in notice
    assert canvas.markdown == before and len(canvas.versions) == 1
    assert await world.scheduled_records() == []  # nothing was answered, nothing billed
    # Within the hour nobody tries again, whatever the number of replicas …
    assert await world.schedule.tick() == 0 and len(world.llm.batches.batches) == 1
    # … an hour later the next check does; this time sorting completes and the writing batch fails.
    world.later(hours=1)
    world.llm.batches.end_next("completed")
    world.llm.batches.end_next("failed")
    assert await world.schedule.tick() == 0
    assert len(world.llm.batches.batches) == 3 and canvas.markdown == before
    state = await world.app.assistant.faq_writer.state(CHANNEL)
    assert len(state.seen) == 4  # the sorting it paid for is kept
    world.later(hours=1)
    assert await world.schedule.tick() == 1
    assert "web VPN" in canvas.markdown and len(canvas.versions) == 2
    assert len(world.slack.messages_in("CADMIN")) == 2
    records = await world.scheduled_records()
    # The retry only wrote: the new question kept the label the second attempt's sorting gave it.
    assert [r.task for r in records].count("classify") == 1 and all(is_batch(r) for r in records)


async def crash(world: World, run: asyncio.Task[int]) -> None:
    """The replica running ``run`` dies: nothing it would do on its way out happens (its lock and lease stay)."""
    store = world.app.store

    async def nothing(*args: object, **kwargs: object) -> bool:
        return False

    release, delete = store.locks.release, store.kv.delete
    store.locks.release, store.kv.delete = nothing, nothing  # type: ignore[method-assign,assignment]
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    store.locks.release, store.kv.delete = release, delete  # type: ignore[method-assign]


async def test_a_batch_in_flight_survives_a_restart_and_is_polled_not_sent_again(world: World) -> None:
    q = await seed(world)
    canvas = next(iter(canvases(world.slack).canvases.values()))
    await world.say("U4", "Or use the web VPN at vpn.example when the client fails", thread=q)
    await world.say("U5", "How do I print double-sided?")
    await world.say("U6", "Printer settings, then Layout, then Two-sided", thread=await world.say("U7", "print duplex?"))
    world.later(days=8)
    world.llm.batches.delay_s = 2.0  # the sorting batch is still running when the replica dies
    run = asyncio.create_task(world.schedule.tick())
    # Until the sorting batch is sent and noted. (Killed between the two, a replica's restart sends it again: the
    # note is written after the server answers with the batch id. Crashing at the first sight of the batch on the
    # server made this test meet that window on a loaded machine: 3 batches.)
    note = f"batch-inflight:faq:{CHANNEL.key}:{Task.CLASSIFY.value}:0"
    for _ in range(500):
        if world.llm.batches.batches and await world.app.store.kv.get(note):
            break
        await asyncio.sleep(0.02)
    (sorting,) = world.llm.batches.batches
    assert await world.app.store.kv.get(note)
    await crash(world, run)
    world.llm.batches.delay_s = 0.2
    # The lock the dead run holds would keep the channel busy for hours; its lease, not renewed, says it died.
    assert await world.schedule.tick() == 0  # still within the lease: nobody takes over yet
    world.later(minutes=5)
    restarted = FaqSchedule(
        writer=FaqWriter(llm=world.app.llm, store=world.app.store, batch=world.app.llm),
        store=world.app.store,
        every_days=7,
        platform_for=lambda c: world.platform,
        admin_channel="CADMIN",
        clock=world.schedule.clock,
    )

    assert await restarted.tick() == 1

    # The sorting batch was polled to its end, not sent again; only the writing batch is new.
    assert len(world.llm.batches.batches) == 2 and sorting in world.llm.batches.batches
    assert "web VPN" in canvas.markdown and "Two-sided" in canvas.markdown and len(canvas.versions) == 2
    records = await world.scheduled_records()
    assert [r.task for r in records].count("classify") == 1  # billed once, by the replica that read the answers
    assert world.slack.messages_in("CADMIN") == []
    assert await world.app.store.kv.get("faq-run:" + CHANNEL.key) is None  # the taken-over lease is gone


class Answer(BaseModel):
    category: str
    n: int


class Ledger:
    def __init__(self) -> None:
        self.records: list[LedgerRecord] = []

    async def add(self, record: LedgerRecord) -> None:
        self.records.append(record)


class Memory:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


def openai_router(server: FakeLLMServer, ledger: Ledger, kv: Memory, *, self_hosted: bool = False):  # type: ignore[no-untyped-def]
    router = create_router(
        openai_api_key="x",
        openai_base_url=server.openai_base_url,
        anthropic_api_key=None,
        anthropic_base_url=None,
        routes=build_routes(providers=["openai"], overrides={}, max_tokens={}, temperature={}, cache_ttl_s={"classify": 0}),
        prices=PriceTable(),
        ledger=ledger,
        cache=kv,  # type: ignore[arg-type]
        base_url_is_provider=not self_hosted,
    )
    router.batches.poll_s = POLL_S
    return router


async def test_a_server_without_batch_endpoints_is_asked_the_normal_way_and_that_is_remembered() -> None:
    async with FakeLLMServer(profile=LLAMA_CPP) as server:
        kv, ledger = Memory(), Ledger()
        requests = [Request.of("Sort these.", f"question {i}") for i in range(3)]
        first = openai_router(server, ledger, kv, self_hosted=True)
        answers = await first.structured_batch(Task.CLASSIFY, requests, Answer, bill_to=Attribution(feature="faq"))
        answered = lambda: sum(1 for s in server.served if s.outcome == "complete")  # noqa: E731
        assert len(answers) == 3 and answered() == 3  # three normal calls (after learning json_object)
        assert not any(is_batch(r) for r in ledger.records)
        assert any(k.startswith("batch-unsupported:openai:") for k in kv.values)
        await first.close()
        # Another replica (same store) does not ask the server for batches again.
        second = openai_router(server, ledger, kv, self_hosted=True)
        tried: list[int] = []
        provider = second.providers["openai"]
        submit = provider.submit_batch  # type: ignore[attr-defined]

        async def counted(*args: object, **kwargs: object) -> str:
            tried.append(1)
            return await submit(*args, **kwargs)

        provider.submit_batch = counted  # type: ignore[attr-defined]
        await second.structured_batch(Task.CLASSIFY, requests, Answer, bill_to=Attribution(feature="faq"))
        assert tried == [] and answered() == 6
        await second.close()


async def test_a_request_that_errored_inside_a_finished_batch_is_asked_again_the_normal_way() -> None:
    async with FakeLLMServer() as server:
        kv, ledger = Memory(), Ledger()
        server.batches.error_lines = {"r1"}
        server.batches.poll_errors = 2  # polls the API refused meanwhile do not lose the batch
        router = openai_router(server, ledger, kv)
        requests = [Request.of("Sort these.", f"question {i}") for i in range(3)]
        answers = await router.structured_batch(Task.CLASSIFY, requests, Answer, bill_to=Attribution(feature="faq"))
        assert len(answers) == 3
        assert len(server.batches.answered) == 2 and len(server.received) == 1  # r1 alone went the normal way
        assert sorted(is_batch(r) for r in ledger.records) == [False, True, True]
        assert server.batches.poll_errors == 0 and len(server.batches.batches) == 1
        await router.close()


async def test_a_noted_batch_is_resumed_only_for_the_very_same_requests() -> None:
    async with FakeLLMServer() as server:
        kv, ledger = Memory(), Ledger()
        router = openai_router(server, ledger, kv)
        job = BatchJob(kv, "faq:slack:T1:C1")
        asked = [Request.of("Sort these.", f"question {i}") for i in range(2)]
        server.batches.delay_s = 2.0
        first = asyncio.create_task(router.structured_batch(Task.CLASSIFY, asked, Answer, bill_to=Attribution(), job=job))
        for _ in range(500):  # until the batch is sent and noted
            if any(k.startswith("batch-inflight:") for k in kv.values):
                break
            await asyncio.sleep(0.02)
        first.cancel()  # the process stops; the note stays
        with contextlib.suppress(asyncio.CancelledError):
            await first
        server.batches.delay_s = 0.2
        # Other requests (new questions came in meanwhile) are sent as a batch of their own …
        other = [*asked, Request.of("Sort these.", "question 2")]
        assert len(await router.structured_batch(Task.CLASSIFY, other, Answer, bill_to=Attribution(), job=job)) == 3
        assert len(server.batches.batches) == 2
        assert not any(k.startswith("batch-inflight:") for k in kv.values)  # read: the note is cleared
        await router.close()
