"""Token counting for budgets and for estimating usage when a provider sent none.

tiktoken's o200k_base approximates every current model well enough for budgeting (Anthropic has no local
tokenizer: FACTS.md). tiktoken downloads its encodings on first use; when that fails (no network, no
TIKTOKEN_CACHE_DIR) we fall back to a script-aware estimate instead of failing the bot.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from typing import Any

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _encoding() -> Any | None:
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception as exc:  # network, missing cache, corrupt file: all mean "estimate instead"
        log.warning("tiktoken encoding unavailable (%s); counting tokens by estimate", type(exc).__name__)
        return None


def _is_wide(ch: str) -> bool:
    # CJK, Hangul and kana cost about one token or more per character, not one per four.
    return unicodedata.east_asian_width(ch) in ("W", "F") or "\uac00" <= ch <= "\ud7a3"


def estimate_tokens(text: str) -> int:
    """Script-aware, deliberately generous estimate: ~2.7 ASCII chars per token (chat text is full of short
    tokens: names, paths, punctuation), ~1.2 tokens per wide (CJK/Hangul) char, 1 per other character."""
    ascii_chars = wide = other = 0
    for ch in text:
        if ch.isascii():
            ascii_chars += 1
        elif _is_wide(ch):
            wide += 1
        else:
            other += 1
    return (ascii_chars * 10 + 26) // 27 + (wide * 6 + 4) // 5 + other


def count_tokens(text: str) -> int:
    if not text:
        return 0
    enc = _encoding()
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))
