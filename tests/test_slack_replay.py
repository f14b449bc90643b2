"""Real Slack payloads written by others, replayed through the real Bolt app over signed HTTP.

Each case takes a payload recorded or written by someone else (bolt-python's and java-slack-sdk's tests,
slack-go's tests and pull requests, Slack's event reference; see tests/fixtures/SOURCES.md), delivers it to the
adapter as Slack would (signed, over a socket), and asserts what the bot did: the acknowledgement, what it posted
on the fake Slack, what it stored, and which model calls it made. Where a payload's ids are placeholders (""),
the test fills them in and says so; the shape is left as written.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.slack.conversation import HELP, SUGGESTED_PROMPTS
from adapters.slack.intake import SlackAdapter
from bot.app import App, build_app
from bot.intake import SORRY
from bot.settings import Settings
from bot.types import ChannelRef
from tests.fakes import slack_payloads as payloads
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, default_responder
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_records import Fault
from tests.fakes.slack_signing import DeliveryResult, SlackDelivery

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack"
SECRET = "replay-signing-secret"
SUMMARY = "## Summary\nThe thread is about a release; nothing is open."


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def responder(request: ReceivedRequest) -> FakeReply:
    return default_responder(request) if request.structured else FakeReply(SUMMARY)


@dataclass
class Replay:
    slack: FakeSlack
    llm: FakeLLMServer
    app: App
    adapter: SlackAdapter
    delivery: SlackDelivery

    async def send(self, body: dict[str, Any], **kwargs: Any) -> DeliveryResult:
        result = await self.delivery.send_event(body, **kwargs)
        await self.adapter.idle()
        return result

    async def command(self, command: str, text: str, *, channel: str, user: str, **fields: str) -> DeliveryResult:
        form = payloads.slash_command_form(
            command=command, text=text, channel_id=channel, user_id=user,
            response_url=self.slack.new_response_url(channel=channel, user=user),
        )  # fmt: skip
        form.update(fields)
        result = await self.delivery.send_slash_command(form)
        await self.adapter.idle()
        return result

    def summaries(self) -> list[ReceivedRequest]:
        return [r for r in self.llm.received if not r.structured]

    def posts(self, channel: str) -> list[str]:
        return [m.text for m in self.slack.bot_messages(channel)]

    def events_counted(self, kind: str) -> float:
        value = self.app.metrics.registry.get_sample_value(
            "supportbot_platform_events_total", {"platform": "slack", "kind": kind}
        )
        return value or 0.0


@asynccontextmanager
async def replay(
    tmp_path: Path,
    *,
    team: str,
    bot_user: str,
    enterprise: str | None = None,
    org_install: bool = False,
    allow_bots: bool = False,
    admins: tuple[str, ...] = (),
) -> AsyncIterator[Replay]:
    """A fake Slack whose installation is ``team`` (or, org-wide, ``enterprise``) and the bot behind Bolt."""
    async with (
        FakeSlack(team_id=team, bot_user_id=bot_user, bot_id="B_SUPPORTBOT", rate_limits=False) as slack,
        FakeLLMServer(responder=responder) as llm,
    ):
        slack.enterprise_id, slack.enterprise_install = enterprise, org_install
        settings = Settings(
            openai_api_key=SecretStr("x"), openai_base_url=llm.openai_base_url,
            slack_bot_token=SecretStr(slack.bot_token), slack_signing_secret=SecretStr(SECRET),
            slack_api_url=slack.api_url, db=str(tmp_path / f"{team}.db"), admins=list(admins),
        )  # fmt: skip
        app = await build_app(settings)
        adapter = SlackAdapter(app, allow_bots=allow_bots)
        runner = await adapter.serve_http(host="127.0.0.1", port=0)
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            async with SlackDelivery(url, SECRET) as delivery:
                yield Replay(slack, llm, app, adapter, delivery)
        finally:
            await adapter.close()
            await runner.cleanup()
            await app.close()


def envelope(template: dict[str, Any], event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """``template``'s envelope (team, authorizations, …) around another event of the same conversation."""
    body = copy.deepcopy(template)
    body["event"] = event
    body["event_id"] = event_id or payloads.new_event_id()
    return body


