"""On Discord people often answer a question by replying to it (a message reference) instead of opening a thread:
such a reply — and the replies to it — count as the question's thread when /faq collects its answers. The real
discord.py client against the fake gateway and REST API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.faq_answers import collect
from tests.test_discord_adapter import world


async def test_a_reply_chain_answers_the_question_it_replies_to(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        carol = w.fake.add_member(w.guild, username="carol")
        question = await w.fake.user_message(w.channel, author_id=w.alice, content="How do I reset my VPN token?")
        other = await w.fake.user_message(w.channel, author_id=carol, content="Why does the printer jam again?")
        answer = await w.fake.user_message(
            w.channel, author_id=w.bob, content="Open the portal, Security, then Reset token", reply_to=int(question["id"])
        )
        thanks = await w.fake.user_message(
            w.channel, author_id=w.alice, content="thanks bob, that worked", reply_to=int(answer["id"]), reply_ping=False
        )
        store = w.app.store
        for _ in range(500):  # the gateway dispatches, then the adapter records: wait (≤ 10 s) for the log
            if await store.messages.count() >= 4:
                break
            await asyncio.sleep(0.02)
        await w.adapter.idle()
        channel = w.ref(w.channel)
        chain = await store.messages.thread(channel, question["id"])
        # The reply and the reply to the reply are in the question's chain; the unrelated question is not.
        assert [m.ref.message_id for m in chain] == [question["id"], answer["id"], thanks["id"]]
        assert all(m.ref.thread_id == question["id"] for m in chain[1:])
        inquiries = await store.inquiries.list(channel, since=datetime.now(UTC) - timedelta(days=1))
        assert sorted(i.message_id for i in inquiries) == sorted([question["id"], other["id"]])  # the answer is no question

        answers = await collect(store.messages, inquiries, staff=frozenset())
        (found,) = answers[question["id"]]
        assert found.ref.message_id == answer["id"] and found.thanked  # the asker thanked it in the chain
        assert other["id"] not in answers
