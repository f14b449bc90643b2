"""Model markdown → Slack mrkdwn, and Block Kit for /llmcost and /faq.

Slack's mrkdwn is not markdown: ``*x*`` is bold, ``_x_`` italic, ``~x~`` strike, links are ``<url|text>`` and
``&``, ``<``, ``>`` must be sent as ``&amp;``, ``&lt;``, ``&gt;``
(https://docs.slack.dev/messaging/formatting-message-text#escaping). Escaping every ``<`` that came from the model
or from users is what makes ``<!channel>``-style pings impossible: only the angle brackets this module writes
itself (links) reach Slack as control sequences. The core's ``defang_mass_mentions`` runs first as a second wall.

A single ``*x*`` is left alone: markdown means italic, but the core's own texts (FAQ, spend) use it for bold as
Slack does, and showing a model's rare italic as bold loses nothing a reader needs.

The conversion is applied to the whole text on every edit, so it must be a pure function of the text so far:
a half-streamed ``**bol`` simply shows as typed until its closing ``**`` arrives.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from bot.safety import defang_mass_mentions
from bot.spend import SpendReport, usd

# Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks): a section's text ≤ 3,000 chars,
# a header's plain text ≤ 150, at most 10 fields per section and 2,000 chars per field, 50 blocks per message.
SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
SECTION_FIELDS_MAX = 10
BLOCKS_MAX = 50

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"!?\[([^\]\n]{0,200})\]\(\s*((?:https?://|mailto:)[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
# Private-use characters stand in for protected pieces while the inline rules run; the model cannot send them
# in a way that matters (they are stripped from its text first).
_HOLD = "\ue000"
_HOLD_END = "\ue001"


def escape(text: str) -> str:
    """Slack's three control characters, as entities. Everything else is left alone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert model markdown to Slack mrkdwn; any crowd ping is neutralised twice (ZWSP and escaping)."""
    text = defang_mass_mentions(markdown.replace(_HOLD, "").replace(_HOLD_END, ""))
    out: list[str] = []
    pos = 0
    # Fenced code blocks are copied as they are (escaped only): Slack renders ``` blocks but not their
    # language tag, so the tag is dropped.
    for start, end, body in _code_blocks(text):
        out.append(_convert_prose(text[pos:start]))
        out.append("```\n" + escape(body) + ("```" if end <= len(text) else ""))
        pos = min(end, len(text))
    out.append(_convert_prose(text[pos:]))
    return "".join(out)


def _code_blocks(text: str) -> list[tuple[int, int, str]]:
    """(start, end, body) of each fenced block; an unclosed block (still streaming) runs to the end."""
    blocks: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            return blocks
        fence = opening.group(2)
        body_start = opening.end() + 1 if opening.end() < len(text) else opening.end()
        closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + f"{{{len(fence)},}}[ \\t]*$", re.MULTILINE)
        close = closing.search(text, body_start)
        if close is None:
            blocks.append((opening.start(), len(text) + 1, text[body_start:]))
            return blocks
        body = text[body_start : close.start()]
        blocks.append((opening.start(), close.end(), body))
        pos = close.end()


def _convert_prose(text: str) -> str:
    if not text:
        return text
    held: list[str] = []

    def hold(piece: str) -> str:
        held.append(piece)
        return f"{_HOLD}{len(held) - 1}{_HOLD_END}"

    text = _INLINE_CODE.sub(lambda m: hold(escape(m.group(0))), text)
    text = _LINK.sub(lambda m: hold(_link(m.group(2), m.group(1))), text)
    text = escape(text)
    text = _RULE.sub("──────────", text)
    text = _HEADING.sub(lambda m: hold("*" + _strip_emphasis(m.group(1)) + "*"), text)
    text = _BOLD.sub(lambda m: hold("*" + m.group(2) + "*"), text)
    text = _BULLET.sub(lambda m: m.group(1) + "• ", text)
    text = _STRIKE.sub(lambda m: "~" + m.group(1) + "~", text)
    # Held pieces may contain other held pieces (a bold heading holding a link): restore until none is left.
    pattern = re.compile(re.escape(_HOLD) + r"(\d+)" + re.escape(_HOLD_END))
    for _ in range(4):
        if _HOLD not in text:
            break
        text = pattern.sub(lambda m: held[int(m.group(1))], text)
    return text


