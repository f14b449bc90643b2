"""Replays of Discord payloads written by others, through the fake gateway into the real discord.py client and the
adapter, each asserting what the bot did (posts, store rows, model calls) and that the process kept going.

Sources (tests/fixtures/SOURCES.md): the examples printed in Discord's API docs, live captures recorded by
Accord.jl, and the interaction payload discord.py's own tests build. A payload is replayed as published, except that
ids which must point into the fake's world (guild, channel, message id for claims) are rebased; each case says what
else it changed and why.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.commands import FAILED, UNREADABLE_COMMAND
from adapters.discord.guard import is_guarded
from adapters.discord.render import MESSAGE_CONTENT_NOTICE, scope_header
from bot.intake import SORRY
from bot.live_reply import WRITING_MARKER
from tests.fakes.discord_api import ROUTE_CREATE_MESSAGE, ROUTE_INTERACTION_CALLBACK, FakeDiscord
from tests.fakes.discord_payloads import FLAG_EPHEMERAL, Json
from tests.fakes.discord_rest import CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE
from tests.fakes.llm_server import FakeLLMServer
from tests.test_discord_adapter import RENDERED_TEXT, WAIT_S, World, assert_no_pings, responder, world
from tests.test_discord_replicas import start_discord_process, wait_for_process

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
GUARD_LOGGER = "adapters.discord.guard"
# Message types, https://discord.com/developers/docs/resources/message#message-object-message-types
USER_JOIN = 7


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def captured(name: str, event: str) -> Json:
    """The first dispatch of ``event`` in an Accord.jl capture (a list of gateway payloads)."""
    return copy.deepcopy(next(p["d"] for p in fixture(name) if p["t"] == event))


def placed(w: World, data: Json, *, channel: int | None = None) -> Json:
    """A recorded message moved into the fake's world: its guild and channel, and a fresh id (claims are by id)."""
    out = copy.deepcopy(data)
    out["id"] = str(w.fake.snowflakes.next())
    out["channel_id"] = str(channel or w.channel)
    out["guild_id"] = str(w.guild)
    return out


async def summary_posted(w: World, channel: int, scope: str, *, count: int = 1) -> None:
    await w.wait(lambda: len([c for c in w.bot_creates(channel)
                              if w.final(c.message_id) == scope_header(scope) + RENDERED_TEXT]) >= count)


async def stored_texts(w: World, channel: int) -> list[str]:
    return [m.text for m in await w.app.store.messages.recent(w.ref(channel), limit=50)]


async def mention_is_answered(w: World) -> None:
    """The next mention after whatever came before gets its summary: the process and its session are alive."""
    mention = await w.fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> still there?")

    def answered() -> bool:
        replies = [c for c in w.bot_creates(w.channel)
                   if str((c.body.get("message_reference") or {}).get("message_id")) == mention["id"]]
        return any(WRITING_MARKER not in (w.final(c.message_id) or WRITING_MARKER) for c in replies)

    await w.wait(answered)
    assert not w.adapter.client.is_closed()


def identifies(w: World) -> int:
    return sum(1 for p in w.fake.gateway.received if p.get("op") == 2)


def command_id(w: World, name: str) -> str:
    return str(next(c["id"] for c in w.fake.commands[None] if c["name"] == name))


def callbacks_of(w: World, interaction_id: int) -> list[Any]:
    return [c for c in w.fake.interaction_callbacks if c.interaction_id == interaction_id]


# ---- item 1: no payload stops the bot -----------------------------------------------------------------------------


async def test_the_guard_wraps_the_parser_table_the_gateway_uses(tmp_path: Path) -> None:
    """The contract discord/guard.py relies on: discord.py's websocket calls the very dict it wrapped."""
    async with world(tmp_path) as w:
        client = w.adapter.client
        assert is_guarded(client)
        assert client.ws._discord_parsers is client._connection.parsers
        assert {"MESSAGE_CREATE", "MESSAGE_UPDATE", "INTERACTION_CREATE", "READY"} <= set(client._connection.parsers)


