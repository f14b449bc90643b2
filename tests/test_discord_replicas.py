"""Discord processes sharing one Redis: one reply per event whoever receives it, a graceful SIGTERM, and replies a
stopped process left half-done finalised by another. Real discord.py clients against the fake Discord (REST and
gateway) over real sockets, the real model router against the fake LLM server, the Redis store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest
from pydantic import SecretStr

from adapters.discord.commands import RESTARTING
from adapters.discord.render import scope_header
from adapters.discord.run import DiscordAdapter
from bot.app import App, build_app
from bot.live_reply import WRITING_MARKER
from bot.orphans import INTERRUPTED_LINE, LiveState
from bot.settings import Settings
from bot.stores.redis import RedisStore
from tests.fakes.discord_api import FakeDiscord, discord_py_pointed_at
from tests.fakes.discord_payloads import FLAG_EPHEMERAL
from tests.fakes.llm_faults import Fault
from tests.fakes.llm_server import FakeLLMServer, FakeReply, ReceivedRequest, Responder, default_responder
from tests.test_discord_adapter import GUILD_READY_TIMEOUT, MODEL_TEXT, RENDERED_TEXT, WAIT_S, assert_no_pings

CHANNEL_HEADER = scope_header("channel")
INTERACTION_MESSAGE = 4  # interaction callback type: an immediate message


def quick(request: ReceivedRequest) -> FakeReply:
    return default_responder(request) if request.structured else FakeReply(MODEL_TEXT, tokens_per_s=200)


@dataclass
class Process:
    """One `supportbot run --platform discord`: its App (own Redis connection), adapter and SIGTERM event."""

    app: App
    adapter: DiscordAdapter
    stop: asyncio.Event
    serving: asyncio.Task[None]

    @property
    def client(self) -> discord.Client:
        return self.adapter.client


@dataclass
class Cluster:
    fake: FakeDiscord
    llm: FakeLLMServer
    redis_url: str
    prefix: str
    tmp_path: Path
    guild: int
    channel: int
    alice: int
    stack: AsyncExitStack

    async def start(self, *, grace_s: float = 30.0, orphan_after_s: float = 30.0) -> Process:
        settings = Settings(
            openai_api_key=SecretStr("x"),
            openai_base_url=self.llm.openai_base_url,
            anthropic_api_key=None,
            db=str(self.tmp_path / "unused.db"),
            discord_token=SecretStr(self.fake.token),
            discord_api_url=self.fake.api_base,
            discord_gateway_url=str(self.fake.gateway_url),
            shutdown_grace_s=grace_s,
            live_heartbeat_s=0.05,  # the registry follows the reply closely, so the test knows what it holds
            orphan_after_s=orphan_after_s,
        )
        store = await RedisStore(self.redis_url, prefix=self.prefix).open()
        app = await build_app(settings, store=store)
        adapter = DiscordAdapter(app, client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT})
        stop = asyncio.Event()
        serving = asyncio.create_task(adapter.serve(self.fake.token, stop=stop, grace_s=grace_s))
        process = Process(app, adapter, stop, serving)
        self.stack.push_async_callback(self._end, process)
        async with asyncio.timeout(WAIT_S):
            await adapter.ready.wait()
        return process

    @staticmethod
    async def _end(process: Process) -> None:
        process.stop.set()
        await asyncio.gather(process.serving, return_exceptions=True)
        await process.app.close()

    def bot_messages(self) -> list[int]:
        return [w.message_id for w in self.fake.writes_in(self.channel) if w.kind == "create"]

    def final(self, message_id: int) -> str:
        return self.fake.versions(message_id)[-1] or ""

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():  # noqa: ASYNC110 - the fakes' records change under us; polling is simplest
                await asyncio.sleep(0.02)

    def summaries_asked(self) -> int:
        return len([r for r in self.llm.received if not r.structured])


@asynccontextmanager
async def cluster(tmp_path: Path, redis_url: str, prefix: str, responder: Responder) -> AsyncIterator[Cluster]:
    async with (
        FakeDiscord() as fake,
        FakeLLMServer(responder=responder) as llm,
        AsyncExitStack() as stack,
    ):
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        alice = fake.add_member(guild, username="alice")
        with discord_py_pointed_at(fake):  # restores discord.py's class attributes afterwards
            async with stack:  # the processes stop before the fakes do
                yield Cluster(fake, llm, redis_url, prefix, tmp_path, guild, channel, alice, stack)


def running_tasks() -> str:
    """Every unfinished task of this loop with the chain of awaits it waits in, for a failure message (a task's
    get_stack() shows only its outermost coroutine)."""
    lines = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        chain, awaited = [], task.get_coro()
        while (frame := getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)) is not None:
            chain.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        lines.append(f"{task.get_name()}: {' -> '.join(chain) or repr(awaited)}")
    return "\n".join(sorted(lines))


def seen(process: Process, content: str) -> asyncio.Future[discord.Message]:
    """Resolves when ``process``'s client has received a message with ``content`` (start it before sending)."""
    return asyncio.ensure_future(process.client.wait_for("message", check=lambda m: m.content == content))