def _strip_emphasis(text: str) -> str:
    # A heading becomes one bold line; bold markers inside it would end the bold early.
    return re.sub(r"\*\*|__", "", text)


def _link(url: str, label: str) -> str:
    # Inside <url|text> a ">" or "|" would end the token early; escaping keeps the link one token.
    safe_url = escape(url).replace("|", "%7C")
    label = escape(label.replace("|", "¦")).strip()
    return f"<{safe_url}|{label}>" if label else f"<{safe_url}>"


# ---- Block Kit -------------------------------------------------------------------------------------------


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit] or " ", "emoji": True}


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text[:SECTION_TEXT_MAX] or " "}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _md(text)}


def text_blocks(mrkdwn: str) -> list[dict[str, Any]]:
    """Long mrkdwn as consecutive section blocks, each within the section limit, cut at line breaks."""
    blocks: list[dict[str, Any]] = []
    current = ""
    for line in mrkdwn.splitlines(keepends=True):
        while len(line) > SECTION_TEXT_MAX:
            blocks.append(section(line[:SECTION_TEXT_MAX]))
            line = line[SECTION_TEXT_MAX:]
        if len(current) + len(line) > SECTION_TEXT_MAX:
            blocks.append(section(current))
            current = ""
        current += line
    if current.strip():
        blocks.append(section(current))
    return blocks[:BLOCKS_MAX]


def spend_blocks(report: SpendReport) -> list[dict[str, Any]]:
    """/llmcost as Block Kit: header, totals as fields, a table-like breakdown per model/feature, the chart."""
    title = f"LLM spend — {report.scope}, {report.period}"
    totals = [
        f"*Total*\n{report.total_text()}",
        f"*Calls*\n{report.calls_text()}",
        f"*Since*\n{report.since.isoformat()}",
        f"*Saved*\n{usd(report.prompt_cache_saved_usd)} prompt cache · "
        f"{usd(report.response_cache_saved_usd)} response cache",
    ]
    if report.budget_usd is not None:
        left = report.budget_left_usd
        totals.append(
            f"*Budget this month*\n{usd(report.month_spent_usd)} of {usd(report.budget_usd)}"
            f" · {usd(max(left or Decimal(0), Decimal(0)))} left"
        )
    totals.append(f"*Tokens*\n{report.tokens_text()}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(title, HEADER_TEXT_MAX)},
        {"type": "section", "fields": [_md(escape_fields(f)) for f in totals[:SECTION_FIELDS_MAX]]},
        section(f"*Daily* `{report.chart()}`"),
    ]
    for name, rows in (("model", report.by_model), ("feature", report.by_feature), ("channel", report.by_channel)):
        if not rows or (name == "channel" and len(rows) < 2):
            continue
        blocks.append({"type": "divider"})
        blocks.append(section(_table(f"By {name}", [(r.label, r.cost_text(), str(r.calls)) for r in rows[:15]])))
    if report.top_users:
        blocks.append(section(_table("Top users", [(r.name, r.cost_text(), str(r.calls)) for r in report.top_users])))
    if report.notes():  # unpriced calls and estimated counts, said in words
        blocks.append({"type": "context", "elements": [_md(escape_fields(n)) for n in report.notes()]})
    return blocks[:BLOCKS_MAX]


def escape_fields(text: str) -> str:
    # Field text is written here, not by a user; only values (names) could carry control characters.
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _table(title: str, rows: list[tuple[str, str, str]]) -> str:
    """A fixed-width table inside a code span: Block Kit has no table block that every client renders."""
    width = max([len(r[0]) for r in rows] + [4])
    lines = [f"{'name':<{width}}  {'cost':>10}  {'calls':>6}"]
    lines += [f"{escape(n):<{width}}  {c:>10}  {k:>6}" for n, c, k in rows]
    return f"*{title}*\n```" + "\n".join(lines) + "```"