# ---- identity: Slack Connect and Enterprise Grid ---------------------------------------------------------------


async def test_slack_connect_keeps_one_channel_key_for_log_summary_and_spend(tmp_path: Path) -> None:
    # bolt-python's Slack Connect payloads: the envelope's team_id is the *other* organisation's (TEAM_ID_ACTOR),
    # the installation is authorizations[0] (INSTALLED_TEAM_ID). They carry no event ids: the mention's own ts
    # de-duplicates it.
    shared = fixture("slack_connect_events.bolt-python.json")
    async with replay(tmp_path, team="INSTALLED_TEAM_ID", bot_user="INSTALLED_BOT_USER_ID") as r:
        r.slack.add_channel("C111", name="shared-support")
        for body in shared["messages"]:
            assert (await r.send(body)).status == 200
        installed = ChannelRef("slack", "INSTALLED_TEAM_ID", "C111")
        stored = await r.app.store.messages.recent(installed, limit=10)
        assert sorted(m.text for m in stored) == ["<@INSTALLED_BOT_USER_ID> Hey!", "Hey!"]  # channel_name: not speech
        assert await r.app.store.messages.recent(ChannelRef("slack", "TEAM_ID_ACTOR", "C111"), limit=10) == []
        assert (await r.send(shared["reaction_added"])).status == 200  # an event the bot does not handle: acked

        mention = shared["app_mention"]  # user_team is the actor's enterprise id
        assert (await r.send(mention)).status == 200
        assert (await r.send(mention)).status == 200  # delivered again: the same message is answered once
        (asked,) = r.summaries()
        assert "Hey!" in asked.user_text  # the summary read the log kept under the installation's key ...
        assert r.slack.calls_to("conversations.replies") == r.slack.calls_to("conversations.history") == []  # only
        (reply,) = r.slack.bot_messages("C111")
        assert reply.thread_ts == mention["event"]["ts"]
        (record,) = await r.app.store.ledger.records(since=_hour_ago())
        assert (record.workspace, record.channel) == ("INSTALLED_TEAM_ID", "C111")

        # /llmcost from the shared channel (commands carry no authorizations: the token's own install decides).
        await r.command("/llmcost", "7d", channel="C111", user="USER_ID_ACTOR", team_id="TEAM_ID_ACTOR")
        report = r.slack.response_url_posts[-1].payload["text"]
        assert "C111" in report and "1 call" in report.replace("calls", "call")


async def test_org_wide_install_keys_by_the_organisation(tmp_path: Path) -> None:
    # bolt-python's org-app message: authorizations[0].team_id is null, enterprise_id E111, is_enterprise_install.
    body = fixture("org_app_message_event.bolt-python.json")
    async with replay(tmp_path, team="T111", bot_user="W222", enterprise="E111", org_install=True) as r:
        r.slack.add_channel("C111")
        assert (await r.send(body)).status == 200
        org = ChannelRef("slack", "E111", "C111")
        assert [m.text for m in await r.app.store.messages.recent(org, limit=5)] == ["@W222"]

        mention = envelope(body, payloads.app_mention(channel="C111", user="W111", text="<@W222> summarize"))
        assert (await r.send(mention)).status == 200
        (record,) = await r.app.store.ledger.records(since=_hour_ago())
        assert record.workspace == "E111"
        await r.command("/llmcost", "", channel="C111", user="W111", team_id="T111", enterprise_id="E111",
                        is_enterprise_install="true")  # fmt: skip
        assert "1 call" in r.slack.response_url_posts[-1].payload["text"].replace("calls", "call")


# ---- one reply per mention ---------------------------------------------------------------------------------------


