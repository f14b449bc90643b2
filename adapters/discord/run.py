"""The Discord process: one discord.py client (a shard range, or all of it) wired to the intake, and its lifetime.

`supportbot run --platform discord` builds a DiscordAdapter: the client with its intents and shards, the guard on
its gateway parsers (discord/guard.py), the message events (discord/intake.py), the application commands
(discord/commands.py) and the ChatPlatform they answer through (discord/platform.py). Each event's work runs as the
intake's tracked work, so on SIGTERM the adapter stops taking events, lets replies in flight finish for
settings.shutdown_grace_s and only then closes the client. A reply cut off there — or by a crash — stays in the
store's registry, and the orphan janitor of any Discord process finalises it through discord/janitor.py, which
the scheduled FAQ refresh publishes through as well.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import discord
from discord import app_commands

from adapters.discord.commands import SlashCommands
from adapters.discord.endpoints import point_discord_py
from adapters.discord.guard import guard_parsers, log_dropped
from adapters.discord.intake import GatewayEvents
from adapters.discord.janitor import JanitorPlatform
from adapters.discord.neutral import PLATFORM
from adapters.discord.platform import NO_PINGS, DiscordPlatform
from adapters.discord.render import MESSAGE_CONTENT_NOTICE
from bot.app import App
from bot.intake import Intake

log = logging.getLogger(__name__)

# The gateway event behind each of our handlers, for the one log line of a dispatch our translation could not take.
EVENT_OF_HANDLER = {
    "on_message": "MESSAGE_CREATE", "on_raw_message_edit": "MESSAGE_UPDATE", "on_raw_message_delete": "MESSAGE_DELETE",
    "on_raw_bulk_message_delete": "MESSAGE_DELETE_BULK", "on_thread_create": "THREAD_CREATE", "on_ready": "READY",
}


class DiscordAdapter:
    def __init__(
        self,
        app: App,
        *,
        shard_ids: list[int] | None = None,
        shard_count: int | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.shard_ids, self.shard_count = shard_ids, shard_count
        self._client_options = client_options or {}
        self.content_intent = True
        self.ready = asyncio.Event()
        self._failures_seen: set[tuple[str, str]] = set()
        self.intake = Intake(app, platform=PLATFORM)
        self._connect(message_content=True)
        if app.janitor is not None:
            app.janitor.serve(PLATFORM, self.janitor_platform)

    @property
    def accepting(self) -> bool:
        """False from shutdown on: events are left alone (not claimed) and commands declined."""
        return self.intake.accepting

    # -- composition

    def _connect(self, *, message_content: bool) -> None:
        """A new client, with the platform, events and commands that belong to it."""
        intents = discord.Intents.default()
        intents.message_content = message_content  # privileged: the fallback in run() goes without it
        options: dict[str, Any] = {"intents": intents, "allowed_mentions": NO_PINGS, **self._client_options}
        client: discord.Client
        if self.shard_ids is not None or self.shard_count is not None:
            if self.shard_ids is not None:  # this process runs a range of the shards (one Redis for all)
                options["shard_ids"] = self.shard_ids
            client = discord.AutoShardedClient(shard_count=self.shard_count, **options)
        else:
            client = discord.Client(**options)
        guard_parsers(client, on_dropped=self._dropped)  # no payload can stop the process (discord/guard.py)
        tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
        self.client, self.tree, self.platform = client, tree, DiscordPlatform(client)
        self.events = GatewayEvents(self.app, self.intake, client, self.platform, content_intent=message_content)
        self.commands = SlashCommands(self.app, self.intake, self.platform, summarize_here=self.events.summarize)

        async def setup_hook() -> None:
            await tree.sync()  # registered on every start: a bulk overwrite is idempotent

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        client.event(self.on_error)
        client.event(self.on_ready)
        self.events.register()
        self.commands.register(tree)

    # -- lifecycle

    async def run(self, token: str) -> None:
        """Run until cancelled. Without the Message Content intent Discord refuses the connection (close 4014):
        say so, and reconnect without it so mentions and commands keep working."""
        try:
            try:
                await self.client.start(token)
            except discord.PrivilegedIntentsRequired:
                log.error("Discord refused the Message Content intent. %s", MESSAGE_CONTENT_NOTICE)
                await self.client.close()
                self.content_intent = False
                self._connect(message_content=False)
                await self.client.start(token)
        finally:
            await self.client.close()

    async def close(self) -> None:
        await self.client.close()

    async def serve(self, token: str, *, stop: asyncio.Event, grace_s: float) -> None:
        """Run until ``stop`` (SIGTERM), then shut down gracefully; a client that ends by itself (a bad token, say)
        ends this too, with its error."""
        running = asyncio.create_task(self.run(token), name="discord-client")
        stopping = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.shutdown(grace_s=grace_s)
            await asyncio.gather(running, stopping, return_exceptions=True)
        if not running.cancelled() and running.exception() is not None:
            raise running.exception()  # type: ignore[misc]

    async def shutdown(self, *, grace_s: float) -> int:
        """Stop taking events, let the work in flight finish for up to ``grace_s``, then close the client (the
        gateway and the REST session). Returns how many pieces of work were cut off."""
        try:
            return await self.drain(grace_s=grace_s)
        finally:
            await self.client.close()

    async def on_ready(self) -> None:
        log.info("discord: connected as %s to %d guild(s)", self.client.user, len(self.client.guilds))
        self.ready.set()
        if not self.content_intent:
            await self.events.tell_admin_once()

    # -- dispatches that did not parse

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """A handler of ours raised on an event discord.py did parse (a message with no author, say): the same one
        line as a dispatch that did not parse, instead of discord.py's traceback per event."""
        error = sys.exc_info()[1] or RuntimeError("unknown error")
        event = EVENT_OF_HANDLER.get(event_method, event_method)
        log_dropped(event, error, seen=self._failures_seen, stage="could not be handled")

    def _dropped(self, event: str, data: Any, exc: Exception) -> None:
        """What is still owed for a dispatch discord/guard.py dropped (it has already logged it)."""
        if not isinstance(data, dict):
            return
        if event == "INTERACTION_CREATE":
            self.commands.unreadable(data)
        elif event == "MESSAGE_UPDATE":
            self.events.raw_update(data)

    # -- work in flight

    async def idle(self) -> None:
        await self.intake.idle()

    async def drain(self, *, grace_s: float) -> int:
        return await self.intake.drain(grace_s=grace_s)

    def janitor_platform(self, workspace: str) -> JanitorPlatform:
        """What the janitor's registry hands out for this process's Discord (bot/orphans.py, bot/faq_schedule.py):
        REST reaches every guild whatever shard this process runs."""
        return JanitorPlatform(self.platform)


async def run_discord(
    app: App, *, shard_ids: list[int] | None, shard_count: int | None, stop: asyncio.Event | None = None
) -> None:
    """`supportbot run --platform discord`, until ``stop`` (SIGTERM): then no new events are taken, replies in
    flight get settings.shutdown_grace_s to finish, and the client closes (its shards' sessions end cleanly)."""
    token = app.settings.secret("discord_token")
    if not token:
        raise RuntimeError("DISCORD_TOKEN is not set")
    point_discord_py(app.settings)
    adapter = DiscordAdapter(app, shard_ids=shard_ids, shard_count=shard_count)
    await adapter.serve(token, stop=stop or asyncio.Event(), grace_s=app.settings.shutdown_grace_s)

