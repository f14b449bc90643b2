"""/faq from the team's own answers: grounded entries with sources, questions nobody answered, incremental
refresh — through the router, the real OpenAI SDK and the fake model server, on the SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.faq import FaqWriter
from bot.faq_answers import collect, resolution
from bot.faq_doc import FaqState
from bot.inquiries import is_inquiry, to_inquiry
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, MessageRef
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import build_routes
from llm.types import Attribution, Task
from tests.fakes.faq_model import MADE_UP, faq_responder
from tests.fakes.llm_server import FakeLLMServer

CHANNEL = ChannelRef("slack", "T1", "C1")
WHO = Attribution("slack", "T1", "C1", "U0", "faq")
T0 = datetime.now(UTC) - timedelta(hours=5)


def topic(text: str) -> str:
    """The fake's labels: the first topic word the question names."""
    for word in ("vpn", "printer", "password", "invoice", "laptop"):
        if word in text.lower():
            return word.title()
    return "Other"


async def link(ref: MessageRef) -> str:
    return f"https://chat.example/{ref.channel.channel}/{ref.message_id}"


@dataclass
class Bench:
    server: FakeLLMServer
    store: SqliteStore
    router: ModelRouter
    n: int = 0

    def writer(self, **kw: object) -> FaqWriter:
        return FaqWriter(llm=self.router, store=self.store, **kw)  # type: ignore[arg-type]

    async def say(self, author: str, text: str, *, thread: str | None = None, is_bot: bool = False) -> str:
        self.n += 1
        mid = f"{self.n:04d}"
        ref = MessageRef(CHANNEL, mid, thread)
        msg = ChatMessage(ref, author, author.title(), text, T0 + timedelta(minutes=self.n), is_bot=is_bot)
        await self.store.messages.add(msg)
        if is_inquiry(msg):
            await self.store.inquiries.add(to_inquiry(msg))
        return mid

    async def run(self, writer: FaqWriter | None = None):  # type: ignore[no-untyped-def]
        shown: list[str] = []
        result = await (writer or self.writer()).run(
            CHANNEL, days=1, bill_to=WHO, progress=shown.append, link_for=link
        )
        return result, shown

    def calls(self, schema: str) -> list[str]:
        return [r.user_text for r in self.server.received if r.schema_name == schema]


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    store = await SqliteStore(str(tmp_path / "faq.db")).open()
    async with FakeLLMServer(responder=faq_responder(label=topic)) as server:
        router = create_router(
            openai_api_key="sk-test",
            openai_base_url=server.openai_base_url,
            anthropic_api_key=None,
            anthropic_base_url=None,
            routes=build_routes(providers=["openai"], cache_ttl_s={t.value: 0 for t in Task}),
            prices=PriceTable(),
            ledger=store.ledger,
            cache=None,
            timeouts=Timeouts(5, 30, 30),
        )
        yield Bench(server, store, router)
        await router.close()
    await store.close()


async def seed(b: Bench) -> dict[str, str]:
    ids = {}
    ids["vpn_q"] = await b.say("ann", "How do I connect to the VPN from home?")
    ids["vpn_a"] = await b.say(
        "bob", "Install the client from the portal and sign in with SSO", thread=ids["vpn_q"]
    )
    ids["vpn_thanks"] = await b.say("ann", "thanks bob, that worked", thread=ids["vpn_q"])
    ids["printer_q"] = await b.say("cat", "Why does the printer on floor 3 jam every morning?")
    ids["printer_self"] = await b.say("cat", "still jammed this morning, no luck", thread=ids["printer_q"])
    ids["invoice_q"] = await b.say("dan", "Where can I download last month's invoice?")
    ids["invoice_bot"] = await b.say(
        "bot", "Summary: dan asks about invoices", thread=ids["invoice_q"], is_bot=True
    )
    return ids


