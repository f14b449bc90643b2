"""`supportbot run --platform slack`: the Slack process, in Socket Mode or behind the signed-HTTP front.

Socket Mode when SLACK_APP_TOKEN is set (no public URL needed), else HTTP at /slack/events (http.py), which
requires the signing secret: without it nobody can tell Slack's requests from forged ones.
"""

from __future__ import annotations

import asyncio
import logging

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from adapters.slack.http import EVENTS_PATH
from adapters.slack.intake import SlackAdapter
from bot.app import App

log = logging.getLogger(__name__)

async def run_slack(app: App, *, port: int, host: str = "0.0.0.0", stop: asyncio.Event | None = None) -> None:
    """`supportbot run --platform slack`: Socket Mode with SLACK_APP_TOKEN, else HTTP on ``port``. Until ``stop``
    (SIGTERM): then no new events are taken (the listener closes; the load balancer sends them elsewhere, and Slack
    retries what got no answer), and replies in flight get settings.shutdown_grace_s to finish."""
    adapter = SlackAdapter(app)
    stop = stop or asyncio.Event()
    app_token = app.settings.secret("slack_app_token")
    try:
        if app_token:
            handler = AsyncSocketModeHandler(adapter.bolt, app_token=app_token)
            log.info("slack: Socket Mode")
            try:
                await handler.connect_async()
                await stop.wait()
            finally:
                await handler.close_async()
        else:
            if app.settings.slack_signing_secret is None:
                # Without it nobody can tell Slack's requests from forged ones: refuse to serve rather than trust.
                raise SystemExit("supportbot: SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN)")
            runner = await adapter.serve_http(host=host, port=port)
            log.info("slack: serving %s on %s:%d", EVENTS_PATH, host, port)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()
    finally:
        await adapter.drain(grace_s=app.settings.shutdown_grace_s)