def edited_mention() -> tuple[dict[str, Any], dict[str, Any]]:
    """slack-go PR #1256's captured edited app_mention (its author redacted ids and text with ********; they are
    filled in here), and the same mention as first delivered (no ``edited``)."""
    event = fixture("events_slack_go.json")["app_mention_edited"]
    event.update(user="U1", team="T0FAKE", text="<@UBOT> summarize this", channel="C1", event_ts=event["ts"])
    event["edited"]["user"] = "U1"
    original = {k: v for k, v in event.items() if k != "edited"}
    return original, event


async def test_an_edited_mention_is_answered_once(tmp_path: Path) -> None:
    original, edited = edited_mention()
    async with replay(tmp_path, team="T0FAKE", bot_user="UBOT") as r:
        r.slack.add_channel("C1")
        # Slack sends the mention as a message event too (message.channels): the log has the thread's root.
        assert (await r.send(payloads.event_callback({**original, "type": "message"}))).status == 200
        assert (await r.send(payloads.event_callback(original))).status == 200
        assert (await r.send(payloads.event_callback(edited))).status == 200  # a new event id, the same message
        assert len(r.summaries()) == 1 and len(r.slack.bot_messages("C1")) == 1
        assert r.events_counted("ignored_duplicate") == 1


async def test_an_edited_mention_reaching_another_replica_is_answered_once(tmp_path: Path) -> None:
    original, edited = edited_mention()
    async with replay(tmp_path, team="T0FAKE", bot_user="UBOT") as r:
        r.slack.add_channel("C1")
        await r.send(payloads.event_callback({**original, "type": "message"}))
        second = SlackAdapter(r.app)  # another replica: its own Bolt app and server, the same shared store
        runner = await second.serve_http(host="127.0.0.1", port=0)
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            async with SlackDelivery(url, SECRET) as other:
                body = payloads.event_callback(original)
                assert (await r.delivery.send_event(body)).status == 200
                assert (await other.send_event(body, retry_num=1)).status == 200  # Slack's retry, elsewhere
                assert (await other.send_event(payloads.event_callback(edited))).status == 200
            await r.adapter.idle()
            await second.idle()
        finally:
            await second.close()
            await runner.cleanup()
        assert len(r.summaries()) == 1 and len(r.slack.bot_messages("C1")) == 1


async def test_a_mention_that_cannot_be_read_gets_a_reply_not_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # slack-go's captured mention, whose author's name cannot be looked up: users.info drops the connection every
    # time (slack_sdk's own retry included), so the event never becomes a Mention.
    original, _ = edited_mention()
    async with replay(tmp_path, team="T0FAKE", bot_user="UBOT") as r:
        r.slack.add_channel("C1")
        r.slack.add_user("U1")
        r.slack.inject("users.info", Fault.connection_drop(), times=5)
        with caplog.at_level(logging.ERROR, logger="bot.intake"):
            assert (await r.send(payloads.event_callback(original))).status == 200
        [told] = r.slack.ephemerals
        assert (told.channel, told.user, told.text, told.thread_ts) == ("C1", "U1", SORRY, original["ts"])
        assert r.summaries() == [] and r.slack.bot_messages("C1") == []
        [failed] = [rec for rec in caplog.records if rec.name == "bot.intake"]
        assert failed.exc_info is not None and "summary-" in failed.getMessage()


async def test_another_bots_mention_is_ignored_unless_allowed(tmp_path: Path) -> None:
    # java-slack-sdk's Ktor test: bot B111 (another app) mentions our bot W111.
    body = fixture("app_mention_from_bot.java-slack-sdk.json")
    for allowed, replies in ((False, 0), (True, 1)):
        (tmp_path / str(allowed)).mkdir()
        async with replay(tmp_path / str(allowed), team="T111", bot_user="W111", allow_bots=allowed) as r:
            r.slack.add_channel("C111")
            said = payloads.message(channel="C111", user="W222", text="the deploy is stuck at 90%")
            await r.send(envelope(body, said))
            assert (await r.send(body)).status == 200
            assert len(r.slack.bot_messages("C111")) == replies and len(r.summaries()) == replies
            assert r.events_counted("ignored_bot") == (0 if allowed else 1)


