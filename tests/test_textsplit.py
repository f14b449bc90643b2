from __future__ import annotations

import itertools

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.safety import defang_mass_mentions
from bot.textsplit import (
    LOOKAHEAD_CHARS,
    StreamSplitter,
    is_grapheme_boundary,
    safe_prefix_len,
    split_message,
)
from tests.textgen import CLUSTERS, Marked, chunkings, marked_texts, texts

PROPERTY = settings(max_examples=150, deadline=None)


def cuts_of(parts: list[str]) -> list[int]:
    """Positions in the joined text where one part ends and the next begins."""
    return list(itertools.accumulate(len(p) for p in parts))[:-1]


def true_boundaries(text: str) -> set[int]:
    """Grapheme boundaries per the `regex` module's full UAX #29 implementation (the reference)."""
    ends = itertools.accumulate(len(g) for g in regex.findall(r"\X", text))
    return {0, *ends}


def longest_cluster(text: str) -> int:
    """Longest run between our own boundaries: when it fits the limit, every cut must be a boundary."""
    best, run_start = 0, 0
    for i in range(1, len(text) + 1):
        if is_grapheme_boundary(text, i):
            best, run_start = max(best, i - run_start), i
    return best


# ---- examples ---------------------------------------------------------------------------------------------------


def test_short_text_is_one_part_and_empty_text_none() -> None:
    assert split_message("hello", 10) == ["hello"]
    assert split_message("", 10) == []


def test_prefers_paragraph_then_line_then_sentence_then_word() -> None:
    para = "First paragraph here.\n\nSecond one continues for a while"
    assert split_message(para, 40)[0] == "First paragraph here.\n\n"
    lines = "line one is here\nline two is here and more words"
    assert split_message(lines, 30)[0] == "line one is here\n"
    sentences = "One sentence ends here. Then another goes on and on"
    assert split_message(sentences, 40)[0] == "One sentence ends here. "
    words = "alpha beta gamma delta epsilon zeta"
    assert split_message(words, 20) == ["alpha beta gamma ", "delta epsilon zeta"]


def test_weak_cut_wins_when_the_strong_one_would_leave_the_message_mostly_empty() -> None:
    text = "Hi.\n\n" + "word " * 30
    first = split_message(text, 80)[0]
    assert len(first) > 40 and first.endswith(" ")


def test_code_block_moves_whole_to_the_next_part() -> None:
    block = "```py\nx = 1\ny = 2\n```\n"
    text = "Some intro text here\n" + block + "after"
    parts = split_message(text, 40)
    assert parts[0] == "Some intro text here\n"
    assert parts[1].startswith(block)


def test_code_block_too_big_for_one_part_is_cut_at_a_line_break() -> None:
    block = "```\n" + "".join(f"line {i} = value {i}\n" for i in range(20)) + "```\n"
    parts = split_message(block, 60)
    assert "".join(parts) == block
    assert all(p.endswith("\n") for p in parts)
    assert all(len(p) <= 60 for p in parts)


@pytest.mark.parametrize(
    "token",
    [
        "[the docs](https://example.com/docs/install)",
        "<https://example.com/a|the install guide>",
        "<!subteam^S123|@oncall>",
        "`pip install supportbot`",
        "https://example.com/a/very/long/path?with=query",
    ],
)
def test_markup_tokens_are_not_cut(token: str) -> None:
    text = "see " + token + " then more words follow here"
    for limit in range(len(token) + 1, len(text)):
        parts = split_message(text, limit)
        assert "".join(parts) == text
        assert any(token in p for p in parts), (limit, parts)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_grapheme_clusters_are_not_cut(cluster: str) -> None:
    text = cluster * 12
    for limit in range(len(cluster), 3 * len(cluster) + 2):
        parts = split_message(text, limit)
        assert "".join(parts) == text
        assert all(len(p) % len(cluster) == 0 for p in parts), (limit, parts)


# Each is one user-perceived character; neighbours in ASCII exercise the scan that starts near the position asked.
KINDS_OF_CLUSTER = {
    "emoji ZWJ family": "👩\u200d👩\u200d👧\u200d👦",
    "emoji ZWJ rainbow flag": "🏳\ufe0f\u200d🌈",
    "emoji ZWJ with skin tone": "🧑🏽\u200d💻",
    "flag": "🇰🇷",
    "subdivision flag": "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "keycap": "#\ufe0f\u20e3",
    "Hangul jamo LVT": "\u1112\u1161\u11ab",
    "Hangul jamo LLV": "\u1100\u1100\u1161",
    "Hangul syllable LV + T": "\uac00\u11a8",
    "combining marks": "e\u0301\u0323",
    "enclosing mark": "a\u20dd",
    "Devanagari conjunct": "क्ष",
    "Devanagari conjunct of three": "स्त्र",
    "Devanagari conjunct with ZWJ": "क्\u200dष",
    "Bengali conjunct": "ক্ষ",
    "Thai SARA AM": "กำ",
    "CR LF": "\r\n",
}


