"""Fuzzing with hypothesis: Slack event payloads through the real Bolt app, message text through the assistant's
recorder, and stream chunk boundaries (down to the byte, inside multi-byte UTF-8 characters) through the real
OpenAI and Anthropic SDKs and the model router.

The splitting and mention-defanging invariants are fuzzed in tests/test_textsplit.py, tests/test_safety.py and
tests/test_live_reply.py; they are not repeated here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import App, build_app
from bot.inquiries import is_inquiry
from bot.settings import load_settings
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, MessageRef
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import Route, RouteEntry
from llm.types import Attribution, Request, Task
from tests.fakes import llm_wire as wire
from tests.fakes import slack_payloads as payloads
from tests.test_slack_adapter import Harness, _harness

# Each fuzzed test reuses one app (and its fake servers) across examples: building them per example would cost
# seconds, and state carried between examples is part of what is being fuzzed.
EXAMPLES = {"events": 70, "record": 150, "stream": 40}


def reused(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip

# ---- strategies --------------------------------------------------------------------------------------------

UNICODE = st.characters(exclude_categories=["Cs"])  # any code point Python can encode as UTF-8
SPECIAL = st.sampled_from([
    "<!channel>", "<!here|here>", "<@UBOT>", "<@UBOT> summarize", "<#C1|general>", "<https://x.io|link>", "&amp;&lt;",
    "\u202eevil\u202c", "\u200b\u200c\u200d\ufeff", "요약해 주세요?", "👩‍👩‍👧‍👦🇰🇷🔥", "مرحبا كيف حالك؟", "e\u0301\u0301", "\x00",
    "how do I reset my password?", "please help, the deploy fails",
])  # fmt: skip
HUGE = st.builds(lambda s, n: s * n, st.text(UNICODE, min_size=1, max_size=6), st.integers(2_000, 25_000))
TEXT = st.text(UNICODE, max_size=200) | SPECIAL | st.lists(SPECIAL, max_size=6).map(" ".join) | HUGE
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
TS = st.sampled_from(["1700000000.000100", "1700000000.000200", "0.0", "", "not-a-ts", "9" * 40]) | st.builds(
    lambda f: f"{f:.6f}", st.floats(0, 4e9)
)
EVENT_TYPES = st.sampled_from(["app_mention", "message", "message", "reaction_added", "member_joined_channel"])
SUBTYPES = st.sampled_from([None, "bot_message", "message_changed", "message_deleted", "thread_broadcast",
                            "channel_join", "file_share", "me_message"])  # fmt: skip
NESTED = st.fixed_dictionaries({"text": TEXT, "ts": TS, "user": st.sampled_from(["U1", "UBOT"])})
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.sampled_from(["C1", "C404", "D1"]),
    "user": st.sampled_from(["U1", "U2", "UBOT", "UNOBODY"]),
    "text": TEXT,
    "ts": TS,
    "thread_ts": TS,
    "subtype": SUBTYPES,
    "bot_id": st.sampled_from(["BBOT", "BOTHER"]),
    "message": NESTED,
    "previous_message": NESTED,
    "deleted_ts": TS,
    "team": st.sampled_from(["T0FAKE", "TOTHER"]),
}


@st.composite
def slack_events(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed, signed Events API envelope whose event has random, missing or wrongly typed fields."""
    event: dict[str, Any] = {"type": draw(EVENT_TYPES | st.text(max_size=12))}
    for key, good in FIELDS.items():
        how = draw(st.sampled_from(["missing", "good", "good", "wrong"]))
        if how != "missing":
            event[key] = draw(good) if how == "good" else draw(JSON)
    body = payloads.event_callback(event, event_id=draw(st.none() | st.text(min_size=1, max_size=20)))
    team = draw(st.sampled_from(["keep", "other", "missing", "wrong"]))
    if team == "other":
        body["team_id"] = "TOTHER"
    elif team == "missing":
        del body["team_id"]
    elif team == "wrong":
        body["team_id"] = draw(JSON)
    if body["event_id"] is None:
        del body["event_id"]
    return body


# ---- Slack events through the real Bolt app ----------------------------------------------------------------


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


Spawn = Callable[..., None]


def watching(spawn: Spawn, escaped: list[BaseException]) -> Spawn:
    """The intake's task spawner, noting every exception that escapes a background task."""

    def watched_spawn(work: Coroutine[Any, Any, None], *, name: str) -> None:
        async def watched() -> None:
            try:
                await work
            except Exception as exc:
                escaped.append(exc)
                raise

        spawn(watched(), name=name)

    return watched_spawn


