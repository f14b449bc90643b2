"""Where discord.py connects: DISCORD_API_URL (REST) and DISCORD_GATEWAY_URL (gateway), for a REST proxy, a gateway
proxy or a fake. Both are class attributes of discord.py (FACTS.md), so pointing them is process-wide."""

from __future__ import annotations

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.settings import Settings

API_VERSION_PATH = "/api/v10"
PUBLIC_API = "https://discord.com"


def point_discord_py(settings: Settings) -> None:
    if settings.discord_api_url:
        discord.http.Route.BASE = api_base(settings.discord_api_url)
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def api_base(url: str) -> str:
    """Accept a proxy's root ('http://proxy:8080') or a full base ('…/api/v10')."""
    url = url.rstrip("/")
    return url if "/api/v" in url else url + API_VERSION_PATH
