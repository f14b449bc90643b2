"""Keep text from the model or from users from pinging a crowd, whichever platform it ends up on.

A zero-width space (U+200B) goes into every crowd-ping token, so a person reads the same text but neither Slack
nor Discord recognises a mention any more. The patterns need no closing ``>`` or word boundary: that makes the
function safe on streamed text cut anywhere and keeps each insertion decided by the next few characters only
(textsplit.LOOKAHEAD_CHARS relies on that). Mentions of one named person (``<@U123>``, ``<@123>``) stay.
"""

from __future__ import annotations

import re

ZERO_WIDTH_SPACE = "\u200b"

# Slack special mentions: <!channel>, <!here>, <!everyone>, legacy <!group>, user groups <!subteam^ID|@name>
# (https://api.slack.com/reference/surfaces/formatting#special-mentions). Discord role mentions <@&ID>
# (https://discord.com/developers/docs/reference#message-formatting). The ZWSP goes right after "<".
_ANGLE_CROWD = re.compile(r"<(?=!(?:channel|here|everyone|group|subteam\^)|@&)", re.IGNORECASE)
# Bare words: Discord parses @everyone / @here anywhere in content; Slack turns @channel / @here / @everyone /
# @group into pings when a message is posted with link_names or parse=full. The ZWSP goes right after "@".
_WORD_CROWD = re.compile(r"@(?=(?:everyone|here|channel|group))", re.IGNORECASE)

MASS_MENTION = re.compile(
    r"<!(?:channel|here|everyone|group|subteam\^)|<@&|@(?:everyone|here|channel|group)", re.IGNORECASE
)
"""Matches any crowd-ping token; after defang_mass_mentions it matches nothing."""


def defang_mass_mentions(text: str) -> str:
    """Insert a zero-width space into every crowd-ping token. Idempotent; other text is returned unchanged."""
    if "<" not in text and "@" not in text:
        return text
    text = _ANGLE_CROWD.sub("<" + ZERO_WIDTH_SPACE, text)
    return _WORD_CROWD.sub("@" + ZERO_WIDTH_SPACE, text)


# Every crowd-ping token as it starts (lowercase); a text ending in a proper prefix of one may still become one.
_TOKEN_STARTS = (
    "@everyone",
    "@here",
    "@channel",
    "@group",
    "<!channel",
    "<!here",
    "<!everyone",
    "<!group",
    "<!subteam^",
    "<@&",
)
_LONGEST_TOKEN = max(len(t) for t in _TOKEN_STARTS)


def settled_length(text: str) -> int:
    """How much of ``text`` (still growing) defangs the same whatever comes next.

    A text ending in "@her" may become "@here", which gains a zero-width space after the "@": showing "@her" now
    and "@\u200bhere" later would rewrite text already on screen (and break append-only native streams). The
    returned length leaves out every such unfinished token at the end.
    """
    n = len(text)
    while n:
        for k in range(min(n, _LONGEST_TOKEN - 1), 0, -1):
            tail = text[n - k : n].lower()
            if any(len(tail) < len(t) and t.startswith(tail) for t in _TOKEN_STARTS):
                n -= k
                break
        else:
            return n
    return 0


def has_mass_mention(text: str) -> bool:
    return MASS_MENTION.search(text) is not None