@pytest.mark.parametrize("case", ["mentions_as_string", "no_author_no_timestamp", "update_without_type", "null_data"])
async def test_a_dispatch_that_does_not_parse_is_logged_once_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    async with world(tmp_path) as w:
        base = captured("gateway_message_create.json", "MESSAGE_CREATE")  # Accord.jl, live capture
        event = "MESSAGE_CREATE"
        if case == "mentions_as_string":
            data = {**placed(w, base), "mentions": "<@1>"}
        elif case == "no_author_no_timestamp":
            data = placed(w, base)
            del data["author"], data["timestamp"], data["member"]
        elif case == "update_without_type":
            # The partial MESSAGE_UPDATE Discord documented until 2024 (an embed unfurl): no type, author, content.
            event = "MESSAGE_UPDATE"
            data = {k: v for k, v in placed(w, base).items() if k in ("id", "channel_id", "guild_id", "embeds")}
        else:
            data = None  # type: ignore[assignment]  # "d": null
        with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
            await w.fake.dispatch(event, data, guild_id=w.guild)
            await mention_is_answered(w)
        dropped = [r for r in caplog.records if r.name == GUARD_LOGGER]
        assert len(dropped) == 1 and event in dropped[0].getMessage(), [r.getMessage() for r in dropped]
        assert identifies(w) == 1  # the same gateway session throughout: no re-IDENTIFY
        assert "still there?" in "".join(r.user_text for r in w.llm.received)
        assert not [t for t in await stored_texts(w, w.channel) if t == base["content"]]  # nothing half-kept


async def test_a_partial_update_that_still_has_the_text_keeps_the_log_right(tmp_path: Path) -> None:
    """Docs' example message, then the partial MESSAGE_UPDATE of the pre-2024 docs (id, channel, content and
    edited_timestamp; no type or author): discord.py cannot build a Message from it, the log still gets the text."""
    async with world(tmp_path) as w:
        message = placed(w, fixture("docs_example_message.json"))  # Discord API docs: Example Message
        await w.fake.dispatch("MESSAGE_CREATE", message, guild_id=w.guild)
        await mention_is_answered(w)
        assert "Supa Hot" in await stored_texts(w, w.channel)
        partial = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": message["guild_id"],
                   "content": "Supa Hot (edited)", "edited_timestamp": "2017-07-11T17:30:00.000000+00:00"}
        await w.fake.dispatch("MESSAGE_UPDATE", partial, guild_id=w.guild)
        await mention_is_answered(w)
        await w.adapter.idle()
        texts = await stored_texts(w, w.channel)
        assert "Supa Hot (edited)" in texts and "Supa Hot" not in texts


