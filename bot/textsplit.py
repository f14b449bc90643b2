"""Cut long text into platform-sized messages without breaking what a reader sees.

Invariants (property-tested in tests/test_textsplit.py):

* ``"".join(parts) == text`` exactly: separators stay at the end of the part they follow, nothing is stripped.
* every part has ``len(part) <= limit``.
* cuts land, in order of preference, after a paragraph break, a line break, a sentence end or a word boundary,
  and never inside a fenced code block, an inline code span, a markdown link ``[t](u)``, an angle-bracket token
  (Slack ``<url|text>``, ``<@U1>``, ``<!here>``, Discord ``<@&1>``, ``<:emoji:1>``), a bare URL, or a grapheme
  cluster; a bold/italic run is avoided when another cut is available.

Code blocks: a part never closes and reopens a fence, because the parts must join back to the exact text. A code
block that begins mid-part is moved whole to the next part; only a block that alone does not fit in one message
(it starts the part, or continues from the previous one) is cut, at a line break inside it. The second message then
starts inside the block without its opening fence: rendering that well (re-opening the fence) is the adapter's job.

When no good cut fits, the text is cut at the last grapheme boundary that is outside protected spans, then at the
last grapheme boundary at all; only a single grapheme cluster longer than the limit is cut inside itself.

Streaming: :class:`StreamSplitter` freezes parts as text grows. A part is decided only once the text reaches
a line break past its limit, or ``LOOKAHEAD_CHARS`` past it; every protected span we recognise is either shorter
than that and within one line, or runs to the end of the known text (an unclosed fence, a URL still arriving), so
later text can no longer change the decision: the parts frozen from a prefix are always the first parts of
``split_message`` of the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import regex

# Bounded spans (inline code, links, angle tokens, emphasis) are recognised only up to about this many characters.
MAX_SPAN_CHARS = 240
# How far past a part's limit the text must reach before the part is frozen while streaming. Must exceed
# MAX_SPAN_CHARS plus the few characters of context safety.defang_mass_mentions looks at.
LOOKAHEAD_CHARS = 300
# The last characters of streamed text may still change when more arrives (safety.defang_mass_mentions looks at
# most ~10 characters ahead); nothing in them counts as settled.
SETTLE_CHARS = 16
# A preferred kind of cut (paragraph, line, ...) is taken only if it fills at least this share of the limit;
# otherwise a weaker cut later in the text wins, so messages are not left half empty.
MIN_FILL = 0.5

_SENTENCE_END = frozenset(".!?。！？…")
_SENTENCE_CLOSERS = frozenset("\"')]}»”’")

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*$", re.MULTILINE)
_INNER = str(MAX_SPAN_CHARS - 4)  # keeps every bounded match, delimiters included, within MAX_SPAN_CHARS
_HARD_SPANS = re.compile(
    r"`[^`\n]{1,"
    + _INNER
    + r"}`"  # inline code
    + r"|!?\[[^\]\n]{0,80}\]\([^)\s]{1,150}\)"  # markdown link / image (80 + 150 + 5 <= MAX_SPAN_CHARS)
    + r"|<[^<>\n]{1,"
    + _INNER
    + r"}>"  # Slack link, mention, Discord token
)
# A URL runs to the next whitespace: unbounded, so while streaming it simply extends to the end of known text.
_URL = re.compile(r"(?:https?|ftp|mailto):[^\s<>]+|www\.[^\s<>]+", re.IGNORECASE)
# Bold / italic / strikethrough within one line (to avoid, not forbidden).
_SOFT_SPANS = re.compile(r"(\*\*|__|\*|_|~~|~)(?=\S)[^\n]{1," + _INNER + r"}?(?<=\S)\1")

# Extended grapheme clusters as Unicode defines them (UAX #29), from the `regex` module: what a reader sees as one
# character (an emoji ZWJ sequence, a flag, a Hangul syllable from jamo, a letter with its marks, an Indic conjunct).
_GRAPHEME = regex.compile(r"\X")


# Positions that are grapheme boundaries whatever comes before them, so ``\\X`` can run from the nearest one rather
# than from the start of the text: after a line feed (UAX #29 GB4; one the search can see past), and before a character that no rule joins to
# what precedes it (Grapheme_Cluster_Break=Other, except conjunct consonants (GB9c) and pictographs (GB11)) unless
# that is a Prepend character (GB9b). Searched backwards ((?r)) from the position asked.
_SURE_BOUNDARY = regex.compile(
    r"(?rV1s)(?<=\n)(?=.)|(?<!\p{Grapheme_Cluster_Break=Prepend})"
    r"(?=[\p{Grapheme_Cluster_Break=Other}--\p{Indic_Conjunct_Break=Consonant}--\p{Extended_Pictographic}])"
)


def _scan_start(text: str, i: int) -> int:
    """The nearest position <= ``i`` (< ``len(text)``) that is surely a grapheme boundary."""
    sure = _SURE_BOUNDARY.search(text, 0, i + 1)
    return sure.start() if sure else 0


def _boundaries(text: str, start: int, stop: int) -> set[int]:
    """The grapheme boundaries ``p`` with ``start < p <= stop`` (``stop`` < ``len(text)``)."""
    found: set[int] = set()
    for m in _GRAPHEME.finditer(text, _scan_start(text, start)):
        end = m.end()
        if end > stop:
            break
        if end > start:
            found.add(end)
    return found


def is_grapheme_boundary(text: str, i: int) -> bool:
    """Whether cutting ``text`` at index ``i`` keeps every grapheme cluster whole."""
    if i <= 0 or i >= len(text):
        return True
    end = _scan_start(text, i)
    while end < i:
        end = _GRAPHEME.match(text, end).end()
    return end == i


def safe_prefix_len(text: str, limit: int) -> int:
    """The longest prefix length <= ``limit`` that ends on a grapheme boundary (0 if none but a cut inside)."""
    if len(text) <= limit:
        return len(text)
    best = _scan_start(text, limit)
    for m in _GRAPHEME.finditer(text, best):
        if m.end() > limit:
            break
        best = m.end()
    return best


def _fence_blocks(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks as (start of opening line, end after closing line); unclosed runs to the end."""
    blocks: list[tuple[int, int]] = []
    opener: tuple[int, str] | None = None
    for m in _FENCE_OPEN.finditer(text):
        fence = m.group(1)
        if opener is None:
            opener = (m.start(), fence)
        elif (
            fence[0] == opener[1][0]
            and len(fence) >= len(opener[1])
            and _FENCE_CLOSE.match(text, m.start())  # a closing fence carries no info string
        ):
            line_end = text.find("\n", m.end())
            end = len(text) if line_end < 0 else line_end + 1
            blocks.append((opener[0], end))
            opener = None
    if opener is not None:
        blocks.append((opener[0], len(text)))
    return blocks


