"""What the team answered: for each collected question, the replies in its thread that look like its resolution.

The bot already keeps the message log of its channels, so the answers people gave are there: replies in the
question's thread from someone other than the asker (on Discord, a thread or a reply chain the adapter recorded as
the question's thread). Replies are ranked by what marks a resolution in a chat — the asker thanked its author
afterwards ("thanks", "that worked", ✅ written out; reactions are not in the log), it came from support staff (a
setting names them), it speaks to the asker — and kept within a token budget per question, so the longest threads
send only the replies that matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.stores.base import MessageLog
from bot.types import ChatMessage, Inquiry, MessageRef
from llm.tokens import count_tokens

# A question's replies sent to the writer: enough for the two or three replies that resolve a support question
# (a Ubuntu IRC answer is one or two lines; a Slack answer a paragraph), not the whole discussion.
TOKENS_PER_QUESTION = 240
EXCERPT_TOKENS = 110  # one reply's excerpt: a long reply is cut here, its start says what it is
MAX_REPLIES = 4
# Replies that answer nothing ("yes" and "no" do answer a yes/no question, so they stay).
_CHATTER = frozenset(
    "ok okay k kk np yw lol haha hi hello hey thanks thank you thx ty cool nice same +1 me too welcome hm hmm "
    "oh ah sorry".split()
)
_THANKS = re.compile(
    r"(\bthanks?\b|\bthank you\b|\bthx\b|\bty\b|\bcheers\b|\bthat (did it|worked|works|fixed it)\b|\bit works\b|"
    r"\bworks now\b|\bsolved\b|\bfixed\b|✅|:white_check_mark:|:heavy_check_mark:|감사|고마워|해결)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One reply that may resolve a question, as the writer sees it."""

    ref: MessageRef
    author: str
    author_name: str
    text: str  # an excerpt within EXCERPT_TOKENS
    thanked: bool
    staff: bool


def resolution(
    thread: list[ChatMessage], *, question_id: str, asker: str, staff: frozenset[str]
) -> list[Answer]:
    """The replies in ``thread`` (oldest first, the question itself included or not) that most likely resolve
    the question ``question_id`` asked by ``asker``, best first, within TOKENS_PER_QUESTION."""
    qid = question_id
    replies = [m for m in thread if m.ref.message_id != qid and not m.is_bot]
    thanked: set[str] = set()
    for i, m in enumerate(replies):
        if m.author != asker or not _THANKS.search(m.text):
            continue
        earlier = [r for r in replies[:i] if r.author != asker]
        named = [r for r in earlier if r.author_name and r.author_name.lower() in m.text.lower()]
        for r in (named or earlier)[-1:]:  # the one the asker names, else the reply just before the thanks
            thanked.add(r.ref.message_id)
    asker_names = {m.author_name.lower() for m in thread if m.author == asker and m.author_name}
    ranked: list[tuple[int, int, ChatMessage]] = []
    for order, m in enumerate(replies):
        if m.author == asker or _is_chatter(m.text):
            continue
        if m.text.rstrip(" )(:;-pPD").endswith("?") and m.ref.message_id not in thanked and m.author not in staff:
            continue  # a question back ("are you willing to file bug reports?") asks; it does not answer
        score = 4 * (m.ref.message_id in thanked) + 3 * (m.author in staff)
        score += 1 if any(name and name in m.text.lower() for name in asker_names) else 0
        ranked.append((-score, order, m))
    ranked.sort(key=lambda t: (t[0], t[1]))
    out: list[Answer] = []
    used = 0
    for _, _, m in ranked[:MAX_REPLIES]:
        text = excerpt(m.text, EXCERPT_TOKENS)
        cost = count_tokens(text) + 8
        if out and used + cost > TOKENS_PER_QUESTION:
            break
        used += cost
        out.append(
            Answer(m.ref, m.author, m.author_name, text, m.ref.message_id in thanked, m.author in staff)
        )
    return out


async def collect(
    log: MessageLog, inquiries: list[Inquiry], *, staff: frozenset[str]
) -> dict[str, list[Answer]]:
    """Answers per inquiry message id (inquiries without any are left out). Store reads only: no model call.

    A question asked inside someone else's thread is answered by the replies after it in that thread."""
    out: dict[str, list[Answer]] = {}
    roots: dict[str, list[ChatMessage]] = {}
    for inq in inquiries:
        thread = await log.thread(inq.channel, inq.message_id)
        me = next((m for m in thread if m.ref.message_id == inq.message_id), None)
        root = me.ref.thread_id if me is not None else None
        if me is not None and root and root != inq.message_id:
            if root not in roots:
                roots[root] = await log.thread(inq.channel, root)
            thread = [m for m in roots[root] if m.sent_at > me.sent_at]
        found = resolution(thread, question_id=inq.message_id, asker=inq.author, staff=staff)
        if found:
            out[inq.message_id] = found
    return out


def _is_chatter(text: str) -> bool:
    words = re.findall(r"[\w+']+", text.lower())
    return not words or all(w in _CHATTER for w in words)


def excerpt(text: str, max_tokens: int) -> str:
    text = " ".join(text.split())
    if count_tokens(text) <= max_tokens:
        return text
    # Cut by a character estimate, then trim until it fits (tokens per character differ by script).
    cut = text[: max_tokens * 3]
    while cut and count_tokens(cut) > max_tokens - 1:
        cut = cut[: int(len(cut) * 0.85)]
    return cut.rstrip() + "…"
