"""The fake Slack, exercised by the real slack_sdk and slack-bolt over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import slack_payloads as payloads
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_rates import Rate
from tests.fakes.slack_records import Fault
from tests.fakes.slack_signing import SlackDelivery, sign

SIGNING_SECRET = "test-signing-secret"
SOCKET_FIXTURE = "socket_mode_messages.python-slack-sdk.jsonl"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        server.add_channel("C1", name="support")
        server.add_user("U1", name="ada", display_name="Ada L.", real_name="Ada Lovelace")
        yield server


def client_for(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, **kwargs)


async def test_post_update_delete_records_every_version(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = await client.chat_postMessage(channel="C1", text="thinking…")
    assert posted["channel"] == "C1" and posted["message"]["text"] == "thinking…"
    ts = posted["ts"]
    await client.chat_update(channel="C1", ts=ts, text="partial")
    updated = await client.chat_update(channel="C1", ts=ts, text="final answer")
    assert updated["text"] == "final answer"
    await client.chat_delete(channel="C1", ts=ts)

    versions = fake.versions("C1", ts)
    assert [(v.kind, v.text) for v in versions] == [
        ("post", "thinking…"),
        ("update", "partial"),
        ("update", "final answer"),
        ("delete", "final answer"),
    ]
    assert [v.at for v in versions] == sorted(v.at for v in versions)
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=ts, text="too late")
    assert err.value.response["error"] == "message_not_found"
    assert [c.method for c in fake.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.update",
        "chat.delete",
        "chat.update",
    ]


async def test_threads_auth_and_channel_errors(fake: FakeSlack) -> None:
    client = client_for(fake)
    parent = fake.seed_message("C1", "help?", user="U1")
    reply = await client.chat_postMessage(channel="C1", text="on it", thread_ts=parent.ts)
    assert reply["message"]["thread_ts"] == parent.ts
    assert [m.text for m in fake.thread("C1", parent.ts)] == ["help?", "on it"]

    fake.add_channel("C2", is_member=False)
    for channel, error in [("C2", "not_in_channel"), ("C404", "channel_not_found")]:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=channel, text="hi")
        assert err.value.response.status_code == 200 and err.value.response["error"] == error
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=parent.ts, text="not mine")
    assert err.value.response["error"] == "cant_update_message"

    auth = await client.auth_test()
    assert (auth["team_id"], auth["user_id"]) == (fake.team_id, fake.bot_user_id)


async def test_msg_too_long_with_configurable_limit(fake: FakeSlack) -> None:
    client = client_for(fake)
    await client.chat_postMessage(channel="C1", text="x" * 4000)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x" * 4001)
    assert err.value.response["error"] == "msg_too_long"
    fake.max_text_chars = 10
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C1", text="eleven char")


async def test_replies_pages_with_cursor_and_restricted_page_limit() -> None:
    async with FakeSlack(restricted_history=True, rate_limits=False) as fake:
        parent = fake.seed_thread("C1", replies=39)
        client = client_for(fake)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await client.conversations_replies(channel="C1", ts=parent.ts, limit=200, cursor=cursor)
            pages += 1
            assert len(page["messages"]) <= 15
            seen.extend(m["text"] for m in page["messages"])
            cursor = page["response_metadata"]["next_cursor"]
            if not cursor:
                assert page["has_more"] is False
                break
        assert pages == 3
        assert seen == [f"message {i}" for i in range(40)]

        newer = await client.conversations_replies(
            channel="C1", ts=parent.ts, oldest=fake.thread("C1", parent.ts)[-3].ts
        )
        assert [m["text"] for m in newer["messages"]] == ["message 0", "message 38", "message 39"]

        fake.seed_message("C1", "top level later")
        history = await client.conversations_history(channel="C1", limit=1)
        assert [m["text"] for m in history["messages"]] == ["top level later"]
        assert history["has_more"] is True
        with pytest.raises(SlackApiError) as err:
            await client.conversations_replies(channel="C1", ts=parent.ts, cursor="bogus!")
        assert err.value.response["error"] == "invalid_cursor"


async def test_restricted_tier_answers_429_with_integer_retry_after() -> None:
    async with FakeSlack(restricted_history=True) as fake:
        parent = fake.seed_thread("C1", replies=2)
        client = client_for(fake)
        await client.conversations_replies(channel="C1", ts=parent.ts)
        with pytest.raises(SlackApiError) as err:
            await client.conversations_replies(channel="C1", ts=parent.ts)
        response = err.value.response
        assert response.status_code == 429 and response["error"] == "ratelimited"
        retry_after = int(response.headers["Retry-After"])
        assert 55 <= retry_after <= 60
        assert fake.count_429("conversations.replies") == 1


async def test_tiers_are_per_method_and_workspace_and_post_is_per_channel() -> None:
    async with FakeSlack(
        rates={"chat.update": Rate(per_minute=50, burst=2)}, post_per_channel=Rate(60, burst=2)
    ) as fake:
        fake.add_channel("C1")
        fake.add_channel("C2")
        other = fake.add_workspace(
            "T2", bot_token="xoxb-two", app_token="xapp-two", bot_user_id="UB2", bot_id="BB2"
        )
        client = client_for(fake)
        ts = (await client.chat_postMessage(channel="C1", text="a"))["ts"]
        await client.chat_postMessage(channel="C1", text="b")
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text="c")
        assert err.value.response.status_code == 429
        await client.chat_postMessage(channel="C2", text="other channel has its own bucket")

        await client.chat_update(channel="C1", ts=ts, text="1")
        await client.chat_update(channel="C1", ts=ts, text="2")
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel="C1", ts=ts, text="3")
        assert err.value.response.headers["Retry-After"] == "2"  # 50/min: a token every 1.2 s, rounded up
        other_ts = (
            await AsyncWebClient(token=other.bot_token, base_url=fake.api_url).chat_postMessage(
                channel="C2", text="x"
            )
        )["ts"]
        await AsyncWebClient(token=other.bot_token, base_url=fake.api_url).chat_update(
            channel="C2", ts=other_ts, text="y"
        )
        assert fake.count_429() == 2 and fake.rate_limited == {"chat.postMessage": 1, "chat.update": 1}


async def test_time_scale_and_fractional_retry_after() -> None:
    async with FakeSlack(time_scale=0.001, fractional_retry_after=True, restricted_history=True) as fake:
        parent = fake.seed_thread("C1", replies=1)
        client = client_for(fake)
        await client.conversations_replies(channel="C1", ts=parent.ts)
        with pytest.raises(SlackApiError) as err:
            await client.conversations_replies(channel="C1", ts=parent.ts)
        wait = float(err.value.response.headers["Retry-After"])
        assert 0 < wait <= 0.06
        await asyncio.sleep(wait + 0.01)
        await client.conversations_replies(channel="C1", ts=parent.ts)


async def test_sdk_retry_handler_retries_an_injected_429(fake: FakeSlack) -> None:
    client = client_for(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    fake.inject("chat.postMessage", Fault.rate_limited(retry_after=0), times=1)
    posted = await client.chat_postMessage(channel="C1", text="eventually")
    assert posted["ok"]
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 200]
    assert fake.count_429("chat.postMessage") == 1


async def test_injected_faults(fake: FakeSlack) -> None:
    client = client_for(fake, retry_handlers=[])  # no connection-error retries: see each fault once
    ts = (await client.chat_postMessage(channel="C1", text="hello"))["ts"]
    fake.inject("chat.update", Fault.server_error(status=500))
    fake.inject("chat.update", Fault.api_error("channel_not_found"))
    fake.inject("chat.update", Fault.connection_drop())
    fake.inject("chat.update", Fault.delete_target())
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=ts, text="1")
    assert err.value.response.status_code == 500
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=ts, text="2")
    assert err.value.response["error"] == "channel_not_found"
    with pytest.raises(aiohttp.ClientError):
        await client.chat_update(channel="C1", ts=ts, text="3")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=ts, text="4")
    assert err.value.response["error"] == "message_not_found"
    assert fake.message("C1", ts).deleted


async def test_chat_stream_append_stop_and_expiry(fake: FakeSlack) -> None:
    client = client_for(fake)
    parent = fake.seed_message("C1", "summarize please", user="U1")
    streamer = await client.chat_stream(
        channel="C1",
        thread_ts=parent.ts,
        recipient_team_id=fake.team_id,
        recipient_user_id="U1",
        buffer_size=5,
    )
    await streamer.append(markdown_text="Hello")
    await streamer.append(markdown_text=", world")
    await streamer.stop(markdown_text="!")
    assert streamer.ts is not None
    message = fake.message("C1", streamer.ts)
    assert message.text == "Hello, world!" and not message.streaming and message.thread_ts == parent.ts
    assert [v.kind for v in message.versions] == ["stream_start", "stream_append", "stream_stop"]
    start_call = fake.calls_to("chat.startStream")[0]
    assert start_call.params["recipient_user_id"] == "U1"

    fake.stream_idle_timeout = 0.05
    expiring = await client.chat_stream(channel="C1", thread_ts=parent.ts, buffer_size=1)
    await expiring.append(markdown_text="partial")
    await asyncio.sleep(0.1)
    with pytest.raises(SlackApiError) as err:
        await expiring.append(markdown_text=" more")
    assert err.value.response["error"] == "message_not_in_streaming_state"
    assert expiring.ts is not None
    await client.chat_update(channel="C1", ts=expiring.ts, text="partial more")  # the documented fallback
    assert fake.message("C1", expiring.ts).text == "partial more"


async def test_users_conversations_ephemeral_and_response_url(fake: FakeSlack) -> None:
    client = client_for(fake)
    user = await client.users_info(user="U1")
    assert user["user"]["profile"]["display_name"] == "Ada L."
    info = await client.conversations_info(channel="C1")
    assert info["channel"]["name"] == "support" and info["channel"]["is_member"] is True
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="U404")
    assert err.value.response["error"] == "user_not_found"

    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert fake.ephemerals[0].text == "only you" and eph["message_ts"] == fake.ephemerals[0].message_ts

    url = fake.new_response_url(channel="C1", user="U1")
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"text": "private"}) as r1:
            assert r1.status == 200
        async with session.post(url, json={"text": "for all", "response_type": "in_channel"}) as r2:
            assert r2.status == 200
    assert [p.response_type for p in fake.response_url_posts] == ["ephemeral", "in_channel"]
    assert fake.ephemerals[-1].text == "private"
    assert fake.messages_in("C1")[-1].text == "for all"


async def test_socket_mode_hello_envelope_and_ack(fake: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=fake.api_url)
    client = SocketModeClient(app_token=fake.app_token, web_client=web_client, ping_interval=30)
    raw: list[dict[str, Any]] = []
    received: list[SocketModeRequest] = []

    async def on_message(_client: Any, message: dict[str, Any], _raw: str | None) -> None:
        raw.append(message)

    async def on_request(sm: Any, req: SocketModeRequest) -> None:
        received.append(req)
        await sm.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "ok"})
        )

    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(on_request)
    await client.connect()
    try:
        await fake.socket.wait_connected()
        event = payloads.app_mention(channel="C1", user="U1", text=f"<@{fake.bot_user_id}> hi")
        envelope_id = await fake.push_events_api(
            payloads.event_callback(event), retry_attempt=1, retry_reason="timeout"
        )
        ack = await fake.wait_for_ack(envelope_id)
        assert ack.payload == {"text": "ok"}
        assert received[0].type == "events_api" and received[0].retry_attempt == 1
        assert received[0].payload["event"]["type"] == "app_mention"
        # Same keys as Slack's recorded hello and events_api envelope (tests/fixtures/slack).
        recorded = [
            json.loads(line) for line in (payloads.FIXTURES / SOCKET_FIXTURE).read_text().splitlines()
        ]
        by_type = {r["type"]: r for r in recorded}
        sent = {m["type"]: m for m in raw}
        assert sent["hello"].keys() == by_type["hello"].keys()
        assert sent["events_api"].keys() == by_type["events_api"].keys()
        assert [c.method for c in fake.calls] == ["apps.connections.open"]
    finally:
        await client.close()


async def test_sign_matches_slack_sdk_verifier() -> None:
    body = b'{"type":"event_callback"}'
    now = int(time.time())
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid(body=body, timestamp=str(now), signature=sign(SIGNING_SECRET, now, body))
    assert not verifier.is_valid(body=body, timestamp=str(now), signature=sign("other", now, body))


async def test_bolt_http_mode_accepts_signed_and_refuses_forged_or_stale(fake: FakeSlack) -> None:
    app = AsyncApp(client=client_for(fake), signing_secret=SIGNING_SECRET)
    mentions: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        mentions.append(event["text"])
        await say(text="summary coming", thread_ts=event["ts"])

    @app.command("/faq")
    async def on_faq(ack: Any, respond: Any) -> None:
        await ack()
        await respond(text="FAQ", response_type="in_channel")

    runner = web.AppRunner(AsyncSlackAppServer(port=0, path="/slack/events", app=app).web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        async with SlackDelivery(url, SIGNING_SECRET) as delivery:
            body = payloads.event_callback(
                payloads.app_mention(channel="C1", user="U1", text="<@UBOT> sum up")
            )
            assert (await delivery.send_event(body, forged=True)).status == 401
            assert (await delivery.send_event(body, stale=True)).status == 401
            accepted = await delivery.send_event(body)
            assert accepted.status == 200 and accepted.ack_seconds > 0
            retried = await delivery.send_event(body, retry_num=1)
            assert retried.status == 200

            form = payloads.slash_command_form(
                command="/faq",
                text="",
                channel_id="C1",
                user_id="U1",
                response_url=fake.new_response_url(channel="C1", user="U1"),
            )
            assert (await delivery.send_slash_command(form, forged=True)).status == 401
            assert (await delivery.send_slash_command(form)).status == 200

            for _ in range(100):  # Bolt runs listeners after the ack: wait for their effects
                if len(fake.calls_to("chat.postMessage")) == 2 and fake.response_url_posts:
                    break
                await asyncio.sleep(0.02)
        assert mentions == ["<@UBOT> sum up", "<@UBOT> sum up"]  # Bolt itself does not drop retries
        assert [m.text for m in fake.bot_messages("C1")] == ["summary coming", "summary coming", "FAQ"]
        assert fake.response_url_posts[0].response_type == "in_channel"
    finally:
        await runner.cleanup()


def test_payload_builders_shape() -> None:
    changed = payloads.message_changed(channel="C1", user="U1", ts="1.000001", old_text="a", new_text="b")
    assert changed["subtype"] == "message_changed" and changed["message"]["text"] == "b"
    deleted = payloads.message_deleted(channel="C1", user="U1", deleted_ts="1.000001", old_text="a")
    assert deleted["deleted_ts"] == "1.000001"
    bot = payloads.bot_message(channel="C1", bot_id="B9", text="beep", legacy_subtype=True)
    assert bot["subtype"] == "bot_message" and "user" not in bot
    reply = payloads.message(channel="C1", user="U1", text="r", thread_ts="1.000001")
    assert reply["thread_ts"] == "1.000001" and reply["ts"] != reply["thread_ts"]
    shortcut = payloads.message_shortcut(
        callback_id="summarize_thread",
        channel_id="C1",
        user_id="U1",
        message_ts="1.1",
        message_text="t",
        response_url="http://x",
    )
    assert shortcut["type"] == "message_action" and shortcut["message"]["ts"] == "1.1"


async def test_bolt_socket_mode_handler_receives_events_and_commands(fake: FakeSlack) -> None:
    app = AsyncApp(client=client_for(fake))

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text="hi from socket mode", thread_ts=event["ts"])

    @app.command("/llmcost")
    async def on_cost(ack: Any) -> None:
        await ack(text="spend: $0.00")

    handler = AsyncSocketModeHandler(app, app_token=fake.app_token)
    await handler.connect_async()
    try:
        await fake.socket.wait_connected()
        body = payloads.event_callback(payloads.app_mention(channel="C1", user="U1", text="<@UBOT> hi"))
        event_ack = await fake.wait_for_ack(await fake.push_events_api(body))
        assert event_ack.payload is None
        form = payloads.slash_command_form(
            command="/llmcost",
            text="",
            channel_id="C1",
            user_id="U1",
            response_url=fake.new_response_url(channel="C1", user="U1"),
        )
        command_ack = await fake.wait_for_ack(await fake.push_slash_command(form))
        assert command_ack.payload == {"text": "spend: $0.00"}
        for _ in range(100):  # the listener runs after the ack
            if fake.bot_messages("C1"):
                break
            await asyncio.sleep(0.02)
        assert [m.text for m in fake.bot_messages("C1")] == ["hi from socket mode"]
    finally:
        await handler.close_async()
