"""`supportbot doctor` for Discord: is the token valid, and is the Message Content intent enabled?

bot/doctor.py imports this module only when DISCORD_TOKEN is set; it talks to the REST API (DISCORD_API_URL) with
aiohttp directly, without starting discord.py's client or gateway.
"""

from __future__ import annotations

import aiohttp

from adapters.discord.endpoints import PUBLIC_API, api_base
from bot.settings import Settings

DOCTOR_TIMEOUT_S = 10.0
# Application flags, https://discord.com/developers/docs/resources/application#application-object-application-flags
FLAG_MESSAGE_CONTENT = 1 << 18
FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19


async def doctor(settings: Settings) -> list[tuple[str, str, str]]:
    """Checks the token (GET /users/@me) and whether the Message Content intent is enabled for the application."""
    token = settings.secret("discord_token")
    if not token:
        return [("ok  ", "discord", "not configured (no DISCORD_TOKEN)")]
    base = api_base(settings.discord_api_url or PUBLIC_API)
    headers = {"Authorization": f"Bot {token}", "User-Agent": "supportbot doctor"}
    results: list[tuple[str, str, str]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOCTOR_TIMEOUT_S)) as session:
            async with session.get(f"{base}/users/@me", headers=headers) as resp:
                if resp.status == 401:
                    return [("FAIL", "discord", "DISCORD_TOKEN was refused (401): copy the bot token again from "
                                                "the Developer Portal → Bot → Reset Token")]
                if resp.status != 200:
                    return [("FAIL", "discord", f"GET /users/@me answered HTTP {resp.status} ({base})")]
                me = await resp.json()
            results.append(("ok  ", "discord", f"token valid: bot {me.get('username')} ({me.get('id')})"))
            async with session.get(f"{base}/oauth2/applications/@me", headers=headers) as resp:
                flags = int((await resp.json()).get("flags") or 0) if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [("FAIL", "discord", f"{base} unreachable ({type(exc).__name__}): check DISCORD_API_URL")]
    if flags is None:
        results.append(("warn", "discord intents", "could not read the application's flags"))
    elif flags & (FLAG_MESSAGE_CONTENT | FLAG_MESSAGE_CONTENT_LIMITED):
        results.append(("ok  ", "discord intents", "Message Content intent enabled"))
    else:
        results.append(("warn", "discord intents", "Message Content intent off: Developer Portal → Bot → "
                                                   "Privileged Gateway Intents → Message Content Intent"))
    return results