def _spans(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    for m in pattern.finditer(text):
        yield m.start(), m.end()


class _Layout:
    """Protected spans of one text, computed once and queried per part."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.blocks = _fence_blocks(text)
        self.hard = sorted([*_spans(_HARD_SPANS, text), *_spans(_URL, text)])
        self.soft = list(_spans(_SOFT_SPANS, text))

    def _mark(self, spans: list[tuple[int, int]], start: int, stop: int) -> list[bool]:
        inside = [False] * (stop - start + 1)
        for s, e in spans:
            if e <= start or s >= stop:
                continue
            for p in range(max(s + 1, start), min(e, stop + 1)):
                inside[p - start] = True
        return inside

    def cut(self, start: int, limit: int) -> int:
        """End index of the part that starts at ``start``; the text beyond must be longer than ``limit``."""
        text = self.text
        stop = start + limit
        hard = self._mark(self.hard, start, stop)
        soft = self._mark(self.soft, start, stop)
        # A block that starts mid-part or fits whole in this part is never cut (it moves on whole); one that starts
        # the part (or continues from the previous one) and does not fit is cut at a line break inside it.
        code_forbidden = self._mark([b for b in self.blocks if b[0] > start or b[1] <= stop], start, stop)
        code_lines_only = self._mark([b for b in self.blocks if b[0] <= start < stop < b[1]], start, stop)
        graphemes = _boundaries(text, start, stop)

        # best[kind] = largest acceptable position of that kind; kinds: 0 paragraph, 1 line, 2 sentence, 3 word.
        best_soft: list[int] = [0, 0, 0, 0]
        best_any: list[int] = [0, 0, 0, 0]
        fallback_clean = 0
        fallback_any = 0
        for p in range(stop, start, -1):
            k = p - start
            if p not in graphemes:
                continue
            if fallback_any == 0:
                fallback_any = p
            if hard[k] or code_forbidden[k]:
                continue
            if fallback_clean == 0:
                fallback_clean = p
            kind = (1 if text[p - 1] == "\n" else None) if code_lines_only[k] else _cut_kind(text, p)
            if kind is None:
                continue
            if best_any[kind] == 0:
                best_any[kind] = p
            if not soft[k] and best_soft[kind] == 0:
                best_soft[kind] = p
        floor = start + MIN_FILL * limit
        for best in (best_soft, best_any):
            for p in best:
                if p and p >= floor:
                    return p
        for best in (best_soft, best_any):
            if max(best):
                return max(best)
        return fallback_clean or fallback_any or stop


def _cut_kind(text: str, p: int) -> int | None:
    """0 paragraph break, 1 line break, 2 sentence end, 3 word boundary, None otherwise (cut lies before p)."""
    prev = text[p - 1]
    nxt = text[p] if p < len(text) else ""
    if prev == "\n":
        if nxt == "\n":
            return None  # cut after the whole run of blank lines
        return 0 if p >= 2 and text[p - 2] == "\n" else 1
    if not prev.isspace() or nxt.isspace() or prev == "\r":
        return None
    j = p - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    while j >= 0 and text[j] in _SENTENCE_CLOSERS:
        j -= 1
    return 2 if j >= 0 and text[j] in _SENTENCE_END else 3


class StreamSplitter:
    """Splits text that keeps growing into parts that, once frozen, never change.

    ``update(text)`` takes the whole text so far (each call a prefix of the next) and returns the parts it froze;
    ``update(text, final=True)`` freezes the rest too. ``rewind(keep, limit=...)`` forgets parts from index ``keep``
    on and continues with a new limit (used when the platform refuses a message as too long).
    """

    def __init__(self, *, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.parts: list[str] = []
        self.offset = 0  # where the open tail starts

    def update(self, text: str, *, final: bool = False) -> list[str]:
        new: list[str] = []
        layout: _Layout | None = None
        while True:
            remaining = len(text) - self.offset
            if remaining <= 0:
                break
            if remaining <= self.limit and final:
                end = len(text)
            elif remaining > self.limit and (final or self._settled(text)):
                layout = layout or _Layout(text)
                end = layout.cut(self.offset, self.limit)
            else:
                break
            new.append(text[self.offset : end])
            self.offset = end
        self.parts.extend(new)
        return new

    def _settled(self, text: str) -> bool:
        """Whether later text can no longer change the cut of the open part.

        Every bounded span ends before a line break, so a settled line break past the part's limit decides it as
        surely as LOOKAHEAD_CHARS of text does (fenced blocks are decided by their opening line either way).
        """
        stop = self.offset + self.limit
        return len(text) - stop > LOOKAHEAD_CHARS or text.find("\n", stop, len(text) - SETTLE_CHARS) >= 0

    def tail(self, text: str) -> str:
        return text[self.offset :]

    def rewind(self, keep: int, *, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        dropped = self.parts[keep:]
        self.parts = self.parts[:keep]
        self.offset -= sum(len(p) for p in dropped)
        self.limit = limit


def split_message(text: str, limit: int) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters that join back to exactly ``text``.

    Empty text gives no parts.
    """
    return StreamSplitter(limit=limit).update(text, final=True)