# ---- every delivery acknowledged ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        fixture("events_slack_go.json")["app_rate_limited"],
        fixture("AppRateLimitedPayload.java-slack-sdk.json"),
    ],
    ids=["slack-go", "java-slack-sdk"],
)
async def test_app_rate_limited_is_acknowledged_logged_and_counted(
    tmp_path: Path, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with replay(tmp_path, team="T123ABC456", bot_user="UBOT") as r:
        result = await r.delivery.send_raw(json.dumps(body).encode(), content_type="application/json")
        assert result.status == 200
        assert r.events_counted("app_rate_limited") == 1
        assert any("rate-limited this app's events" in m for m in caplog.messages)
        assert r.llm.received == [] and r.slack.calls_to("chat.postMessage") == []


async def test_malformed_deliveries_get_200_and_nothing_else(tmp_path: Path) -> None:
    template = fixture("app_mention_event_callback.bolt-python.json")
    async with replay(tmp_path, team="T111", bot_user="W111") as r:
        r.slack.add_channel("C111")
        # bolt-python's app_mention envelope with a string where the event object belongs (Bolt raised: a 500).
        stringy = {**template, "event": "app_mention"}
        assert (await r.send(stringy)).status == 200
        # Slack's own message_replied example, without its subtype as the Events API delivers it ("bug alert").
        replied = fixture("message_replied.slack-docs.json")
        del replied["event"]["subtype"]
        assert (await r.send(replied)).status == 200
        assert await r.app.store.messages.count() == 0  # no phantom empty message from "unknown"
        # java-slack-sdk's message_replied sample: every value empty.
        assert (await r.send(fixture("MessageRepliedPayload.java-slack-sdk.json"))).status == 200
        assert await r.app.store.messages.count() == 0
        # A forged copy is still refused.
        assert (await r.delivery.send_event(stringy, forged=True)).status == 401
        assert r.llm.received == [] and r.slack.bot_messages("C111") == []


def _malformed_cases() -> dict[str, tuple[dict[str, Any], str]]:
    """Recorded deliveries with one field broken as a forger (or a Slack bug) might: (body, the field the log names)."""
    mention = fixture("app_mention_event_callback.bolt-python.json")  # bolt-python: W222 mentions W111 in C111
    changed = fixture("message_changed_event.bolt-python.json")  # its message's ts is on previous_message
    cases: dict[str, tuple[dict[str, Any], str]] = {}

    def broken(name: str, body: dict[str, Any], where: str) -> None:
        body["event_id"] = payloads.new_event_id()
        cases[name] = (body, where)

    body = copy.deepcopy(mention)
    body["event"]["user"] = ["W222"]
    broken("user_a_list", body, "event.user")
    body = copy.deepcopy(mention)
    del body["event"]["ts"]
    broken("mention_without_ts", body, "event.ts")
    body = copy.deepcopy(mention)
    body["event"]["thread_ts"] = "yesterday"
    broken("thread_ts_not_a_timestamp", body, "event.thread_ts")
    body = copy.deepcopy(mention)
    body["event"]["channel"] = ""
    broken("empty_channel", body, "event.channel")
    body = copy.deepcopy(mention)
    body["event"]["text"] = {"type": "rich_text"}
    broken("text_an_object", body, "event.text")
    body = copy.deepcopy(mention)
    body["event"]["edited"] = "yes"
    broken("edited_a_string", body, "event.edited")
    body = copy.deepcopy(mention)
    body["authorizations"] = [{"team_id": 111, "user_id": "W111", "is_bot": True}]  # Bolt reads it; we do not
    broken("authorized_team_a_number", body, "authorizations.0.team_id")
    body = copy.deepcopy(mention)
    body["event_id"] = 42
    cases["event_id_a_number"] = (body, "event_id")
    body = copy.deepcopy(changed)
    del body["event"]["previous_message"]  # now no ts anywhere for the edited message
    broken("edit_without_ts", body, "event.message.ts")
    body = copy.deepcopy(changed)
    body["event"]["previous_message"]["text"] = 3
    broken("previous_text_a_number", body, "event.previous_message.text")
    body = copy.deepcopy(fixture("message_deleted_event.bolt-python.json"))
    body["event"]["deleted_ts"] = None
    broken("deleted_ts_null", body, "event.deleted_ts")
    return cases


MALFORMED = _malformed_cases()


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_delivery_gets_200_and_one_log_line_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    body, where = MALFORMED[case]
    async with replay(tmp_path, team="T111", bot_user="W111") as r:
        r.slack.add_channel("C111")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert (await r.send(body)).status == 200
        said = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
        assert [rec.name for rec in said] == ["adapters.slack.deliveries"], [rec.getMessage() for rec in said]
        assert f": {where}: " in said[0].getMessage(), said[0].getMessage()
        assert "W222" not in said[0].getMessage()  # the line says where, never what anyone wrote
        assert r.events_counted("ignored_malformed") == 1
        assert r.llm.received == [] and r.slack.calls_to("chat.postMessage") == []
        assert await r.app.store.messages.count() == 0


async def test_tolerated_where_slack_is_loose(tmp_path: Path) -> None:
    """Fields Slack leaves empty, null or adds without notice do not make a delivery malformed."""
    body = fixture("app_mention_event_callback.bolt-python.json")
    body["event"].update(thread_ts="", bot_id="", subtype=None, blocks=[{"type": "rich_text", "elements": []}],
                         user_team="E_OTHER_ORG", source_team="T_OTHER")  # fmt: skip
    body.update(team_id=None, context_team_id=None, is_ext_shared_channel=True)  # org-wide Grid, Slack Connect
    body["authorizations"] = [{"enterprise_id": None, "team_id": "T111", "user_id": "W111", "is_bot": True,
                               "is_enterprise_install": False}]  # fmt: skip
    async with replay(tmp_path, team="T111", bot_user="W111") as r:
        r.slack.add_channel("C111")
        assert (await r.send(body)).status == 200
        assert r.events_counted("ignored_malformed") == 0
        (reply,) = r.slack.bot_messages("C111")  # answered (nothing logged yet to summarize: it says so)
        assert reply.thread_ts == body["event"]["ts"]


async def test_faq_with_a_100000_digit_argument_gets_the_usage_line(tmp_path: Path) -> None:
    async with replay(tmp_path, team="T0FAKE", bot_user="UBOT") as r:
        r.slack.add_channel("C1")
        result = await r.command("/faq", "9" * 100_000, channel="C1", user="U1")
        assert result.status == 200
        (usage,) = r.posts("C1")
        assert usage.startswith("Usage: /faq [days]")
        await r.command("/llmcost", "9" * 100_000, channel="C1", user="U1")
        assert "Usage: /llmcost" in r.slack.response_url_posts[-1].payload["text"]
        assert r.llm.received == []


async def test_shortcut_acks_before_any_web_api_call_and_needs_a_channel(tmp_path: Path) -> None:
    async with replay(tmp_path, team="T0FAKE", bot_user="UBOT") as r:
        r.slack.add_channel("C1")
        r.slack.add_user("U1", display_name="Ada")
        r.slack.add_user("U2", display_name="Grace")
        root = payloads.new_ts()
        await r.send(payloads.event_callback(payloads.message(channel="C1", user="U1", text="deploy fails", ts=root)))
        r.slack.delays["users.info"] = 2.0  # a slow Web API: the ack must not wait for it
        shortcut = payloads.message_shortcut(
            callback_id="summarize_thread", channel_id="C1", user_id="U2", message_ts=root,
            message_text="deploy fails", response_url=r.slack.new_response_url(channel="C1", user="U2"),
        )  # fmt: skip
        result = await r.delivery.send_interactive(shortcut)
        acked_at = time.monotonic()
        assert result.status == 200
        await r.adapter.idle()
        (lookup,) = [c for c in r.slack.calls_to("users.info") if c.params.get("user") == "U2"]
        assert lookup.at > acked_at  # users.info was answered after Slack had its ack
        assert len(r.slack.bot_messages("C1")) == 1

        del shortcut["channel"]  # the same shortcut without a channel
        assert (await r.delivery.send_interactive(shortcut)).status == 200
        await r.adapter.idle()
        assert all(c.params.get("channel") for c in r.slack.calls_to("chat.postMessage"))
        assert "Summarize thread" in r.slack.response_url_posts[-1].payload["text"]


# ---- message subtypes ------------------------------------------------------------------------------------------


async def test_message_subtypes_change_the_log_as_people_see_the_channel(tmp_path: Path) -> None:
    changed = fixture("message_changed_event.bolt-python.json")  # its "message" has no ts: previous_message's
    deleted = fixture("message_deleted_event.bolt-python.json")
    go = fixture("events_slack_go.json")
    async with replay(tmp_path, team="T-auth", bot_user="U-auth") as r:
        r.slack.add_channel("C111")
        channel = ChannelRef("slack", "T-auth", "C111")  # both fixtures' installation (authorizations[0])

        async def texts() -> list[str]:
            return [m.text for m in await r.app.store.messages.recent(channel, limit=20)]

        before = changed["event"]["previous_message"]
        await r.send(envelope(changed, {**before, "channel": "C111", "channel_type": "channel"}))
        await r.send(changed)
        assert await texts() == ["updated message"]

        gone = deleted["event"]["previous_message"]
        await r.send(envelope(deleted, {**gone, "channel": "C111", "channel_type": "channel"}))
        assert "Delete this message" in await texts()
        await r.send(deleted)
        assert await texts() == ["updated message"]

        spoken = [fixture("message_thread_broadcast_event.bolt-python.json")["event"],
                  fixture("message_file_share_event.bolt-python.json")["event"],
                  {**go["me_message"], "channel": "C111"}]  # fmt: skip
        silent = [fixture("classic_bot_message_event_payload.bolt-python.json")["event"],
                  fixture("bot_message_event_payload.bolt-python.json")["event"],
                  {**go["channel_join"], "channel": "C111"}]  # fmt: skip
        for event in spoken + silent:
            assert (await r.send(envelope(changed, event))).status == 200
        assert sorted(await texts()) == sorted(["updated message", "Hi there!", "Hi there!", "is doing that thing"])
        assert not any(m.author == "unknown" for m in await r.app.store.messages.recent(channel, limit=20))


async def test_the_messages_tab_opening_is_acked_and_gets_suggested_prompts(tmp_path: Path) -> None:
    # java-slack-sdk's app_home_opened sample (every value empty): the tab and ids are filled in.
    body = fixture("AppHomeOpenedPayload.java-slack-sdk.json")
    body.update(type="event_callback", event_id=payloads.new_event_id())
    body["authorizations"][0].update(team_id="T111", user_id="W111", is_bot=True)
    async with replay(tmp_path, team="T111", bot_user="W111") as r:
        r.slack.add_channel("D111", is_im=True, members=("W222",))
        body["event"].update(user="W222", channel="D111", tab="messages", event_ts=payloads.new_ts())
        assert (await r.send(body)).status == 200
        assert r.slack.suggested_prompts[("D111", "")] == SUGGESTED_PROMPTS
        body["event"].update(tab="home")  # the Home tab: nothing to do, still acknowledged
        body["event_id"] = payloads.new_event_id()
        assert (await r.send(body)).status == 200
        assert r.slack.calls_to("chat.postMessage") == []


# ---- direct messages and the assistant pane --------------------------------------------------------------------


@asynccontextmanager
async def workspace_with_private_channels(tmp_path: Path) -> AsyncIterator[Replay]:
    """bolt-python's assistant payloads' workspace: W222 asks in D111; the bot is in two private channels,
    #plans (C222, W222 is a member) and #secret (C333, W222 is not)."""
    async with replay(tmp_path, team="T111", bot_user="W111") as r:
        r.slack.add_channel("D111", is_im=True, members=("W222",))
        r.slack.add_channel("C222", name="plans", is_private=True, members=("W222", "W333"))
        r.slack.add_channel("C333", name="secret", is_private=True, members=("W333",))
        r.slack.add_user("W222", display_name="Wren")
        r.slack.add_user("W333", display_name="Sol")
        template = fixture("user_message_event_payload.bolt-python.json")
        for channel, text in (("C222", "the launch moves to May"), ("C333", "the acquisition closes Friday")):
            for i in range(3):
                event = {**template["event"], "channel": channel, "user": "W333", "text": f"{text} ({i})",
                         "ts": payloads.new_ts()}  # fmt: skip
                event.pop("client_msg_id", None)
                assert (await r.send(envelope(template, event))).status == 200
        yield r


def dm(text: str, *, thread: bool = False) -> dict[str, Any]:
    """bolt-python's DM from W222 in D111 (an assistant-pane message when ``thread``, else a plain DM)."""
    body = fixture("user_message_event_body.bolt-python.json")
    event = body["event"]
    event.update(text=text, ts=payloads.new_ts(), event_ts=payloads.new_ts())
    if not thread:
        del event["thread_ts"], event["parent_user_id"]
    body["event_id"] = payloads.new_event_id()
    return body


async def test_a_dm_summarizes_only_private_channels_the_asker_is_in(tmp_path: Path) -> None:
    async with workspace_with_private_channels(tmp_path) as r:
        assert (await r.send(dm("summarize #secret"))).status == 200
        (refusal,) = r.posts("D111")
        assert "#secret is private and you are not in it" in refusal
        assert r.summaries() == []  # refused before any model call

        assert (await r.send(dm("can you summarize <#C222|plans> please"))).status == 200
        (asked,) = r.summaries()
        assert "the launch moves to May (2)" in asked.user_text and "acquisition" not in asked.user_text
        answer = r.posts("D111")[-1]
        assert "The thread is about a release" in answer
        (record,) = await r.app.store.ledger.records(since=_hour_ago())
        assert (record.channel, record.user, record.feature) == ("C222", "W222", "summary")


async def test_a_dm_with_a_message_link_summarizes_that_thread(tmp_path: Path) -> None:
    async with workspace_with_private_channels(tmp_path) as r:
        (root,) = [m for m in await r.app.store.messages.recent(ChannelRef("slack", "T111", "C222"), limit=1)]
        reply = {**fixture("user_message_event_payload.bolt-python.json")["event"], "channel": "C222",
                 "user": "W222", "text": "and the beta starts in April", "ts": payloads.new_ts(),
                 "thread_ts": root.ref.message_id}  # fmt: skip
        await r.send(envelope(fixture("user_message_event_payload.bolt-python.json"), reply))
        link = f"<https://acme.slack.com/archives/C222/p{root.ref.message_id.replace('.', '')}>"
        assert (await r.send(dm(f"summarize {link}"))).status == 200
        (asked,) = r.summaries()
        assert "the beta starts in April" in asked.user_text and "(0)" not in asked.user_text  # the thread only


async def test_a_dm_answers_cost_and_help_and_refuses_cost_of_a_channel_the_asker_cannot_read(tmp_path: Path) -> None:
    async with workspace_with_private_channels(tmp_path) as r:
        await r.send(dm("summarize #plans"))
        await r.send(dm("cost <#C222> 7d"))
        report = r.slack.messages_in("D111")[-1]
        assert report.blocks and "LLM spend" in json.dumps(report.blocks) and "C222" in report.text
        await r.send(dm("what did we spend on #secret?"))
        assert "#secret is private" in r.posts("D111")[-1]
        await r.send(dm("hello there"))
        assert r.posts("D111")[-1].startswith("I can help with")
        assert HELP.splitlines()[0] in r.posts("D111")[-1]


async def test_a_dm_builds_an_faq_of_a_channel_the_asker_is_in_and_answers_there(tmp_path: Path) -> None:
    async with workspace_with_private_channels(tmp_path) as r:
        template = fixture("user_message_event_payload.bolt-python.json")
        for text in ("How do I reset my password?", "How can I reset my password?", "Why is the export failing?"):
            event = {**template["event"], "channel": "C222", "user": "W333", "text": text, "ts": payloads.new_ts()}
            await r.send(envelope(template, event))
        assert (await r.send(dm("faq <#C222|plans> 30"))).status == 200
        faq = r.posts("D111")[-1]
        assert faq.startswith("*FAQ*") and r.posts("C222") == []  # answered to the asker, not posted in #plans
        assert (await r.send(dm("faq #secret"))).status == 200
        assert "#secret is private" in r.posts("D111")[-1]


async def test_the_assistant_pane_suggests_prompts_and_answers_about_the_channel_in_view(tmp_path: Path) -> None:
    started = fixture("thread_started_event_body.bolt-python.json")  # W222 opens the pane in D111, viewing C222
    changed = fixture("thread_context_changed_event_body.bolt-python.json")  # ... then switches to C333
    thread = started["event"]["assistant_thread"]["thread_ts"]
    async with workspace_with_private_channels(tmp_path) as r:
        assert (await r.send(started)).status == 200
        assert r.slack.suggested_prompts[("D111", thread)] == SUGGESTED_PROMPTS
        (greeting,) = r.slack.bot_messages("D111")
        assert greeting.thread_ts == thread

        assert (await r.send(dm("Summarize this channel", thread=True))).status == 200
        (asked,) = r.summaries()
        assert "the launch moves to May" in asked.user_text
        assert r.slack.assistant_statuses[("D111", thread)][0] == "is reading the conversation…"
        assert r.slack.bot_messages("D111")[-1].thread_ts == thread

        changed["event_id"] = payloads.new_event_id()
        assert (await r.send(changed)).status == 200
        assert (await r.send(dm("Summarize this channel", thread=True))).status == 200
        assert len(r.summaries()) == 1  # C333 is private and W222 is not in it: refused
        assert "#secret is private and you are not in it" in r.slack.bot_messages("D111")[-1].text

        assert (await r.send(dm("What did we spend?", thread=True))).status == 200
        assert "#secret is private" in r.slack.bot_messages("D111")[-1].text  # the channel in view decides


@pytest.mark.parametrize(
    ("name", "field", "bad"),
    [("thread_started_event_body.bolt-python.json", "thread_ts", "yesterday"),
     ("thread_context_changed_event_body.bolt-python.json", "user_id", ["W222"])],
)  # fmt: skip
async def test_a_malformed_assistant_pane_event_gets_200_and_one_log_line_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, field: str, bad: object
) -> None:
    body = copy.deepcopy(fixture(name))
    body["event"]["assistant_thread"][field] = bad
    async with workspace_with_private_channels(tmp_path) as r:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert (await r.send(body)).status == 200
        said = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
        assert [rec.name for rec in said] == ["adapters.slack.deliveries"], [rec.getMessage() for rec in said]
        assert f": assistant_thread.{field}: " in said[0].getMessage(), said[0].getMessage()
        assert r.events_counted("ignored_malformed") == 1
        assert r.slack.suggested_prompts == {} and r.slack.bot_messages("D111") == []


def _hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)
