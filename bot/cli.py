"""`supportbot` command line: run, console, doctor, spend, forget."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.settings import Settings, SettingsError, load_settings
from bot.stores.base import Store
from bot.types import ChannelRef

if TYPE_CHECKING:
    from aiohttp import web

    from bot.app import App
    from bot.health import Readiness

log = logging.getLogger("supportbot")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="supportbot", description="Support assistant for Slack and Discord.")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start the bot on every platform whose tokens are set (else the console)")
    run.add_argument("--platform", action="append", choices=["slack", "discord", "console"])
    run.add_argument("--port", type=int, default=3000, help="Slack HTTP mode port (default 3000)")
    run.add_argument("--host", default="0.0.0.0", help="Slack HTTP mode interface (default: all)")
    run.add_argument("--shard-ids", default=None, help="Discord shard ids this process runs, e.g. 0,1")
    run.add_argument("--shard-count", type=int, default=None, help="Discord total shard count")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz and /readyz on this port (default: SUPPORTBOT_METRICS_PORT, else off)",
    )
    con = sub.add_parser("console", help="chat with the bot in this terminal")
    con.add_argument("--replay", metavar="FILE.jsonl", help="replay a transcript and exit when replies are final")
    con.add_argument("--show-edits", action="store_true", help="print every edit of every reply, timestamped")
    con.add_argument(
        "--log-file", default=None, help="where the interactive console logs (default: beside the database)"
    )
    sub.add_parser("doctor", help="check providers, store and platforms; say what is missing")
    sp = sub.add_parser("spend", help="what the bot has spent (from the ledger)")
    sp.add_argument("--days", type=int, default=7)
    sp.add_argument("--channel", default=None, help="one channel id (default: all channels)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    fg = sub.add_parser("forget", help="erase what is stored about a user or a channel")
    who = fg.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--channel")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    configure_logging(settings)
    commands: dict[str | None, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        None: _run,
        "run": _run,
        "console": _console,
        "doctor": _doctor,
        "spend": _spend,
        "forget": _forget,
    }
    try:
        return asyncio.run(commands[args.command](settings, args))
    except KeyboardInterrupt:
        return 130


def _platforms(settings: Settings, asked: list[str] | None) -> list[str]:
    if asked:
        return asked
    found = []
    if settings.slack_bot_token:
        found.append("slack")
    if settings.discord_token:
        found.append("discord")
    return found or ["console"]


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    platforms = _platforms(settings, getattr(args, "platform", None))
    if platforms == ["console"]:
        return await _console(settings, argparse.Namespace(replay=None, show_edits=False, log_file=None))
    from bot.app import build_app

    app = await build_app(settings)
    health = await _serve_health(app, getattr(args, "metrics_port", None))
    stop = _stop_on_signals()
    try:
        servers: list[asyncio.Task[None]] = []
        if "slack" in platforms:
            from adapters.slack.run import run_slack

            servers.append(asyncio.create_task(run_slack(app, port=args.port, host=getattr(args, "host", "0.0.0.0"), stop=stop), name="slack"))
        if "discord" in platforms:
            from adapters.discord.run import run_discord

            shard_ids = [int(s) for s in args.shard_ids.split(",")] if args.shard_ids else None
            discord = run_discord(app, shard_ids=shard_ids, shard_count=args.shard_count, stop=stop)
            servers.append(asyncio.create_task(discord, name="discord"))
        upkeep = asyncio.create_task(app.maintain(stop), name="maintenance")
        try:
            # A server that ends by itself (a bad token, say) ends the process: the others are stopped with it.
            await asyncio.wait(servers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            await asyncio.gather(*servers, upkeep, return_exceptions=True)
        crashed = [t for t in servers if not t.cancelled() and t.exception() is not None]
        for task in [*crashed[1:], upkeep]:  # what is not raised below would otherwise vanish in the gather
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
        if crashed:
            raise crashed[0].exception()  # type: ignore[misc]
    finally:
        if health is not None:
            await health.cleanup()
        await app.close()
    return 0


def _stop_on_signals() -> asyncio.Event:
    """SIGTERM (Kubernetes, docker stop) and SIGINT set the event: the servers stop taking events and drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not on the main thread, or no signals on this platform
            pass
    return stop