@pytest.mark.parametrize("cluster", KINDS_OF_CLUSTER.values(), ids=KINDS_OF_CLUSTER.keys())
def test_grapheme_boundaries_fall_only_between_clusters(cluster: str) -> None:
    text = "ab" + cluster + cluster + "c"
    n = len(cluster)
    expected = [0, 1, 2, 2 + n, 2 + 2 * n, 3 + 2 * n]
    assert [i for i in range(len(text) + 1) if is_grapheme_boundary(text, i)] == expected
    assert safe_prefix_len(text, 2 + 2 * n - 1) == 2 + n
    assert all(len(p) % n == 0 for p in split_message(cluster * 9, 2 * n + 1)), cluster


def test_an_odd_run_of_regional_indicators_pairs_from_the_left() -> None:
    text = "x🇰🇷🇯🇵🇺"  # two flags, then a lone indicator
    assert [i for i in range(len(text) + 1) if is_grapheme_boundary(text, i)] == [0, 1, 3, 5, 6]


def test_a_cluster_longer_than_the_limit_is_cut_anyway() -> None:
    text = "a" + "\u0301" * 30
    parts = split_message(text, 10)
    assert "".join(parts) == text and all(len(p) <= 10 for p in parts)


def test_safe_prefix_len_backs_off_to_a_boundary() -> None:
    assert safe_prefix_len("ab🇰🇷", 3) == 2
    assert safe_prefix_len("abc", 5) == 3


def test_streaming_freezes_only_with_lookahead_then_never_changes() -> None:
    splitter = StreamSplitter(limit=50)
    text = "word " * 20
    assert splitter.update(text) == []  # 100 chars: not LOOKAHEAD past the limit yet
    text += "more " * (LOOKAHEAD_CHARS // 5 + 2)
    frozen = splitter.update(text)
    assert frozen and frozen == split_message(text, 50)[: len(frozen)]
    splitter.update(text, final=True)
    assert splitter.parts == split_message(text, 50)


def test_rewind_resplits_with_a_smaller_limit() -> None:
    text = "alpha beta gamma delta " * 10
    splitter = StreamSplitter(limit=100)
    splitter.update(text, final=True)
    splitter.rewind(1, limit=40)
    splitter.update(text, final=True)
    assert "".join(splitter.parts) == text
    assert len(splitter.parts[0]) <= 100 and all(len(p) <= 40 for p in splitter.parts[1:])


# ---- properties -------------------------------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(st.characters(exclude_categories=("Cs", "Cn"))) | texts())
def test_boundaries_found_near_a_position_match_a_scan_of_the_whole_text(text: str) -> None:
    """is_grapheme_boundary scans from a nearby surely-known boundary, not from the start: it must agree."""
    real = true_boundaries(text)
    assert {i for i in range(len(text) + 1) if is_grapheme_boundary(text, i)} == real
    for limit in range(len(text) + 1):
        assert safe_prefix_len(text, limit) == max(b for b in real if b <= limit)


@PROPERTY
@given(marked=marked_texts(), limit=st.integers(1, 160))
def test_parts_join_fit_and_respect_markup_and_clusters(marked: Marked, limit: int) -> None:
    text = marked.text
    parts = split_message(text, limit)
    assert "".join(parts) == text
    assert all(0 < len(p) <= limit for p in parts)
    cuts = cuts_of(parts)
    if longest_cluster(text) <= limit:
        assert set(cuts) <= true_boundaries(text)
    for kind, start, end in marked.spans:
        inside = [c for c in cuts if start < c < end]
        if kind == "token" and end - start <= limit:
            assert not inside, (text[start:end], limit)
        if kind == "code" and end - start <= limit:
            assert not inside, (text[start:end], limit)
        if kind == "code" and all(len(line) + 1 <= limit for line in text[start:end].split("\n")):
            assert all(text[c - 1] == "\n" for c in inside), (text[start:end], limit)


@PROPERTY
@given(data=st.data(), text=texts(max_tokens=120), limit=st.integers(16, 200), defang=st.booleans())
def test_streamed_parts_never_change_and_match_the_whole_split(
    data: st.DataObject, text: str, limit: int, defang: bool
) -> None:
    view = defang_mass_mentions if defang else (lambda t: t)
    chunks = data.draw(chunkings(text))
    splitter = StreamSplitter(limit=limit)
    so_far = ""
    for chunk in chunks:
        so_far += chunk
        before = list(splitter.parts)
        splitter.update(view(so_far))
        assert splitter.parts[: len(before)] == before  # frozen parts never change
    splitter.update(view(text), final=True)
    assert splitter.parts == split_message(view(text), limit)
