"""Benchmark: /faq from the team's own answers, on Ubuntu IRC support threads (questions with the replies that
answered them) and banking77 (questions nobody answered), against the seed's naive pipeline (one classification
call per inquiry, then one strong call per category with all its questions and replies), in one run, on the same
fake model and price table. Prints one JSON object.

    python -m tests.bench.faq [--data DIR_OR_RAW_FILE] [--banking CSV] [--n 1000]

Ubuntu IRC (jkkummerfeld/irc-disentanglement): each ``.annotation.txt`` links a message to the earlier one it
replies to; a conversation becomes a Slack-style thread, and a question's answers *in the data* are the replies
that descend from it, written by someone else. The fake model labels IRC questions by topic words (banking77 by
its own labels) and writes one entry per answered question from the replies it was shown: this measures
grounding, cost and plumbing, not writing quality. The response cache is off.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot import prompts
from bot.faq import Entries, FaqWriter, Sorting
from bot.faq_answers import collect
from bot.faq_doc import FaqResult, FaqState
from bot.inquiries import is_inquiry, to_inquiry
from bot.stores.sqlite import SqliteStore
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm import PriceTable, Timeouts, create_router
from llm.router import ModelRouter
from llm.routes import build_routes
from llm.types import Attribution, LedgerRecord, Request, Task
from tests.fakes.faq_model import faq_responder, write_entries
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest
from tests.transcripts import BANKING_SAMPLE, FIXTURES, irc_lines

IRC_DEFAULT = FIXTURES / "ubuntu-irc"
# Tokens are counted by tiktoken from the shared offline cache when there is one (as `make` and the tests do);
# without it the counts are estimates.
TIKTOKEN_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "tiktoken"
BANKING_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "banking77" / "train.csv"
NAIVE_ENTRIES = 3  # what the seed's writer asked for per category
REFRESH_NEW_SHARE = 0.10
EQUAL_COVERAGE_ENTRIES = 500  # ours may write as many entries as the naive one: every answered topic gets one
_TOPICS = [  # the fake model's labels for IRC questions: the first topic whose words a question uses
    (
        "Packages",
        r"\b(apt|apt-get|install|installing|package|packages|deb|synaptic|repo|repository|universe)\b",
    ),
    ("Sound", r"\b(sound|audio|alsa|pulse|pulseaudio|mp3|volume|speaker)\b"),
    ("Networking", r"\b(wifi|wireless|network|internet|dns|ip|ethernet|eth0|wlan0|router|dhcp|ping)\b"),
    ("Graphics", r"\b(xorg|x11|nvidia|ati|radeon|driver|display|resolution|screen|monitor|compiz|fglrx)\b"),
    ("Boot And Kernel", r"\b(boot|grub|kernel|module|modprobe|bios|initrd)\b"),
    ("Disks", r"\b(partition|mount|disk|fdisk|ntfs|fat32|usb|hdd|drive|fstab|format)\b"),
    ("Desktop", r"\b(gnome|kde|kubuntu|xfce|desktop|panel|nautilus|theme|window)\b"),
    ("Users And Permissions", r"\b(sudo|root|password|permission|permissions|chmod|chown|user|login)\b"),
    (
        "Upgrades",
        r"\b(upgrade|dist-upgrade|release|version|hardy|intrepid|jaunty|karmic|lucid|breezy|hoary)\b",
    ),
    ("Servers", r"\b(ssh|server|apache|mysql|samba|ftp|vnc|php)\b"),
]


def irc_topic(text: str) -> str:
    low = text.lower()
    for name, pattern in _TOPICS:
        if re.search(pattern, low):
            return name
    return "General"


# ---- data -------------------------------------------------------------------------------------------------------


@dataclass
class IrcChannel:
    messages: list[ChatMessage] = field(default_factory=list)  # oldest first, thread ids from the annotations
    answers: dict[str, set[str]] = field(
        default_factory=dict
    )  # message id → ids of others' replies descending


def _links(annotation: Path) -> tuple[dict[int, int], list[int]]:
    """(message line → the earliest line it replies to, every annotated line) of one annotation file."""
    parents: dict[int, int] = {}
    annotated: set[int] = set()
    for row in annotation.read_text(encoding="utf-8").splitlines():
        parts = row.split()
        if len(parts) < 2:
            continue
        a, b = int(parts[0]), int(parts[1])
        parent, child = min(a, b), max(a, b)
        annotated.add(child)
        if parent != child:
            parents[child] = min(parent, parents.get(child, parent))
    return parents, sorted(annotated)


def _root(parents: dict[int, int], i: int, kept: dict[int, object]) -> int:
    """The conversation's first message among those kept (a reply to a line before the annotated part starts
    its thread at its earliest kept ancestor)."""
    while i in parents and parents[i] in kept:
        i = parents[i]
    return i


def load_irc(data: Path, channel: ChannelRef, start: datetime) -> IrcChannel:
    """The annotated part of each log as one channel: a conversation becomes a thread under its first message."""
    raws = sorted(data.glob("*.raw.txt")) if data.is_dir() else [data]
    out = IrcChannel()
    at = start
    for raw in raws:
        lines = irc_lines(raw)
        parents, annotated = _links(raw.with_name(raw.name.replace(".raw.txt", ".annotation.txt")))
        spoken = {i: lines[i] for i in annotated if i < len(lines) and lines[i] is not None}
        prefix = raw.name.split(".")[0]
        mid = {i: f"{prefix}:{i:05d}" for i in spoken}
        children: dict[int, list[int]] = defaultdict(list)
        for child, parent in parents.items():
            children[parent].append(child)
        for i, line in spoken.items():
            assert line is not None
            at += timedelta(seconds=20)
            r = _root(parents, i, spoken)  # type: ignore[arg-type]
            thread = mid.get(r) if r != i else None
            nick, text = line
            out.messages.append(ChatMessage(MessageRef(channel, mid[i], thread), nick, nick, text, at))
            descendants: set[int] = set()
            stack = list(children[i])
            while stack:
                c = stack.pop()
                if c not in descendants:
                    descendants.add(c)
                    stack.extend(children[c])
            out.answers[mid[i]] = {
                mid[c]
                for c in descendants
                if c in spoken and spoken[c][0] != nick  # type: ignore[index]
            }
    return out


def load_banking(path: Path, n: int) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    random.Random(7).shuffle(rows)
    return rows[:n]


# ---- measuring ----------------------------------------------------------------------------------------------------


def totals(records: list[LedgerRecord]) -> dict[str, Any]:
    cost = sum((r.cost_usd for r in records), Decimal(0))
    return {
        "calls": len(records),
        "calls_by_task": {
            t: sum(1 for r in records if r.task == t) for t in sorted({r.task for r in records})
        },
        "input_tokens": sum(r.usage.total_input for r in records),
        "cache_read_tokens": sum(r.usage.cache_read for r in records),
        "output_tokens": sum(r.usage.output for r in records),
        # Every input token counts, cached ones included (total_input: uncached + cache reads + cache writes), so
        # moving tokens into the cache does not make a run look smaller; the same for every run compared.
        "tokens": sum(r.usage.total_input + r.usage.output for r in records),
        "cost_usd": str(cost.quantize(Decimal("0.000001"))),
    }


def grounding(
    result: FaqResult, irc: IrcChannel, inquiries: list[Inquiry], found: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Entries against the annotations: does each cite at least one message that really answers a question?"""
    real = set().union(*irc.answers.values()) if irc.answers else set()
    citing = [f for f in result.faqs if any(s.message_id in real for s in f.sources)]
    answered_in_data = {i.group for i in inquiries if irc.answers.get(i.message_id)}
    cited = {s.message_id for f in result.faqs for s in f.sources}
    covered = {i.group for i in inquiries if irc.answers.get(i.message_id, set()) & cited}
    return {
        "entries": len(result.faqs),
        "entries_citing_a_real_answer": len(citing),
        "share_citing_a_real_answer": round(len(citing) / max(1, len(result.faqs)), 3),
        "entries_claiming_an_answer_the_data_lacks": len(result.faqs) - len(citing),
        "questions_answered_in_data": len(answered_in_data),
        "answered_questions_cited_by_an_entry": len(covered & answered_in_data),
        "unanswered_questions_listed": result.open_questions,
        "unanswered_topics_listed": len(result.unanswered),
        # Questions the data answers for which the message log held no usable reply by someone else (mostly
        # one-word replies such as "yes", below the reply minimum): these are listed as not answered yet.
        **(
            {
                "answered_in_data_but_no_reply_found": sum(
                    1 for i in inquiries if irc.answers.get(i.message_id) and i.message_id not in found
                )
            }
            if found is not None
            else {}
        ),
        "entries_refused_no_real_source": result.rejected,
        "made_up_sources_dropped": result.dropped_sources,
    }


