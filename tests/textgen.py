"""Hypothesis strategies for hostile chat text, shared by the textsplit, safety and live-reply tests.

``marked_texts()`` draws a text together with the spans that must never be cut: links, Slack links, mentions,
inline code and URLs (kind "token") and fenced code blocks (kind "code").
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import strategies as st

# Grapheme clusters that are easy to break: combining marks, ZWJ emoji, flags, tag flags, keycaps, skin tones,
# Hangul syllables and conjoining jamo, Devanagari conjuncts (with nukta), Thai SARA AM, CRLF.
CLUSTERS = [
    "e\u0301",
    "a\u0308\u0323",
    "👩\u200d👩\u200d👧\u200d👦",
    "🧑🏽\u200d💻",
    "👍🏽",
    "🇰🇷",
    "🇯🇵",
    "🇺🇸",
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "1\ufe0f\u20e3",
    "❤\ufe0f",
    "\u1112\u1161\u11ab",
    "\u1100\u1161\u11a8",
    "क्ष",
    "क़्क",
    "กำ",
    "\r\n",
]
# Right-to-left and zero-width text, Korean, and a few plain words.
WORDS = [
    "hello",
    "world",
    "deploy",
    "안녕하세요",
    "مرحبا",
    "שלום",
    "zero\u200bwidth",
    "\u200c",
    "\ufeff",
    "x",
]
_PLAIN_ALPHABET = st.characters(
    exclude_categories=("Cs", "Cn"),  # Cn: unknown to this Python's unicodedata, so no grapheme data for it
    exclude_characters="`<>[]()*_~|!:\n\r▍",  # markup is drawn as whole tokens below, the marker never appears
)
_CODE_ALPHABET = st.sampled_from(list("abcdefxyz0123456789 =+-.,()"))
_SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", ". ", "! ", "? ", "。", ", ", "\n\n\n", " \n"]


@dataclass(frozen=True)
class Marked:
    text: str
    spans: list[tuple[str, int, int]]  # (kind, start, end): no cut may fall strictly between start and end


@st.composite
def _token(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, text); kind "" means free text."""
    kind = draw(
        st.sampled_from(
            [
                "word",
                "word",
                "word",
                "cluster",
                "plain",
                "long",
                "sep",
                "sep",
                "sep",
                "link",
                "slack",
                "mention",
                "code_span",
                "url",
                "bold",
                "block",
                "mass",
            ]
        )
    )
    word = st.lists(st.sampled_from(list("abcdefghij") + WORDS), min_size=1, max_size=4).map("".join)
    if kind == "word":
        return "", draw(word)
    if kind == "cluster":
        return "", "".join(draw(st.lists(st.sampled_from(CLUSTERS), min_size=1, max_size=4)))
    if kind == "plain":
        return "", draw(st.text(_PLAIN_ALPHABET, min_size=1, max_size=12))
    if kind == "long":
        return "", draw(st.sampled_from(["a", "한", "e\u0301", "🇰🇷"])) * draw(st.integers(20, 120))
    if kind == "sep":
        return "", draw(st.sampled_from(_SEPARATORS))
    if kind == "link":
        return "token", f"[{draw(word)} {draw(word)}](https://example.com/{draw(word)})"
    if kind == "slack":
        return "token", f"<https://example.com/{draw(word)}|{draw(word)} {draw(word)}>"
    if kind == "mention":
        return "token", draw(
            st.sampled_from(["<@U123ABC>", "<!here>", "<@&4242>", "<#C123|general>", "<@42>"])
        )
    if kind == "code_span":
        return "token", f"`{draw(word)} = {draw(word)}`"
    if kind == "url":
        return "token", f"https://example.com/{draw(word)}/{draw(word)}?q=1"
    if kind == "bold":
        return "", f"**{draw(word)} {draw(word)}**"
    if kind == "mass":
        return "", draw(
            st.sampled_from(["@everyone", "@here", "@channel", "<!channel>", "<!subteam^S1|@team>"])
        )
    lines = draw(st.lists(st.text(_CODE_ALPHABET, max_size=30), min_size=0, max_size=8))
    return "code", "```py\n" + "".join(line + "\n" for line in lines) + "```\n"


@st.composite
def marked_texts(draw: st.DrawFn, *, max_tokens: int = 60) -> Marked:
    tokens = draw(st.lists(_token(), max_size=max_tokens))
    text = ""
    spans: list[tuple[str, int, int]] = []
    for kind, piece in tokens:
        if kind == "code":
            text += "\n"  # a fence opens at the start of a line
        elif kind == "token":
            text += " "  # protected tokens stand apart, so a clean cut exists right before them
        start = len(text)
        text += piece
        if kind:
            spans.append((kind, start, len(text)))
            if kind == "token":
                text += " "
    return Marked(text, spans)


def texts(*, max_tokens: int = 60) -> st.SearchStrategy[str]:
    return marked_texts(max_tokens=max_tokens).map(lambda m: m.text)


def _cut_at(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def chunkings(text: str) -> st.SearchStrategy[list[str]]:
    """Ways to cut ``text`` into stream chunks anywhere, including inside grapheme clusters."""
    if len(text) < 2:
        return st.just([text] if text else [])
    cuts = st.lists(st.integers(1, len(text) - 1), max_size=min(40, len(text)))
    return cuts.map(lambda cs: _cut_at(text, cs))