async def test_entries_are_written_from_the_team_replies_and_cite_them(bench: Bench) -> None:
    ids = await seed(bench)
    result, shown = await bench.run()
    assert [f.category for f in result.faqs] == ["Vpn"]
    (vpn,) = result.faqs
    assert [s.message_id for s in vpn.sources] == [ids["vpn_a"]]
    assert vpn.sources[0].link == f"https://chat.example/C1/{ids['vpn_a']}"
    assert "Install the client from the portal" in vpn.answer
    # The writer saw the question and bob's reply with its label, never the asker's own or the bot's messages.
    (call,) = bench.calls("entries")
    assert "How do I connect to the VPN" in call and "[A1] Bob: Install the client" in call
    assert "Printer" not in call and "Invoice" not in call and "thanks bob" not in call
    # Questions nobody else answered are listed as such, not written as if answered.
    assert {t.category for t in result.unanswered} == {"Printer", "Invoice"}
    text = result.to_text()
    assert "*Asked but not answered yet*" in text and "floor 3" in text
    assert f"[1](https://chat.example/C1/{ids['vpn_a']})" in text
    assert any("reading the team's answers" in s for s in shown)


async def test_made_up_ids_are_dropped_and_an_entry_without_a_real_source_is_not_published(
    bench: Bench,
) -> None:
    bench.server.responder = faq_responder(
        label=topic, bad=frozenset({"made_up_ids", "no_sources", "unasked_category"})
    )
    ids = await seed(bench)
    result, _ = await bench.run()
    real = {ids["vpn_a"]}
    assert result.faqs and all({s.message_id for s in f.sources} <= real and f.sources for f in result.faqs)
    assert all(f.category == "Vpn" for f in result.faqs)  # the entry filed under an unasked category is gone
    assert result.dropped_sources >= 2 and result.rejected == 2
    # The two refused entries' questions join the Vpn topic of "not answered yet".
    vpn_open = next(t for t in result.unanswered if t.category == "Vpn")
    assert vpn_open.count == 2 and "made-up message" in vpn_open.examples[0]
    assert MADE_UP not in result.to_text()


async def test_a_second_run_with_nothing_new_says_so_and_calls_no_model(bench: Bench) -> None:
    await seed(bench)
    first, _ = await bench.run()
    before = len(bench.server.received)
    # Another replica: a new writer on the same store finds the state the first one left.
    again, _ = await bench.run(bench.writer())
    assert again.unchanged and again.faqs == first.faqs
    assert len(bench.server.received) == before


async def test_refresh_sorts_only_new_questions_and_rewrites_only_categories_with_new_answers(
    bench: Bench,
) -> None:
    ids = await seed(bench)
    first, _ = await bench.run()
    sorted_before = len(bench.calls("sorting"))
    # New material: a laptop question with an answer (a new category), and a new answer to the printer question.
    lap = await bench.say("eve", "How do I get a replacement laptop charger?")
    await bench.say("bob", "Open a ticket with IT, chargers ship next day", thread=lap)
    await bench.say("fay", "Printer 3 needs the tray B paper, the A4 tray jams", thread=ids["printer_q"])
    # A near-duplicate of an already sorted question is not sorted again.
    await bench.say("gus", "how do i connect to the vpn from home")
    result, _ = await bench.run()
    # A refresh's few new questions are placed one label each (the short prompt and schema), not sorted afresh.
    assert len(bench.calls("sorting")) == sorted_before
    new_sorts = bench.calls("placing")
    assert len(new_sorts) == 1 and "laptop charger" in new_sorts[0] and "VPN" not in new_sorts[0]
    assert "Labels in use:" in new_sorts[0]  # existing labels are offered for reuse
    (write,) = bench.calls("entries")[1:]
    assert "Laptop" in write and "Printer" in write and "Vpn" not in write
    assert result.new_inquiries == 2 and result.rewritten == 2 and result.kept == 1
    kept = next(f for f in result.faqs if f.category == "Vpn")
    assert (kept.question, kept.answer, kept.sources) == (
        first.faqs[0].question,
        first.faqs[0].answer,
        first.faqs[0].sources,
    )  # kept verbatim …
    assert (
        first.faqs[0].covers == 1 and kept.covers == 2
    )  # … and recounted: the near-duplicate asked it again
    assert {t.category for t in result.unanswered} == {"Invoice"}
    vpn_group = next(t for t in result.faqs if t.category == "Vpn")
    assert vpn_group.sources[0].message_id == ids["vpn_a"]


