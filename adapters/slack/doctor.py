"""`supportbot doctor` for Slack: is the bot token valid, which installation is it, does it have the scopes each
feature needs, and is the chosen mode (Socket Mode or signed HTTP) set up?

bot/doctor.py imports this module only when SLACK_BOT_TOKEN is set. One auth.test with the bot token names the
workspace, the bot user and an Enterprise Grid org-wide install; Slack names the token's granted scopes in the
``x-oauth-scopes`` header of every Web API response, which is compared with FEATURE_SCOPES (the README's table,
deploy/slack-manifest.yaml). With SLACK_APP_TOKEN, apps.connections.open checks the app-level token (it hands out a
Socket Mode URL, which is not opened).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.identity import install_key
from bot.settings import Settings

OK, WARN, FAIL = "ok  ", "warn", "FAIL"
PUBLIC_API = "https://slack.com/api/"
DOCTOR_TIMEOUT_S = 10
SCOPES_HEADER = "x-oauth-scopes"
# What each feature needs (README, "Slack: what each feature needs"). The first is the bot's reason to exist: a
# scope missing there fails the check; the others turn one feature off, which the check warns about.
FEATURE_SCOPES: dict[str, tuple[str, ...]] = {
    "mentions → summaries": ("app_mentions:read", "chat:write", "channels:history", "groups:history", "users:read"),
    "/faq, /llmcost and the shortcut": ("commands", "chat:write"),
    "the FAQ as a channel canvas": ("canvases:write",),
    "direct messages": ("im:history", "im:read", "channels:read", "groups:read", "users:read"),
    "the AI side pane": ("assistant:write", "im:history", "im:read", "channels:read", "groups:read"),
    "group DMs": ("mpim:history", "mpim:read"),
}
ESSENTIAL = "mentions → summaries"


async def doctor(settings: Settings) -> list[tuple[str, str, str]]:
    """The Slack checks, each (status, what, detail)."""
    token = settings.secret("slack_bot_token")
    if not token:
        return [(OK, "slack", "not configured (no SLACK_BOT_TOKEN)")]
    base = settings.slack_api_url or PUBLIC_API
    client = AsyncWebClient(token=token, base_url=base, timeout=DOCTOR_TIMEOUT_S)
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        return [(FAIL, "slack", f"SLACK_BOT_TOKEN was refused ({error or 'no answer'}): copy the Bot User OAuth "
                                "Token (xoxb-…) again from the app's OAuth & Permissions page")]  # fmt: skip
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [(FAIL, "slack", f"{base} unreachable ({type(exc).__name__}): check SLACK_API_URL")]
    results = [(OK, "slack", _who(response.data if isinstance(response.data, dict) else {}))]
    results += _scope_checks(_granted(response.headers))
    results.append(await _mode_check(settings, base))
    return results


def _who(auth: Mapping[str, Any]) -> str:
    """auth.test's answer, said plainly: the bot user, the workspace, and an org-wide install's organisation."""
    bot = f"bot {auth.get('user') or '?'} ({auth.get('user_id') or '?'})"
    key = install_key(auth.get("team_id"), auth.get("enterprise_id"), auth.get("is_enterprise_install"))
    if auth.get("is_enterprise_install") in (True, "true"):
        where = f"installed org-wide in Enterprise Grid organisation {key}"
    else:
        where = f"in workspace {auth.get('team') or '?'} ({key or '?'})"
        if auth.get("enterprise_id"):
            where += f" of Enterprise Grid organisation {auth.get('enterprise_id')}"
    return f"token valid: {bot} {where}"


def _granted(headers: Mapping[str, Any] | None) -> set[str] | None:
    """The scopes Slack says the token has, or None when the answer did not say (a proxy dropped the header)."""
    for name, value in (headers or {}).items():
        if str(name).lower() == SCOPES_HEADER:
            return {scope.strip() for scope in str(value).split(",") if scope.strip()}
    return None


def _scope_checks(granted: set[str] | None) -> list[tuple[str, str, str]]:
    if granted is None:
        return [(WARN, "slack scopes", f"Slack's answer had no {SCOPES_HEADER} header: scopes not checked")]
    results = []
    for feature, needed in FEATURE_SCOPES.items():
        missing = [scope for scope in needed if scope not in granted]
        if not missing:
            results.append((OK, f"slack scopes: {feature}", "granted"))
            continue
        status = FAIL if feature == ESSENTIAL else WARN
        results.append((status, f"slack scopes: {feature}", f"missing {', '.join(missing)}: add them under OAuth & "
                                                            "Permissions (deploy/slack-manifest.yaml), then reinstall"))  # fmt: skip
    return results


async def _mode_check(settings: Settings, base: str) -> tuple[str, str, str]:
    """Socket Mode (SLACK_APP_TOKEN) or signed HTTP (SLACK_SIGNING_SECRET): what `run` will do, and can it."""
    app_token = settings.secret("slack_app_token")
    if not app_token:
        if settings.slack_signing_secret is None:
            return (FAIL, "slack mode", "HTTP mode needs SLACK_SIGNING_SECRET (Basic Information → App Credentials), "
                                        "or set SLACK_APP_TOKEN for Socket Mode")  # fmt: skip
        return (OK, "slack mode", "HTTP: requests to /slack/events are checked with SLACK_SIGNING_SECRET")
    try:
        await AsyncWebClient(base_url=base, timeout=DOCTOR_TIMEOUT_S).apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        return (FAIL, "slack mode", f"Socket Mode: SLACK_APP_TOKEN was refused ({error or 'no answer'}): it must be "
                                    "an app-level token (xapp-…) with connections:write")  # fmt: skip
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return (FAIL, "slack mode", f"Socket Mode: {base} unreachable ({type(exc).__name__})")
    return (OK, "slack mode", "Socket Mode: SLACK_APP_TOKEN accepted")