@pytest.fixture
async def slack(tmp_path: Path) -> AsyncIterator[tuple[Harness, list[BaseException], ErrorLog]]:
    async for h in _harness(tmp_path):
        h.llm.tokens_per_s = None  # fuzzed mentions answer at once
        escaped: list[BaseException] = []
        # The intake's catch-all logs a failure at ERROR (checked below); this notes anything that gets past it.
        h.adapter.intake.work.spawn = watching(h.adapter.intake.work.spawn, escaped)  # type: ignore[method-assign]
        errors = ErrorLog()
        logging.getLogger().addHandler(errors)
        try:
            yield h, escaped, errors
        finally:
            logging.getLogger().removeHandler(errors)


def replies(h: Harness) -> int:
    bot = [m for m in h.slack.messages.values() if m.bot_id is not None]
    return len(bot) + len(h.slack.ephemerals)


@reused(EXAMPLES["events"])
@given(body=slack_events())
async def test_random_event_payloads_never_break_the_adapter(
    slack: tuple[Harness, list[BaseException], ErrorLog], body: dict[str, Any]
) -> None:
    h, escaped, errors = slack
    before, asked = replies(h), len(h.llm.received)
    result = await h.delivery.send_event(body)
    await h.adapter.idle()
    assert result.status < 500, result.body
    assert escaped == [], [repr(e) for e in escaped]
    assert [r.getMessage() for r in errors.records] == []
    if body["event"].get("type") != "app_mention":
        assert replies(h) == before and len(h.llm.received) == asked  # only a mention is answered


# ---- message text through the recorder ---------------------------------------------------------------------


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    app = await build_app(load_settings(db=str(tmp_path / "fuzz.db"), redis_url=None))
    yield app
    await app.close()


@reused(EXAMPLES["record"])
@given(text=TEXT, author=st.text(UNICODE, min_size=1, max_size=30), mentioned=st.booleans(),
       channel=st.text(UNICODE, min_size=1, max_size=20), threaded=st.booleans())  # fmt: skip
async def test_any_message_text_is_recorded_and_classified(
    app: App, text: str, author: str, mentioned: bool, channel: str, threaded: bool
) -> None:
    ref = MessageRef(ChannelRef("slack", "T1", channel), "m1", "m0" if threaded else None)
    message = ChatMessage(ref, author, author, text, datetime.now(UTC))
    inquiry = is_inquiry(message, bot_mentioned=mentioned)
    assert isinstance(inquiry, bool)  # total: an answer for every text, never an exception
    await app.assistant.record(message, mentions_bot=mentioned)
    [stored] = await app.store.messages.recent(ref.channel, limit=5)
    assert stored.text == text and stored.author == author
    collected = await app.store.inquiries.list(ref.channel, since=datetime.now(UTC) - timedelta(days=1))
    assert [i.text for i in collected] == ([text] if inquiry else [])
    await app.store.messages.forget_channel(ref.channel)
    await app.store.inquiries.forget_channel(ref.channel)


# ---- stream chunk boundaries at the byte level ---------------------------------------------------------------

STREAM_TEXT = st.lists(
    st.sampled_from([*"안녕하세요 요약 문제 해결됨", "👩\u200d👩\u200d👧\u200d👦", "🇰🇷", "🔥", "é", "e\u0301", "م", "\u200b", "a",
                     "\n"]) | UNICODE,
    min_size=1,
    max_size=80,
).map("".join)


def _frame(payload: dict[str, Any], event: str | None = None) -> bytes:
    # Raw UTF-8, as the providers send it (json.dumps would otherwise escape every non-ASCII character).
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


def openai_stream(pieces: list[str], model: str) -> bytes:
    cid, created = "chatcmpl-fuzz", 1_700_000_000
    frames = [_frame(wire.openai_chunk(cid, model, created, [wire.openai_choice_delta({"role": "assistant",
                                                                                       "content": ""})]))]  # fmt: skip
    frames += [_frame(wire.openai_chunk(cid, model, created, [wire.openai_choice_delta({"content": p})]))
               for p in pieces]  # fmt: skip
    frames.append(_frame(wire.openai_chunk(cid, model, created, [wire.openai_choice_delta({}, "stop")])))
    usage = wire.openai_usage(prompt_tokens=12, cached_tokens=0, completion_tokens=len(pieces))
    frames.append(_frame(wire.openai_chunk(cid, model, created, [], usage=usage)))
    return b"".join(frames) + b"data: [DONE]\n\n"