async def test_an_update_sends_the_current_entries_and_only_the_new_replies(bench: Bench) -> None:
    ids = await seed(bench)
    await bench.run()
    await bench.say("hal", "Or use the web VPN at vpn.example if the client fails", thread=ids["vpn_q"])
    result, _ = await bench.run()
    (write,) = bench.calls("entries")[1:]
    assert "Current entries:" in write and "sources: [A1]" in write
    assert "web VPN" in write and "[A2] Hal:" in write
    assert "Install the client from the portal and sign in with SSO" not in write.split("New questions")[1]
    assert result.rewritten == 1 and not result.unchanged


async def test_the_state_survives_a_round_trip_through_json(bench: Bench) -> None:
    await seed(bench)
    result, _ = await bench.run()
    state = await bench.writer().state(CHANNEL)
    assert FaqState.loads(state.dumps()).result == result == state.result
    assert FaqState.loads("not json").labels == {} and FaqState.loads('{"v": 0}').result is None


def msg(mid: str, author: str, text: str) -> ChatMessage:
    return ChatMessage(MessageRef(CHANNEL, mid, "1"), author, author, text, T0)


def test_the_reply_the_asker_thanked_and_staff_replies_come_first() -> None:
    thread = [
        msg("1", "ann", "how do I reset my password?"),
        msg("2", "bob", "did you try turning it off and on again"),
        msg("3", "cat", "use the self-service page at id.example/reset"),
        msg("4", "ann", "thanks cat, that did it"),
        msg("5", "dan", "np"),
        msg("6", "sue", "IT note: resets take five minutes to propagate"),
    ]
    got = resolution(thread, question_id="1", asker="ann", staff=frozenset({"sue"}))
    assert [a.ref.message_id for a in got] == ["3", "6", "2"]
    assert got[0].thanked and got[1].staff and not got[2].thanked


def test_a_question_back_is_not_an_answer_unless_the_asker_thanked_it() -> None:
    # Ubuntu IRC lines: helpers asking back are clarifying, not answering.
    thread = [
        msg("1", "benh", "is it possible (or desirable) to dist-upgrade to hoary?"),
        msg("2", "bob2", "benh`: are you willing to deal with broken things and to file bug reports?"),
        msg("3", "HrdwrBoB", "benh`: yes and maybe"),
        msg("4", "max", "did you try apt-get dist-upgrade?"),
        msg("5", "benh", "thanks max, that did it"),
    ]
    got = resolution(thread, question_id="1", asker="benh", staff=frozenset())
    assert [a.ref.message_id for a in got] == ["4", "3"]  # the thanked one stays, the unthanked question goes


def test_a_long_thread_is_trimmed_to_the_replies_that_matter() -> None:
    thread = [msg("1", "ann", "why is the build red?")]
    thread += [msg(str(i), f"u{i}", "a long reply about the build " * 60) for i in range(2, 30)]
    got = resolution(thread, question_id="1", asker="ann", staff=frozenset())
    assert 1 <= len(got) <= 3 and all(len(a.text) < 600 for a in got)


async def test_a_question_asked_inside_a_thread_is_answered_by_the_replies_after_it(bench: Bench) -> None:
    root = await bench.say("ann", "How do I connect to the VPN from home?")
    await bench.say("bob", "Install the client from the portal and sign in with SSO", thread=root)
    follow = await bench.say("cat", "Which printer driver does the VPN client need?", thread=root)
    later = await bench.say("dan", "The printer driver is on the wiki under Printing", thread=root)
    inquiries = await bench.store.inquiries.list(CHANNEL, since=T0)
    got = await collect(bench.store.messages, inquiries, staff=frozenset())
    assert [a.ref.message_id for a in got[follow]] == [later]
    assert later in {a.ref.message_id for a in got[root]}


async def test_another_period_is_recounted_without_calling_the_model(bench: Bench) -> None:
    await seed(bench)
    await bench.run()
    before = len(bench.server.received)
    other = await bench.writer().run(CHANNEL, days=2, bill_to=WHO, progress=lambda _: None, link_for=link)
    assert not other.unchanged and other.inquiries == 3 and len(bench.server.received) == before