async def test_a_burst_of_malformed_dispatches_leaves_replies_in_progress_and_the_next_mention_working(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        base = captured("gateway_message_create.json", "MESSAGE_CREATE")
        await w.fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> first")
        await w.wait(lambda: bool(w.bot_creates(w.channel)))  # a reply is streaming now
        streaming = w.bot_creates(w.channel)[0].message_id
        for i in range(40):
            bad = placed(w, base)
            if i % 2:
                bad["mentions"] = "x"
            else:
                del bad["author"]
            await w.fake.dispatch("MESSAGE_CREATE", bad, guild_id=w.guild)
        await w.wait(lambda: w.final(streaming) == scope_header("channel") + RENDERED_TEXT)  # not cut off
        await mention_is_answered(w)
        assert identifies(w) == 1
        assert not any(p.get("op") == 6 for p in w.fake.gateway.received)  # not even a RESUME was needed


# ---- item 2: every way to address the bot -------------------------------------------------------------------------


async def test_a_captured_message_mentioning_the_bots_managed_role_is_a_mention(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        role = w.fake.bot_role(w.guild)
        data = placed(w, captured("gateway_message_create.json", "MESSAGE_CREATE"))  # Accord.jl capture
        data.update(content=f"<@&{role}> what happened here?", mention_roles=[str(role)], mentions=[])
        await w.fake.dispatch("MESSAGE_CREATE", data, guild_id=w.guild)
        await summary_posted(w, w.channel, "channel")
        [reply] = w.bot_creates(w.channel)
        assert str(reply.body["message_reference"]["message_id"]) == data["id"]
        assert len(w.llm.received) == 1
        assert_no_pings(w.fake)


async def test_a_role_mention_counts_without_the_message_content_intent(tmp_path: Path) -> None:
    """Without the intent the text may arrive blank (the fake blanks it; whether Discord does for role mentions is
    not documented), but ``mention_roles`` is not content and still names the role."""
    async with world(tmp_path, message_content=False) as w:
        role = w.fake.bot_role(w.guild)
        await w.fake.user_message(w.channel, author_id=w.alice, content=f"<@&{role}> summary please")
        await w.wait(lambda: any(w.final(c.message_id) == scope_header("channel") + RENDERED_TEXT
                                 for c in w.bot_creates(w.channel)))
        assert len(w.llm.received) == 1


async def test_another_roles_mention_is_not_a_mention(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        data = placed(w, captured("gateway_message_create.json", "MESSAGE_CREATE"))
        other = w.fake.snowflakes.next()  # a role that is not the bot's
        data.update(content=f"<@&{other}> ping the team", mention_roles=[str(other)], mentions=[])
        await w.fake.dispatch("MESSAGE_CREATE", data, guild_id=w.guild)
        await mention_is_answered(w)  # answered: only this one
        assert len(w.llm.received) == 1 and "ping the team" in w.llm.received[0].user_text


async def test_a_reply_to_the_bots_message_counts_with_the_ping_on_and_not_with_it_off(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        await fake.user_message(w.channel, author_id=w.alice, content="login fails on mobile")
        await fake.user_message(w.channel, author_id=w.bob, content=f"<@{w.bot}> summary?")
        await summary_posted(w, w.channel, "channel")
        bot_message = w.bot_creates(w.channel)[0].message_id
        await fake.user_message(w.channel, author_id=w.alice, content="thanks, noted", reply_to=bot_message,
                                reply_ping=False)
        asked = await fake.user_message(w.channel, author_id=w.alice, content="and what is still open?",
                                        reply_to=bot_message)
        await w.wait(lambda: len(w.bot_creates(w.channel)) == 2
                     and w.final(w.bot_creates(w.channel)[1].message_id) == scope_header("reply chain") + RENDERED_TEXT)
        second = w.bot_creates(w.channel)[1]
        assert str(second.body["message_reference"]["message_id"]) == asked["id"]
        assert len(w.llm.received) == 2  # the ping-off reply started nothing ...
        assert "thanks, noted" in await stored_texts(w, w.channel)  # ... and was kept like any message


async def test_a_mention_that_cannot_be_read_gets_a_reply_not_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        # A reply chain whose first message Discord returns without its author: the mention (a reply into that
        # chain) parses, but reading the chain it asks about raises, so it never becomes a Mention.
        first = fake.seed_message(w.channel, author_id=w.bob, content="the deploy is stuck")
        second = fake.seed_message(w.channel, author_id=w.alice, content="still stuck?", reply_to=int(first["id"]))
        del fake.messages[int(first["id"])]["author"]
        with caplog.at_level(logging.ERROR, logger="bot.intake"):
            asked = await fake.user_message(w.channel, author_id=w.alice, content=f"<@{w.bot}> what happened?",
                                            reply_to=int(second["id"]), reply_ping=False)
            await w.wait(lambda: len(w.bot_creates(w.channel)) == 1)
            await w.adapter.idle()
        [reply] = w.bot_creates(w.channel)
        assert reply.body["content"] == SORRY
        assert str(reply.body["message_reference"]["message_id"]) == asked["id"]
        assert w.llm.received == []
        [failed] = [rec for rec in caplog.records if rec.name == "bot.intake"]
        assert failed.exc_info is not None and f"message-{asked['id']}" in failed.getMessage()
        await mention_is_answered(w)


async def test_in_a_thread_a_reply_to_the_bot_and_its_role_both_summon_it(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        thread = await fake.create_thread(w.channel, name="outage", owner_id=w.alice)
        await fake.user_message(thread, author_id=w.bob, content="eu-west is down since 9:00")
        await fake.user_message(thread, author_id=w.alice, content=f"<@&{fake.bot_role(w.guild)}> recap?")
        await summary_posted(w, thread, "thread")
        bot_message = w.bot_creates(thread)[0].message_id
        await fake.user_message(thread, author_id=w.alice, content="restarted the load balancer")
        asked = await fake.user_message(thread, author_id=w.bob, content="what is left?", reply_to=bot_message)
        await w.wait(lambda: len(w.bot_creates(thread)) == 2 and WRITING_MARKER not in (
            w.final(w.bot_creates(thread)[1].message_id) or WRITING_MARKER))
        second = w.bot_creates(thread)[1]
        assert str(second.body["message_reference"]["message_id"]) == asked["id"]
        assert len(w.llm.received) == 2 and "restarted the load balancer" in w.llm.received[1].user_text
        assert not w.bot_creates(w.channel)


async def test_a_forum_post_that_mentions_the_bot_gets_the_summary_in_its_thread(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        forum = fake.add_forum_channel(w.guild, name="questions")
        await fake.dispatch("CHANNEL_CREATE", fake.channels[forum], guild_id=w.guild)
        thread, post = await fake.forum_post(forum, author_id=w.alice, title="Build breaks on arm64",
                                             content=f"<@{w.bot}> the build breaks on arm64 since 2.3, why?")
        await summary_posted(w, thread, "thread")
        [reply] = w.bot_creates(thread)
        assert str(reply.body["message_reference"]["message_id"]) == post["id"]
        assert "the build breaks on arm64" in w.llm.received[0].user_text
        assert not w.bot_creates(forum)


async def test_a_mention_in_a_dm_is_answered_in_the_dm(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        dm = w.fake.add_dm(w.alice)
        await w.fake.user_message(dm, author_id=w.alice, content="the deploy failed twice today")
        await w.fake.user_message(dm, author_id=w.alice, content=f"<@{w.bot}> summarize")
        await summary_posted(w, dm, "channel")
        assert "the deploy failed twice today" in w.llm.received[0].user_text


# ---- item 3: the intent check counts only evidence ----------------------------------------------------------------


async def test_member_joins_and_other_system_messages_never_count_as_missing_content(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        join = fixture("docs_example_message.json")  # Discord API docs: Example Message, as a member join
        for _ in range(5):
            data = placed(w, join)
            data.update(type=USER_JOIN, content="")
            await w.fake.dispatch("MESSAGE_CREATE", data, guild_id=w.guild)
        await mention_is_answered(w)
        await w.adapter.idle()
        assert not w.bot_creates(w.admin_channel)  # no false "Message Content intent is off" notice
        assert "" not in await stored_texts(w, w.channel)


async def test_blank_messages_from_people_do_count(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        for _ in range(3):
            data = placed(w, fixture("docs_example_message.json"))
            data["content"] = ""
            await w.fake.dispatch("MESSAGE_CREATE", data, guild_id=w.guild)
        await w.wait(lambda: bool(w.bot_creates(w.admin_channel)))
        assert w.bot_creates(w.admin_channel)[0].content == MESSAGE_CONTENT_NOTICE


# ---- item 4: interactions in every context ------------------------------------------------------------------------


async def test_every_command_declares_all_contexts_and_both_installs(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        [overwrite] = w.fake.command_overwrites
        assert {c["name"] for c in overwrite.commands} == {"faq", "llmcost", "Summarize"}
        for command in overwrite.commands:
            assert sorted(command["contexts"]) == [0, 1, 2], command
            assert sorted(command["integration_types"]) == [0, 1], command


async def test_faq_in_a_group_dm_answers_through_the_interaction(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        group = fake.add_group_dm([w.alice, w.bob])
        faq = await fake.slash_command(group, user_id=w.alice, name="faq", user_install=True)
        await w.wait(lambda: any(x.kind == "followup" for x in fake.writes))
        async with asyncio.timeout(WAIT_S):
            await w.adapter.idle()  # the command's work, which posted that follow-up, has ended
        [callback] = callbacks_of(w, faq.id)
        assert callback.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
        assert not fake.requests_on(ROUTE_CREATE_MESSAGE)  # never the channel endpoint Discord refuses there
        assert not [r for r in fake.requests if r.status == 403]
        [answer] = [x for x in fake.writes if x.kind == "followup"]
        final = w.final(answer.message_id) or ""
        # The bot is not in the group DM, so it has collected no questions there: that is the answer, in the DM.
        assert final.startswith("No questions were collected") and WRITING_MARKER not in final, final
        assert_no_pings(fake)


async def test_faq_in_the_bots_dm_links_with_at_me(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        dm = w.fake.add_dm(w.alice)
        await w.fake.slash_command(dm, user_id=w.alice, name="faq")
        await w.fake.wait_until(lambda: any("FAQ" in (x.content or "") and x.kind == "followup_edit"
                                            for x in w.fake.writes))
        link = next(x.content for x in w.fake.writes if x.kind == "followup_edit" and "FAQ" in (x.content or ""))
        [post] = w.bot_creates(dm)
        assert link is not None and f"https://discord.com/channels/@me/{dm}/{post.message_id}" in link


async def test_summarize_from_a_user_install_answers_with_follow_ups(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fake = w.fake
        target = await fake.user_message(w.channel, author_id=w.bob, content="the cache purge takes 40 minutes")
        menu = await fake.message_command(w.channel, user_id=w.alice, name="Summarize",
                                          target_message_id=int(target["id"]), user_install=True)
        expected = scope_header("message") + RENDERED_TEXT
        await w.wait(lambda: any(w.final(x.message_id) == expected for x in fake.writes if x.kind == "followup"))
        [callback] = callbacks_of(w, menu.id)
        assert not callback.data.get("flags", 0) & FLAG_EPHEMERAL  # the summary is the visible answer
        assert not w.bot_creates(w.channel)
        assert "the cache purge takes 40 minutes" in w.llm.received[0].user_text
        assert_no_pings(fake)


async def test_a_command_that_fails_after_the_defer_still_ends_with_an_answer(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        async def broken(command: Any) -> Any:
            raise RuntimeError("the ledger is on fire")

        w.app.assistant.spend = broken  # type: ignore[method-assign]
        cost = await w.fake.slash_command(w.channel, user_id=w.alice, name="llmcost")
        await w.wait(lambda: any(x.kind == "followup" for x in w.fake.writes))
        [callback] = callbacks_of(w, cost.id)
        assert callback.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
        [answer] = [x for x in w.fake.writes if x.kind == "followup"]
        assert answer.content == FAILED and answer.body.get("flags", 0) & FLAG_EPHEMERAL


async def test_discord_pys_own_test_interaction_without_user_or_channel_gets_a_clear_answer(tmp_path: Path) -> None:
    """discord.py's tests build command interactions with no member, user or channel at all
    (tests/test_app_commands_invoke.py); filled in here: the command's name and id, and an id and token (its
    own are 0 and "", which no callback URL can carry)."""
    async with world(tmp_path) as w:
        payload = fixture("dpy_mock_command_interaction.json")
        payload.update(id=str(w.fake.snowflakes.next()), application_id=str(w.fake.application_id),
                       token=secrets.token_urlsafe(16))
        payload["data"].update(name="llmcost", id=str(command_id(w, "llmcost")))
        interaction = await w.fake.raw_interaction(payload)
        await w.wait(lambda: bool(callbacks_of(w, interaction.id)))
        [callback] = callbacks_of(w, interaction.id)
        assert callback.callback_type == CALLBACK_CHANNEL_MESSAGE and callback.data["flags"] & FLAG_EPHEMERAL
        assert "who ran it" in callback.data["content"]
        await mention_is_answered(w)


@pytest.mark.parametrize("name", ["docs_slash_command_interaction.json", "docs_message_command_interaction.json"])
async def test_the_docs_example_interactions_get_an_answer_and_the_bot_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Discord's docs print interactions whose member has no ``flags`` (and no version or channel object where
    discord.py 2.7 expects them): discord.py cannot parse them, the guard drops them, and the person still gets
    an answer instead of "The application did not respond"."""
    async with world(tmp_path) as w:
        payload = fixture(name)
        with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
            interaction = await w.fake.raw_interaction(payload)
            await w.wait(lambda: bool(callbacks_of(w, interaction.id)))
        [callback] = callbacks_of(w, interaction.id)
        assert callback.callback_type == CALLBACK_CHANNEL_MESSAGE
        assert callback.data["content"] == UNREADABLE_COMMAND and callback.data["flags"] & FLAG_EPHEMERAL
        assert [r for r in caplog.records if r.name == GUARD_LOGGER and "INTERACTION_CREATE" in r.getMessage()]
        assert len(w.fake.requests_on(ROUTE_INTERACTION_CALLBACK)) == 1
        await mention_is_answered(w)


# ---- captured payloads replayed as they are -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docs_example_message.json", "docs_example_crossposted_message.json"])
async def test_the_docs_example_messages_are_kept_and_start_nothing(tmp_path: Path, name: str) -> None:
    async with world(tmp_path) as w:
        data = placed(w, fixture(name))  # Discord API docs: Example Message / Example Crossposted Message
        await w.fake.dispatch("MESSAGE_CREATE", data, guild_id=w.guild)
        await mention_is_answered(w)
        await w.adapter.idle()
        # Kept as people read it (clean_content: a channel mention shows as #name), and only the mention was answered.
        opening = data["content"].split("<")[0]
        assert any(t.startswith(opening) for t in await stored_texts(w, w.channel))
        assert len(w.llm.received) == 1 and not w.bot_creates(w.admin_channel)


async def test_accord_captured_message_and_update_are_kept_and_start_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        created = placed(w, captured("gateway_message_create.json", "MESSAGE_CREATE"))
        await w.fake.dispatch("MESSAGE_CREATE", created, guild_id=w.guild)
        update = captured("gateway_message_update.json", "MESSAGE_UPDATE")
        update.update(id=created["id"], channel_id=created["channel_id"], guild_id=created["guild_id"])
        await w.fake.dispatch("MESSAGE_UPDATE", update, guild_id=w.guild)
        await mention_is_answered(w)
        await w.adapter.idle()
        texts = await stored_texts(w, w.channel)
        assert update["content"] in texts
        assert len(w.llm.received) == 1  # only the mention reached the model


def llmcost_from_capture(w: World) -> Json:
    """Accord.jl's live capture of a slash command, pointed at /llmcost in the fake's guild."""
    payload = captured("gateway_interaction_create.json", "INTERACTION_CREATE")
    channel = {**w.fake.channels[w.channel], "permissions": payload["channel"].get("permissions", "0")}
    payload.update(id=str(w.fake.snowflakes.next()), guild_id=str(w.guild), channel_id=str(w.channel),
                   channel=channel, token=secrets.token_urlsafe(16), application_id=str(w.fake.application_id),
                   authorizing_integration_owners={"0": str(w.guild)})
    payload["guild"] = {**payload.get("guild", {}), "id": str(w.guild)}
    payload["data"] = {"id": command_id(w, "llmcost"), "name": "llmcost", "type": 1}
    return payload


async def test_a_captured_interaction_whose_member_lacks_flags_is_answered(tmp_path: Path) -> None:
    """The live capture with only ``member.flags`` taken out, the one difference from the docs' example that
    discord.py 2.7 trips on (Member reads data['flags'])."""
    async with world(tmp_path) as w:
        payload = llmcost_from_capture(w)
        del payload["member"]["flags"]
        interaction = await w.fake.raw_interaction(payload, guild_id=w.guild)
        await w.wait(lambda: bool(callbacks_of(w, interaction.id)))
        [callback] = callbacks_of(w, interaction.id)
        assert callback.callback_type == CALLBACK_CHANNEL_MESSAGE and callback.data["content"] == UNREADABLE_COMMAND
        await mention_is_answered(w)


async def test_a_captured_interaction_runs_the_command(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        interaction = await w.fake.raw_interaction(llmcost_from_capture(w), guild_id=w.guild)
        await w.wait(lambda: any(x.kind == "followup" for x in w.fake.writes))
        [callback] = callbacks_of(w, interaction.id)
        assert callback.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
        [report] = [x for x in w.fake.writes if x.kind == "followup"]
        assert report.embeds and report.embeds[0]["title"].startswith("LLM spend")


# ---- the real process ---------------------------------------------------------------------------------------------


async def test_a_real_discord_process_outlives_the_four_payloads_that_used_to_stop_it(tmp_path: Path) -> None:
    """`supportbot run --platform discord` (the entry point that exited with code 1): the issue's four payloads,
    then a mention that is answered, then a SIGTERM that ends it cleanly."""
    async with FakeDiscord() as fake, FakeLLMServer(responder=responder) as llm:
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        alice = fake.add_member(guild, username="alice")
        env = {"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": llm.openai_base_url, "DISCORD_TOKEN": fake.token,
               "DISCORD_API_URL": fake.api_base, "DISCORD_GATEWAY_URL": str(fake.gateway_url),
               "SUPPORTBOT_DB": str(tmp_path / "bot.db"), "SUPPORTBOT_LOG_LEVEL": "WARNING"}
        log_path = tmp_path / "discord-process.log"
        proc = start_discord_process(env, log_path)
        try:
            def until(predicate: Callable[[], bool], what: str) -> Awaitable[None]:
                return wait_for_process(proc, log_path, predicate, what, timeout_s=WAIT_S)

            await until(lambda: bool(fake.command_overwrites) and bool(fake.gateway.sessions), "connected")
            base = captured("gateway_message_create.json", "MESSAGE_CREATE")
            base.update(channel_id=str(channel), guild_id=str(guild))
            no_author = {**base, "id": str(fake.snowflakes.next())}
            del no_author["author"], no_author["timestamp"], no_author["member"]
            interaction = captured("gateway_interaction_create.json", "INTERACTION_CREATE")
            interaction.update(id=str(fake.snowflakes.next()), token=secrets.token_urlsafe(12), guild_id=str(guild))
            del interaction["member"]["flags"]
            await fake.dispatch("MESSAGE_UPDATE", {k: base[k] for k in ("id", "channel_id", "guild_id", "embeds")},
                                guild_id=guild)
            await fake.raw_interaction(interaction, guild_id=guild)
            await fake.dispatch("MESSAGE_CREATE", {**base, "id": str(fake.snowflakes.next()), "mentions": "x"},
                                guild_id=guild)
            await fake.dispatch("MESSAGE_CREATE", no_author, guild_id=guild)
            await fake.user_message(channel, author_id=alice, content=f"<@{fake.bot_user_id}> summary?")
            header = scope_header("channel")
            await until(lambda: any(fake.versions(x.message_id)[-1] == header + RENDERED_TEXT
                                    for x in fake.writes_in(channel) if x.kind == "create"), "the mention answered")
            assert sum(1 for p in fake.gateway.received if p.get("op") == 2) == 1  # one session throughout
            log = log_path.read_text()
            assert log.count("discord: dropped a") == 4, log
            assert any(c.data.get("content") == UNREADABLE_COMMAND for c in fake.interaction_callbacks)
            proc.send_signal(signal.SIGTERM)
            await until(lambda: proc.poll() is not None, "exited after SIGTERM")
            assert proc.returncode == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
