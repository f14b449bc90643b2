"""The private discord.py state the bot reads, pinned against the installed discord.py.

The edit pacer asks discord.py how much of a channel's edit bucket is left before each in-progress edit
(adapters/discord/pacing.py, ``EditBuckets.budget``, used by ``ChannelEditPacer``). discord.py has no
public API for that, so ``EditBuckets.budget`` reads private state, defensively: any surprise makes it answer "unknown",
and the pacer falls back to spacing every edit by UNKNOWN_BUCKET_SPACING_S. A discord.py upgrade that renames this
state would therefore break nothing loudly: replies would just stream more slowly (or queue stale edits inside
discord.py), for ever. These tests make that loud. What ``EditBuckets.budget`` reads, exactly:

- ``discord.http.Route(method, path, **params)`` and its ``.key`` ("PATCH /channels/{channel_id}/messages/{message_id}")
  and ``.major_parameters`` (the channel id): one edit bucket per channel;
- ``HTTPClient._bucket_hashes``: route key → Discord's bucket hash (``X-RateLimit-Bucket``);
- ``HTTPClient._buckets``: ``"{hash}:{major}"`` (or, before the hash is known, ``"{route key}:{major}"``) → Ratelimit;
- ``Ratelimit.limit / .remaining / .outgoing / .expires / .dirty``, with ``expires`` on the event loop's clock and
  ``remaining + outgoing`` the budget before the requests in flight (``acquire`` takes one from ``remaining`` and
  adds one to ``outgoing``).

The gateway guard (adapters/discord/guard.py) wraps ``client._connection.parsers`` in place; that the websocket calls
that very dict is checked end to end in tests/test_discord_replay.py (a real gateway session); the table itself is
checked here. The pin in pyproject.toml keeps discord.py below its next minor version: raising it means running
these tests against the new version first.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord
import discord.http
import pytest

from adapters.discord.guard import guard_parsers, is_guarded
from adapters.discord.platform import DiscordPlatform
from tests.fakes.discord_api import FakeDiscord, discord_py_pointed_at
from tests.fakes.discord_ratelimit import RateLimitConfig

EDIT_PATH = "/channels/{channel_id}/messages/{message_id}"
READER = "adapters/discord/pacing.py EditBuckets.budget (the edit pacer's view of the channel's bucket)"
PARSERS_READER = "adapters/discord/guard.py guard_parsers (no gateway payload may stop the bot)"
WHAT_TO_DO = (
    "Read the new discord/http.py (HTTPClient.request, Ratelimit) and discord/state.py, update the reader, "
    "then this test and the discord.py pin in pyproject.toml."
)


def broken(what: str, reader: str = READER) -> None:
    pytest.fail(f"discord.py {discord.__version__} broke a private contract: {what}. {reader} relies on it. "
                f"{WHAT_TO_DO}", pytrace=False)  # fmt: skip


def test_the_pin_admits_the_installed_discord_py_and_stops_below_the_next_minor() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (spec,) = [d for d in project["project"]["dependencies"] if re.match(r"discord\.py\b", d)]
    below = re.search(r"<\s*(\d+)\.(\d+)\b", spec)
    if below is None:
        pytest.fail(f"pyproject.toml's {spec!r} has no upper bound: discord.py's private state (see this module) "
                    "may change in any minor release.", pytrace=False)  # fmt: skip
    ceiling = (int(below[1]), int(below[2]))
    installed = (discord.version_info.major, discord.version_info.minor)
    assert ceiling == (installed[0], installed[1] + 1), (
        f"the pin {spec!r} should stop right below the next minor of the installed discord.py "
        f"{discord.__version__}: the contract below was checked against {installed[0]}.{installed[1]} only"
    )


def test_the_edit_route_keys_one_bucket_per_channel() -> None:
    route = discord.http.Route("PATCH", EDIT_PATH, channel_id=123, message_id=456)
    if getattr(route, "key", None) != f"PATCH {EDIT_PATH}":
        broken(f"Route.key is {getattr(route, 'key', 'missing')!r}, not the method and path template")
    if getattr(route, "major_parameters", None) != "123":
        broken(f"Route.major_parameters is {getattr(route, 'major_parameters', 'missing')!r}, not the channel id")


async def test_the_http_client_keeps_its_buckets_where_the_pacer_looks() -> None:
    http = discord.Client(intents=discord.Intents.none()).http
    for name in ("_bucket_hashes", "_buckets"):
        if not isinstance(getattr(http, name, None), dict):
            broken(f"HTTPClient.{name} is gone or no longer a dict")
    ratelimit = getattr(discord.http, "Ratelimit", None)
    if ratelimit is None:
        broken("discord.http.Ratelimit is gone")
    bucket = ratelimit(None)
    for name in ("limit", "remaining", "outgoing", "expires", "dirty"):
        if not hasattr(bucket, name):
            broken(f"Ratelimit.{name} is gone")


async def test_a_request_in_flight_moves_one_token_from_remaining_to_outgoing() -> None:
    """EditBuckets.budget counts ``remaining + outgoing`` as the window's budget before the requests in flight."""
    bucket = discord.http.Ratelimit(None)
    bucket.limit = bucket.remaining = 5
    async with bucket:
        if (bucket.remaining, bucket.outgoing) != (4, 1):
            broken(f"a request in flight leaves remaining={bucket.remaining}, outgoing={bucket.outgoing} "
                   "(expected 4 and 1 of a fresh bucket of 5)")  # fmt: skip
    assert bucket.outgoing == 0