def anthropic_stream(pieces: list[str], model: str) -> bytes:
    usage = wire.anthropic_usage(input_tokens=12, cache_read=0, write_5m=0, write_1h=0, output_tokens=1)
    start = wire.anthropic_message("msg_fuzz", model, content=[], stop_reason=None, usage=usage)
    frames = [
        _frame({"type": "message_start", "message": start}, "message_start"),
        _frame({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start"),  # fmt: skip
        _frame({"type": "ping"}, "ping"),
    ]
    frames += [_frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                      "content_block_delta") for p in pieces]  # fmt: skip
    frames += [
        _frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _frame({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)}}, "message_delta"),  # fmt: skip
        _frame({"type": "message_stop"}, "message_stop"),
    ]
    return b"".join(frames)


class ChoppedStreams:
    """Serves the next prepared SSE body in pieces of the prepared byte sizes, one write each."""

    def __init__(self) -> None:
        self.body = b""
        self.sizes: list[int] = [1]
        self.served = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                               "x-request-id": "req_fuzz", "request-id": "req_fuzz"})  # fmt: skip
        await response.prepare(request)
        at, i = 0, 0
        while at < len(self.body):
            size = self.sizes[i % len(self.sizes)]
            await response.write(self.body[at : at + size])
            await asyncio.sleep(0)  # let each piece leave on its own
            at, i = at + size, i + 1
        await response.write_eof()
        self.served += 1
        return response

    async def start(self) -> ChoppedStreams:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._serve)
        app.router.add_post("/v1/messages", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def chopped() -> AsyncIterator[tuple[ChoppedStreams, dict[str, ModelRouter], SqliteStore]]:
    server = await ChoppedStreams().start()
    store = await SqliteStore(":memory:").open()
    routers = {}
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")):
        entry = RouteEntry.parse(f"{provider}:{model}", max_tokens=300, temperature=0.0)
        routers[provider] = create_router(
            openai_api_key="sk-test", openai_base_url=f"http://127.0.0.1:{server.port}/v1",
            anthropic_api_key="sk-ant-test", anthropic_base_url=f"http://127.0.0.1:{server.port}",
            routes={Task.SUMMARIZE: Route(Task.SUMMARIZE, (entry,), 0)}, prices=PriceTable(), ledger=store.ledger,
            cache=None, timeouts=Timeouts(connect_s=5, first_token_s=10, idle_s=10), max_retries=0,
        )  # fmt: skip
    yield server, routers, store
    for router in routers.values():
        await router.close()
    await store.close()
    await server.close()


def cuts(text: str) -> st.SearchStrategy[list[str]]:
    """The text cut into SSE pieces at random character positions."""
    return st.sets(st.integers(1, max(1, len(text) - 1)), max_size=12).map(
        lambda points: [text[a:b] for a, b in zip([0, *sorted(points)], [*sorted(points), len(text)], strict=True)]
    )


WHO = Attribution("slack", "T1", "C1", "U1", "summary")
BUILD: dict[str, Callable[[list[str], str], bytes]] = {"openai": openai_stream, "anthropic": anthropic_stream}
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


@reused(EXAMPLES["stream"])
@given(data=st.data(), text=STREAM_TEXT, provider=st.sampled_from(["openai", "anthropic"]),
       sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8))  # fmt: skip
async def test_stream_chunks_split_inside_utf8_characters_reassemble_exactly(
    chopped: tuple[ChoppedStreams, dict[str, ModelRouter], SqliteStore],
    data: st.DataObject, text: str, provider: str, sizes: list[int],
) -> None:  # fmt: skip
    server, routers, store = chopped
    pieces = [p for p in data.draw(cuts(text)) if p]
    server.body, server.sizes = BUILD[provider](pieces, MODEL[provider]), sizes
    received = [c.text async for c in routers[provider].stream(Task.SUMMARIZE, Request.of("Sum.", "x"), bill_to=WHO)]
    assert "".join(received) == text
    records = await store.ledger.records(since=datetime.now(UTC) - timedelta(hours=1))
    assert len(records) == server.served  # every call recorded, with the usage the stream reported
    assert records[-1].usage.output == len(pieces)
