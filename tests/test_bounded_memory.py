"""Per-message state has one size/age policy, and nothing made for one mention outlives it."""

from __future__ import annotations

import pytest

from bot.pacing import PACER_IDLE_S, PACER_MAX_LANES, IntervalPacer
from bot.types import ChannelRef, MessageRef
from tests.bench import soak

CHANNEL = ChannelRef("fake", "W1", "C1")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_pacer_holds_at_most_its_bound_of_messages() -> None:
    t = FakeTime()
    pacer = IntervalPacer(min_interval_s=1.0, clock=t.clock, sleep=t.sleep)
    for i in range(3 * PACER_MAX_LANES):
        await pacer.wait_turn(MessageRef(CHANNEL, f"m{i}"), final=False)
        assert pacer.lanes <= PACER_MAX_LANES
    assert t.slept == []  # every message's first turn is immediate


async def test_the_pacer_forgets_a_message_idle_for_its_age_and_keeps_one_in_use() -> None:
    t = FakeTime()
    pacer = IntervalPacer(min_interval_s=1.0, max_interval_s=8.0, clock=t.clock, sleep=t.sleep)
    idle, busy = MessageRef(CHANNEL, "idle"), MessageRef(CHANNEL, "busy")
    await pacer.wait_turn(idle, final=False)
    await pacer.penalize(idle, 5.0)
    while t.now <= PACER_IDLE_S + 5.0:
        await pacer.wait_turn(busy, final=False)  # in use all along
        t.now += 3.0
    assert pacer.lanes == 1  # "idle" aged out; "busy", used every few seconds, did not
    t.slept.clear()
    await pacer.wait_turn(idle, final=False)
    assert t.slept == []  # a fresh lane: its old penalty is gone with it


@pytest.mark.timeout(120)
async def test_a_few_hundred_mentions_leave_nothing_behind() -> None:
    result = await soak.run(mentions=300, sample_every=100, concurrency=25)
    assert result["model_calls"] == 300 and result["replies_ok"] == 300
    assert result["alive_after"] == {"LiveReply": 0, "Mention": 0, "Request": 0}
    assert result["tasks_left"] == 0
    assert result["live_registry_left"] == 0


async def test_the_discord_pacer_holds_at_most_its_bound_of_messages_and_channels() -> None:
    from adapters.discord.pacing import REMEMBERED, ChannelEditPacer

    t = FakeTime()
    pacer = ChannelEditPacer(clock=t.clock, sleep=t.sleep)
    for i in range(REMEMBERED + 500):
        await pacer.wait_turn(MessageRef(ChannelRef("discord", "G", str(i)), str(i)), final=False)
        t.now += 0.1  # each channel streams a while, then goes quiet
    assert len(pacer._messages) <= REMEMBERED
    assert len(pacer._lanes) <= REMEMBERED


async def test_slack_per_user_and_per_reply_maps_stay_within_their_bound() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.platform import SlackPlatform
    from adapters.slack.streaming import REMEMBERED
    from bot.types import ChannelRef

    platform = SlackPlatform(AsyncWebClient(token="xoxb-test", base_url="http://127.0.0.1:9/"), team_id="T1")
    channel = ChannelRef("slack", "T1", "C1")
    for i in range(REMEMBERED + 500):
        platform.expect_reply(channel, f"{i}.000100", user=f"U{i}")
    assert len(platform._streams._recipients) == REMEMBERED
    assert ("C1", f"{REMEMBERED + 499}.000100") in platform._streams._recipients  # the newest are the ones kept
