"""How supportbot's neutral replies look on Discord: scope lines, the spend report as an embed, admin notices.

Streamed replies are plain message content, not embeds (see CONTENT_LIMIT in adapters/discord/platform.py for why); the
spend report is the one reply that is a table of figures, which is what embed fields are for.
"""

from __future__ import annotations

from decimal import Decimal

import discord

from bot.spend import SpendReport, usd

# Embed limits, https://discord.com/developers/docs/resources/message#embed-object-embed-limits (FACTS.md: embed
# description ≤ 4,096, all embeds of a message ≤ 6,000).
EMBED_TITLE_CHARS = 256
EMBED_FIELD_VALUE_CHARS = 1024
EMBED_TOTAL_CHARS = 6000
EMBED_MAX_FIELDS = 25
SPEND_COLOUR = 0x5865F2  # Discord blurple: a report, not a warning

# "-# " is Discord's subtext markdown: a small grey line above the summary that says what was summarized.
SCOPE_HEADERS = {
    "thread": "-# Summary of this thread\n",
    "reply chain": "-# Summary of this reply chain\n",
    "channel": "-# Summary of the recent conversation in this channel\n",
    # A context-menu summary where the bot cannot read the channel (a user install, a group DM): just that message.
    "message": "-# Summary of this message\n",
}

MESSAGE_CONTENT_NOTICE = (
    "⚠️ I cannot read messages in this server: my **Message Content intent** is off.\n"
    "To fix it: Discord Developer Portal → your application → **Bot** → **Privileged Gateway Intents** → turn on "
    "**Message Content Intent**, save, then restart me.\n"
    "Until then I only see messages that mention me: summaries cover only those, and /faq collects no questions."
)


def scope_header(scope: str) -> str:
    return SCOPE_HEADERS.get(scope, "")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def spend_embed(report: SpendReport) -> discord.Embed:
    """The /llmcost report: headline figures as inline fields, breakdowns as full-width fields, the daily chart in
    the description so it reads left to right like the period."""
    embed = discord.Embed(
        title=_cut(f"LLM spend — {report.scope}, {report.period}", EMBED_TITLE_CHARS),
        description=f"Since {report.since.isoformat()}\nDaily: `{report.chart() or '–'}`",
        colour=SPEND_COLOUR,
    )
    embed.add_field(name="Total", value=report.total_text())
    embed.add_field(name="Calls", value=report.calls_text())
    embed.add_field(name="From cache", value=f"{report.cache_hits:,}")
    if report.budget_usd is not None:
        left = max(report.budget_left_usd or Decimal(0), Decimal(0))
        embed.add_field(
            name="Budget this month",
            value=f"{usd(report.month_spent_usd)} of {usd(report.budget_usd)} — {usd(left)} left",
            inline=False,
        )
    rows = [("By model", report.by_model), ("By feature", report.by_feature)]
    if len(report.by_channel) > 1:
        rows.append(("By channel", report.by_channel[:10]))
    for title, lines in rows:
        if lines:
            value = "\n".join(f"{r.label}: {r.cost_text()} ({r.calls})" for r in lines)
            embed.add_field(name=title, value=_cut(value, EMBED_FIELD_VALUE_CHARS), inline=False)
    embed.add_field(
        name="Tokens",
        value=report.tokens_text(),
        inline=False,
    )
    for note in report.notes():  # unpriced calls and estimated counts, said in words
        embed.add_field(name="Note", value=_cut(note, EMBED_FIELD_VALUE_CHARS), inline=False)
    embed.add_field(
        name="Saved",
        value=(
            f"{usd(report.prompt_cache_saved_usd)} by prompt caching · "
            f"{usd(report.response_cache_saved_usd)} by the response cache"
        ),
        inline=False,
    )
    if report.top_users:
        # Mentions inside embeds render as names and never ping anyone.
        value = ", ".join(f"{_who(r.name)} {usd(r.cost_usd)}" for r in report.top_users)
        embed.add_field(name="Top users", value=_cut(value, EMBED_FIELD_VALUE_CHARS), inline=False)
    return embed


def _who(user: str) -> str:
    return f"<@{user}>" if user.isdigit() else user