# ---- the seed's pipeline ----------------------------------------------------------------------------------------


async def naive(
    router: ModelRouter, store: SqliteStore, inquiries: list[Inquiry], who: Attribution
) -> tuple[int, int]:
    """One classification call per inquiry, then one strong call per category with every question and its whole
    thread, untrimmed. Returns (entries written, entries citing a message it was shown)."""
    labels: dict[str, list[Inquiry]] = defaultdict(list)
    gate = asyncio.Semaphore(8)

    async def classify(inq: Inquiry) -> None:
        request = Request.of(prompts.CLASSIFY_SYSTEM, prompts.transcript([f"1. {inq.text[:500]}"]))
        async with gate:
            result = await router.structured(Task.CLASSIFY, request, Sorting, bill_to=who)
        labels[result.groups[0].category if result.groups else "Other"].append(inq)

    await asyncio.gather(*(classify(i) for i in inquiries))

    async def write(category: str, questions: list[Inquiry]) -> tuple[int, int]:
        lines = [f"Category: {category} — asked {len(questions)} times — write {NAIVE_ENTRIES} entries"]
        shown: set[str] = set()
        n = 0
        for q in questions:
            lines.append(f"Q (1×) {q.text}")
            for m in await store.messages.thread(q.channel, q.message_id):
                if m.ref.message_id != q.message_id:  # the whole thread: the seed picked no replies
                    n += 1
                    shown.add(f"A{n}")
                    lines.append(f"  [A{n}] {m.author_name}: {m.text}")
        request = Request.of(prompts.FAQ_SYSTEM, prompts.transcript(["\n".join(lines)]))
        async with gate:
            entries = (await router.structured(Task.FAQ, request, Entries, bill_to=who)).entries
        return len(entries), sum(1 for e in entries if set(e.sources) & shown)

    done = await asyncio.gather(*(write(c, qs) for c, qs in labels.items()))
    return sum(a for a, _ in done), sum(b for _, b in done)