async def _serve_health(app: App, port: int | None) -> web.AppRunner | None:
    """/metrics, /healthz and /readyz when --metrics-port or SUPPORTBOT_METRICS_PORT is set."""
    from bot.health import check_ready, serve_health
    from bot.logs import SecretRedactor, configured_secrets

    port = port if port is not None else app.settings.metrics_port
    if port is None:
        return None
    redactor = SecretRedactor(configured_secrets(app.settings))

    async def ready() -> Readiness:
        return await check_ready(store=app.store, settings=app.settings, redact=redactor.redact)

    host = app.settings.metrics_host
    runner = await serve_health(metrics=app.metrics, ready=ready, host=host, port=port)
    log.info("metrics and health on %s:%d (/metrics, /healthz, /readyz)", host, port)
    return runner


async def _console(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.console import run_console
    from bot.app import build_app

    log_file = None
    if not args.replay:
        # Interactive: stderr is the same terminal, so log lines (every HTTP request's, warnings) would land in
        # the middle of the chat. They go to a file instead, named in the banner.
        log_file = args.log_file or _console_log_path(settings)
        _log_to_file(settings, log_file)
    app = await build_app(settings)
    try:
        return await run_console(app, replay_file=args.replay, show_edits=args.show_edits, log_file=log_file)
    finally:
        await app.close()


def _console_log_path(settings: Settings) -> str:
    from pathlib import Path

    db = Path(settings.db)
    return str(db.with_name(db.stem + "-console.log"))


def _log_to_file(settings: Settings, path: str) -> None:
    from bot.logs import configure_logging

    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process's logging does
    configure_logging(settings, stream=stream)
    logging.captureWarnings(True)  # SDK deprecation warnings too, not only log records


async def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from bot.doctor import run_doctor

    return await run_doctor(settings)


async def _spend(settings: Settings, args: argparse.Namespace) -> int:
    from bot.spend import build_report, report_json
    from bot.stores import open_store

    if not 1 <= args.days <= 366:
        print("supportbot: --days must be between 1 and 366", file=sys.stderr)
        return 2
    store = await open_store(redis_url=settings.secret("redis_url"), sqlite_path=settings.db)
    try:
        channel = await _find_channel(store, args.channel) if args.channel else None
        if args.channel and channel is None:
            print(f"supportbot: no spend recorded for channel {args.channel}", file=sys.stderr)
            return 1
        report = await build_report(
            store.ledger,
            period=f"{args.days}d",
            days=args.days,
            channel=channel,
            budget_usd=settings.budget_for(args.channel) if args.channel else None,
        )
    finally:
        await store.close()
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False))
    else:
        print(report.to_text())
    return 0


async def _find_channel(store: Store, spec: str) -> ChannelRef | None:
    """'platform:workspace:channel', or a bare channel id looked up among the channels the ledger knows."""
    parts = spec.split(":")
    if len(parts) == 3:
        return ChannelRef(*parts)
    rows = await store.ledger.daily(since=(datetime.now(UTC) - timedelta(days=366)).date())
    for row in rows:
        if row.channel == spec:
            return ChannelRef(row.platform, row.workspace, row.channel)
    return None


async def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from bot.stores import open_store

    store = await open_store(redis_url=settings.secret("redis_url"), sqlite_path=settings.db)
    try:
        if args.user:
            n = await store.messages.forget_user(args.user) + await store.inquiries.forget_user(args.user)
            print(f"erased {n} stored message(s) and question(s) of user {args.user}")
        else:
            channel = await _find_channel(store, args.channel)
            if channel is None:
                print(f"supportbot: name the channel as platform:workspace:channel ({args.channel} is unknown)")
                return 1
            n = await store.messages.forget_channel(channel) + await store.inquiries.forget_channel(channel)
            print(f"erased {n} stored message(s) and question(s) of channel {args.channel}")
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