async def test_two_processes_given_the_same_mention_reply_once(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    async with cluster(tmp_path, redis_url, redis_prefix, quick) as c:
        a, b = await c.start(), await c.start()
        assert len(c.fake.gateway.sessions) == 2  # two sessions on the same shard: each gets every event
        content = f"<@{c.fake.bot_user_id}> summary?"
        both = [seen(a, content), seen(b, content)]
        await asyncio.sleep(0)
        await c.fake.user_message(c.channel, author_id=c.alice, content=content)
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*both)  # both processes received the same MESSAGE_CREATE ...
        await c.wait(lambda: any(c.final(m) == CHANNEL_HEADER + RENDERED_TEXT for m in c.bot_messages()))
        await asyncio.gather(a.adapter.idle(), b.adapter.idle())  # ... and both are done with it
        assert len(c.bot_messages()) == 1  # ... one reply
        assert c.summaries_asked() == 1  # ... and one model call
        assert_no_pings(c.fake)


async def test_sigterm_stops_taking_events_and_lets_the_reply_in_flight_finish(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    release = asyncio.Event()

    async def held(request: ReceivedRequest) -> FakeReply:
        if not request.structured:
            await release.wait()  # the model answers once the test has checked what happens meanwhile
        return quick(request)

    async with cluster(tmp_path, redis_url, redis_prefix, held) as c:
        # The grace outlasts the checks below, made before the model may answer (each bounded by WAIT_S): at WAIT_S
        # a slow run cut the reply off after its final edit, before it was marked done (fresh-clone make test, once).
        p = await c.start(grace_s=3 * WAIT_S)
        bot = c.fake.bot_user_id
        await c.fake.user_message(c.channel, author_id=c.alice, content=f"<@{bot}> summary?")
        await c.wait(lambda: c.summaries_asked() == 1)  # the reply is in flight

        p.stop.set()  # SIGTERM
        await c.wait(lambda: not p.adapter.accepting)
        late = f"<@{bot}> and now?"
        arrived = seen(p, late)
        await asyncio.sleep(0)
        late_message = await c.fake.user_message(c.channel, author_id=c.alice, content=late)
        async with asyncio.timeout(WAIT_S):
            await arrived  # received while draining ...
        command = await c.fake.slash_command(c.channel, user_id=c.alice, name="llmcost")
        await c.wait(lambda: any(cb.interaction_id == command.id for cb in c.fake.interaction_callbacks))
        [callback] = [cb for cb in c.fake.interaction_callbacks if cb.interaction_id == command.id]
        assert callback.callback_type == INTERACTION_MESSAGE  # a command is answered at once, not left to time out
        assert callback.data["content"] == RESTARTING and callback.data.get("flags", 0) & FLAG_EPHEMERAL
        assert not p.serving.done()  # still draining: the reply has not finished

        release.set()
        # The drain ends when the reply does, then the client closes. Bounded by the grace, not WAIT_S: a reply cut
        # off by the grace fails the assertions below, and a hang says where it waits. (It hung in ~5 % of loaded
        # runs until the live reply's heartbeat stopped on a flag as well as a cancel: bot/background.py Repeating.)
        try:
            async with asyncio.timeout(4 * WAIT_S):
                await p.serving
        except TimeoutError:
            pytest.fail(f"still serving {4 * WAIT_S}s after the model answered; tasks left:\n{running_tasks()}")
        assert p.client.is_closed()
        [reply] = c.bot_messages()
        assert c.final(reply) == CHANNEL_HEADER + RENDERED_TEXT  # the reply in flight finished
        assert c.summaries_asked() == 1  # ... and the mention during the drain got none
        # It was left unclaimed, so it is not marked handled for whoever takes the events next.
        assert await p.app.store.claims.claim(f"discord:{late_message['id']}", ttl_s=1)
        assert await p.app.store.live.stale(older_than_s=0) == []  # nothing left for a janitor


async def test_a_reply_cut_off_at_shutdown_is_finalised_by_the_next_process(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with cluster(tmp_path, redis_url, redis_prefix, quick) as c:
        dying = await c.start(grace_s=0)  # a drain that lets nothing finish, as when the grace runs out
        c.llm.enqueue_fault(Fault.stall(hang=True, after_pieces=12))  # the model stops mid-answer
        await c.fake.user_message(c.channel, author_id=c.alice, content=f"<@{c.fake.bot_user_id}> summary?")

        async def registered_as_shown() -> LiveState | None:
            """The registry's record once it holds exactly what the reply's message shows."""
            messages = c.bot_messages()
            if not messages:
                return None
            shown = c.final(messages[0])
            for _, raw in await dying.app.store.live.stale(older_than_s=0):
                state = LiveState.from_json(raw)
                if state.text and shown == CHANNEL_HEADER + state.text + WRITING_MARKER:
                    return state
            return None

        async with asyncio.timeout(WAIT_S):
            while (state := await registered_as_shown()) is None:  # noqa: ASYNC110 - polls the store and fake
                await asyncio.sleep(0.02)
        [reply] = c.bot_messages()
        assert state.messages == (str(reply),) and state.platform == "discord" and state.workspace == str(c.guild)

        dying.stop.set()
        async with asyncio.timeout(WAIT_S):
            await dying.serving
        assert c.final(reply).endswith(WRITING_MARKER)  # stuck "still writing"

        restarted = await c.start(orphan_after_s=0.2)
        assert restarted.app.janitor is not None
        # What the registry holds last (text may have arrived after the snapshot above, before the model stalled).
        [(_, raw)] = await restarted.app.store.live.stale(older_than_s=0)
        state = LiveState.from_json(raw)
        async with asyncio.timeout(WAIT_S):
            while not await restarted.app.janitor.sweep():  # noqa: ASYNC110 - until the reply counts as silent
                await asyncio.sleep(0.05)
        assert c.final(reply) == f"{CHANNEL_HEADER}{state.text}\n\n{INTERRUPTED_LINE}"  # its scope line kept
        assert WRITING_MARKER not in c.final(reply)
        assert await restarted.app.janitor.sweep() == 0  # finalised once
        assert await restarted.app.store.live.stale(older_than_s=0) == []
        assert_no_pings(c.fake)


async def test_sigterm_to_a_real_discord_process_drains_then_exits_cleanly(tmp_path: Path) -> None:
    """`supportbot run --platform discord` as a container runs it: SIGTERM while a reply is in flight."""
    release = asyncio.Event()

    async def held(request: ReceivedRequest) -> FakeReply:
        if not request.structured:
            await release.wait()
        return quick(request)

    async with FakeDiscord() as fake, FakeLLMServer(responder=held) as llm:
        guild = fake.add_guild(name="support")
        channel = fake.add_text_channel(guild, name="help")
        alice = fake.add_member(guild, username="alice")
        env = {
            "OPENAI_API_KEY": "x",
            "OPENAI_BASE_URL": llm.openai_base_url,
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_URL": fake.api_base,
            "DISCORD_GATEWAY_URL": str(fake.gateway_url),
            "SUPPORTBOT_DB": str(tmp_path / "bot.db"),  # the CLI wiring is under test here, not the store
            "SUPPORTBOT_SHUTDOWN_GRACE_S": str(WAIT_S),
            "SUPPORTBOT_LOG_LEVEL": "WARNING",
        }
        log_path = tmp_path / "discord-process.log"
        proc = start_discord_process(env, log_path)
        try:
            def until(predicate: Callable[[], bool], what: str) -> Awaitable[None]:
                return wait_for_process(proc, log_path, predicate, what, timeout_s=WAIT_S)

            # Connected once the command sync (setup_hook, after login) and the gateway session are both there.
            await until(lambda: bool(fake.command_overwrites) and bool(fake.gateway.sessions), "connected")
            await fake.user_message(channel, author_id=alice, content=f"<@{fake.bot_user_id}> summary?")
            await until(lambda: any(not r.structured for r in llm.received), "the model asked")

            proc.send_signal(signal.SIGTERM)
            # The model answers only now: a reply that lands in full proves the process outlived the signal.
            release.set()
            await until(lambda: proc.poll() is not None, "exited after the drain")
            assert proc.returncode == 0, log_path.read_text()
            [reply] = [w.message_id for w in fake.writes_in(channel) if w.kind == "create"]
            assert fake.versions(reply)[-1] == CHANNEL_HEADER + RENDERED_TEXT  # finished before the exit
            assert "Unclosed" not in log_path.read_text()  # the client closed its sessions before the exit
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def start_discord_process(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m bot.cli run --platform discord` with only ``env`` of the bot's settings, its output to a log."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SUPPORTBOT_", "OPENAI", "ANTHROPIC", "SLACK", "DISCORD", "REDIS"))}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--platform", "discord"],
                                env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT)


async def wait_for_process(
    proc: subprocess.Popen[bytes], log_path: Path, predicate: Callable[[], bool], what: str, *, timeout_s: float
) -> None:
    """Until ``predicate()`` holds, polling (a subprocess and the fakes); fails with the process's log when it
    exits first or the time runs out."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - a subprocess and the fakes: polling is simplest
                alive = proc.poll() is None
                assert alive, f"exited {proc.returncode}:\n{log_path.read_text()}"  # noqa: ASYNC240 - on failure only
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}:\n{log_path.read_text()}") from None  # noqa: ASYNC240 - on failure only