# ---- the run ------------------------------------------------------------------------------------------------------


class Model:
    """One fake model for every phase: banking77 questions by their labels, IRC questions by topic words."""

    def __init__(self) -> None:
        self.truth: dict[str, str] = {}
        self.bad: frozenset[str] = frozenset()

    def __call__(self, req: ReceivedRequest) -> FakeReply:
        if req.schema_name == "entries":
            return FakeReply(json.dumps({"entries": write_entries(req.user_text, bad=self.bad)}))
        return faq_responder(self.truth, label=irc_topic)(req)


async def record(store: SqliteStore, messages: list[ChatMessage]) -> None:
    """What the assistant does with every message it sees: keep it, and collect it when it is an inquiry."""
    for m in messages:
        await store.messages.add(m)
        if is_inquiry(m):
            await store.inquiries.add(to_inquiry(m))


async def run(data: Path, banking: Path, n: int) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(days=20)
    model = Model()
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore(str(Path(tmp) / "bench.db")).open()
        async with FakeLLMServer(responder=model) as server:
            router = create_router(
                openai_api_key="sk-bench",
                openai_base_url=server.openai_base_url,
                anthropic_api_key="sk-bench",
                anthropic_base_url=server.anthropic_base_url,
                routes=build_routes(
                    providers=["openai", "anthropic"], cache_ttl_s={t.value: 0 for t in Task}
                ),
                prices=PriceTable(),
                ledger=store.ledger,
                cache=None,
                timeouts=Timeouts(5, 60, 60),
                base_url_is_provider=True,  # the fake plays OpenAI and Anthropic: their list prices apply
            )
            router.batches.poll_s = 0.05

            def who(channel: ChannelRef, feature: str) -> Attribution:
                return Attribution(channel.platform, channel.workspace, channel.channel, "bench", feature)

            async def faq(
                channel: ChannelRef, feature: str, *, max_entries: int = EQUAL_COVERAGE_ENTRIES, batch: bool = False
            ) -> FaqResult:
                writer = FaqWriter(llm=router, store=store, max_entries=max_entries, batch=router if batch else None)
                return await writer.run(
                    channel, days=30, bill_to=who(channel, feature), progress=lambda _: None
                )

            # 1. IRC: ours, then the seed's pipeline, on the same channel and inquiries.
            full = ChannelRef("bench", "W", "irc")
            irc = load_irc(data, full, start)
            await record(store, irc.messages)
            inquiries = await store.inquiries.list(full, since=start)
            ours = await faq(full, "faq")
            naive_entries, naive_grounded = await naive(router, store, inquiries, who(full, "faq-naive"))
            # 2. The same channel's data with a model that cites made-up ids and claims answers without sources.
            bad = ChannelRef("bench", "W", "irc-bad")
            bad_irc = load_irc(data, bad, start)
            await record(store, bad_irc.messages)
            model.bad = frozenset({"made_up_ids", "no_sources", "unasked_category"})
            misbehaved = await faq(bad, "faq-bad")
            model.bad = frozenset()
            # 3. Refresh: a channel with the first 90 % of the messages, a full run, then the last 10 %, a refresh.
            inc = ChannelRef("bench", "W", "irc-refresh")
            inc_irc = load_irc(data, inc, start)
            cut = int(len(inc_irc.messages) * (1 - REFRESH_NEW_SHARE))
            await record(store, inc_irc.messages[:cut])
            await faq(inc, "faq-base")
            await record(store, inc_irc.messages[cut:])
            refreshed = await faq(inc, "faq-refresh")
            # 3b. The same refresh as the scheduled one makes it: through the Batch APIs.
            sched = ChannelRef("bench", "W", "irc-scheduled")
            sched_irc = load_irc(data, sched, start)
            await record(store, sched_irc.messages[:cut])
            await faq(sched, "faq-sched-base")
            await record(store, sched_irc.messages[cut:])
            scheduled = await faq(sched, "faq-scheduled", batch=True)
            # 4. banking77: questions nobody answered.
            rows = load_banking(banking, n)
            model.truth = {t[:500]: c for t, c in rows}
            bank = ChannelRef("bench", "W", "banking")
            await record(
                store,
                [
                    ChatMessage(
                        MessageRef(bank, f"b{i:05d}"),
                        f"u{i % 97}",
                        f"u{i % 97}",
                        t,
                        start + timedelta(minutes=i),
                    )
                    for i, (t, _) in enumerate(rows)
                ],
            )
            banked = await faq(bank, "faq-banking", max_entries=40)
            await router.close()
        records = await store.ledger.records(since=start)
        answers = await collect(store.messages, inquiries, staff=frozenset())
        state = FaqState.loads(await store.kv.get(FaqWriter.state_key(inc)))
        await store.close()

    def spent(feature: str) -> dict[str, Any]:
        return totals([r for r in records if r.feature == feature])

    ours_cost, naive_cost = spent("faq"), spent("faq-naive")
    ours_grounding = grounding(ours, irc, inquiries, answers)
    per_ours = Decimal(ours_cost["cost_usd"]) / max(1, ours_grounding["entries_citing_a_real_answer"])
    per_naive = Decimal(naive_cost["cost_usd"]) / max(1, naive_grounded)
    base_cost, refresh_cost = spent("faq-base"), spent("faq-refresh")
    refresh_ratio = refresh_cost["tokens"] / max(1, ours_cost["tokens"])
    topics = {c.replace("_", " ").title() for _, c in rows}
    open_topics = {t.category for t in banked.unanswered}
    return {
        "benchmark": "faq",
        "ubuntu_irc": {
            "data": str(data),
            "messages": len(irc.messages),
            "inquiries": len(inquiries),
            "distinct": ours.unique,
            "inquiries_with_replies_sent_to_the_writer": len(answers),
            "ours": {**ours_cost, **ours_grounding, "categories_with_entries": ours.categories},
            "naive": {**naive_cost, "entries": naive_entries, "entries_citing_a_reply_shown": naive_grounded},
            "cost_per_answered_entry_usd": {
                "ours": str(per_ours.quantize(Decimal("0.000001"))),
                "naive": str(per_naive.quantize(Decimal("0.000001"))),
            },
            "cost_ratio_per_answered_entry_naive_over_ours": round(float(per_naive / per_ours), 2)
            if per_ours
            else None,
            "aim_10x_cheaper_per_answered_entry": bool(per_ours and per_naive / per_ours >= 10),
            "aim_no_entry_claims_an_answer_the_data_lacks": ours_grounding[
                "entries_claiming_an_answer_the_data_lacks"
            ]
            == 0,
        },
        "misbehaving_model": {
            "behaviour": "cites a made-up id in every entry, adds an entry citing only a made-up id and one citing "
            "nothing, files an entry under a category it was not asked about",
            **grounding(misbehaved, bad_irc, inquiries),
        },
        "refresh": {
            "new_share_of_messages": REFRESH_NEW_SHARE,
            "base_run": base_cost,
            "refresh_run": refresh_cost,
            "full_run_tokens": ours_cost["tokens"],
            "refresh_tokens": refresh_cost["tokens"],
            "refresh_over_full_tokens": round(refresh_ratio, 3),
            "new_inquiries_sorted": refreshed.new_inquiries,
            "categories_rewritten": refreshed.rewritten,
            "categories_kept_verbatim": refreshed.kept,
            "labels_kept": len(state.labels),
            "aim_at_most_20_percent": refresh_ratio <= 0.20,
        },
        "scheduled_refresh_through_batch_apis": {
            "run": spent("faq-scheduled"),
            "same_entries_as_the_interactive_refresh": [f.question for f in scheduled.faqs]
            == [f.question for f in refreshed.faqs],
            "cost_over_the_interactive_refresh": round(
                float(Decimal(spent("faq-scheduled")["cost_usd"]) / Decimal(refresh_cost["cost_usd"])), 3
            )
            if Decimal(refresh_cost["cost_usd"])
            else None,
        },
        "banking77": {
            "data": str(banking),
            "inquiries": banked.inquiries,
            "topics": len(topics),
            "topics_listed_not_answered_yet": len(open_topics & topics),
            "entries": len(banked.faqs),
            "writing_calls": spent("faq-banking")["calls_by_task"].get("faq", 0),
            "aim_every_topic_not_answered_yet": topics <= open_topics and not banked.faqs,
            **{k: v for k, v in spent("faq-banking").items() if k in ("calls", "tokens", "cost_usd")},
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=IRC_DEFAULT, help="a directory of IRC .raw.txt/.annotation.txt"
    )
    ap.add_argument(
        "--banking", type=Path, default=BANKING_SHARED if BANKING_SHARED.exists() else BANKING_SAMPLE
    )
    ap.add_argument("--n", type=int, default=1000, help="banking77 questions")
    args = ap.parse_args()
    if "TIKTOKEN_CACHE_DIR" not in os.environ and TIKTOKEN_SHARED.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_SHARED)  # read when the first token is counted
    print(json.dumps(asyncio.run(run(args.data, args.banking, args.n))))


if __name__ == "__main__":
    main()