@asynccontextmanager
async def logged_in(fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """A discord.py client logged in to the fake's REST API (no gateway: the pacer reads only REST state)."""
    with discord_py_pointed_at(fake):
        client = discord.Client(intents=discord.Intents.none())
        await client.login(fake.token)
        try:
            yield client
        finally:
            await client.close()


async def test_edit_budget_follows_the_buckets_discord_py_learns_from_the_headers() -> None:
    rule = RateLimitConfig().edit_message  # what the fake announces in X-RateLimit-*: 5 edits per 5 s a channel
    async with FakeDiscord() as fake, logged_in(fake) as client:
        guild = fake.add_guild()
        first, second = fake.add_text_channel(guild), fake.add_text_channel(guild, name="other")
        platform = DiscordPlatform(client)
        assert platform.edit_buckets.budget(first) is None  # discord.py has not seen the bucket yet: "unknown"

        message = await platform.send(first, "draft", guild_id=guild)
        await platform.edit_in(first, message, "draft, longer")
        # The first edit went out before discord.py knew the route's bucket hash (the interim key) ...
        budget = platform.edit_buckets.budget(first)
        if budget is None:
            broken("after an edit, the channel's bucket is not under the keys EditBuckets.budget computes "
                   f"(HTTPClient._buckets holds {sorted(client.http._buckets)})")  # fmt: skip
        left, reset_s = budget
        assert left == rule.limit - 1, budget
        assert 0 < reset_s <= rule.window_s, budget  # Ratelimit.expires is on the event loop's clock

        await platform.edit_in(first, message, "draft, longer still")
        left, reset_s = platform.edit_buckets.budget(first) or (None, math.nan)
        assert left == rule.limit - 2 and 0 < reset_s <= rule.window_s

        # ... and another channel's first edit already uses the hashed key ("{hash}:{channel}").
        route = discord.http.Route("PATCH", EDIT_PATH, channel_id=second, message_id=0)
        if route.key not in client.http._bucket_hashes:
            broken("HTTPClient._bucket_hashes does not map the edit route's key to Discord's bucket hash")
        assert platform.edit_buckets.budget(second) is None
        other = await platform.send(second, "draft", guild_id=guild)
        await platform.edit_in(second, other, "draft, longer")
        if f"{client.http._bucket_hashes[route.key]}:{second}" not in client.http._buckets:
            broken("HTTPClient._buckets does not key a learned bucket as '{hash}:{channel id}'")
        assert platform.edit_buckets.budget(second) == (rule.limit - 1, pytest.approx(rule.window_s, abs=1.0))
        assert (platform.edit_buckets.budget(first) or (None,))[0] == rule.limit - 2  # channels do not share a bucket


async def test_the_parser_table_the_guard_wraps_is_a_dict_of_dispatch_names() -> None:
    client = discord.Client(intents=discord.Intents.none())
    parsers = getattr(getattr(client, "_connection", None), "parsers", None)
    if not isinstance(parsers, dict):
        broken("Client._connection.parsers is gone or no longer a dict", PARSERS_READER)
    wanted = {"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "INTERACTION_CREATE", "THREAD_CREATE", "READY"}
    if not wanted <= set(parsers):
        broken(f"Client._connection.parsers lacks {sorted(wanted - set(parsers))}", PARSERS_READER)
    assert guard_parsers(client, on_dropped=lambda *_: None) == len(parsers) and is_guarded(client)
