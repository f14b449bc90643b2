"""Which chat messages are inquiries (questions and requests for help), and which ones are near-duplicates."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from bot.types import ChatMessage, Inquiry

MIN_CHARS = 8  # "thanks!" and "ok?" are not inquiries
MIN_WORDS = 3

_QUESTION_START = re.compile(
    r"^\s*(how|what|why|when|where|who|which|can|could|would|will|should|is|are|am|does|do|did|has|have|"
    r"anyone|any idea|any way|is there|help|please|pls|i need|we need|i can't|i cannot|i'm unable|unable|"
    r"why does|is it possible)\b",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"\b(not working|doesn't work|does not work|won't|can't|cannot|unable to|error|failed|fails|broken|"
    r"stuck|help me|how do i|how can i|how to|is there a way|request|issue|problem)\b",
    re.IGNORECASE,
)
# Korean and Japanese questions often end without "?" in ~까, ~나요, ~죠, ~요 / か.
_CJK_QUESTION = re.compile(r"(까|나요|죠|가요|까요|ㅠ|か)\s*[.!…~]*\s*$")
_WORD = re.compile(r"\w+", re.UNICODE)
# Who a chat line is addressed to: IRC's "nick: …" / "nick, …", Slack's "<@U123> …", Discord's "<@123> …".
# "hi, …", "ok, …" and "well, …" open a sentence: they name nobody.
_ADDRESSEE = re.compile(
    r"^\s*(<@!?[\w.-]+>|(?!(hi|hey|hello|howdy|ok|okay|yes|yeah|yea|no|nope|well|so|and|but|also|btw|ah|oh|um+|hm+|"
    r"sorry|thanks|great|wow|cool|nice|now|then|edit|update|note|ps)\W)[\w`|^\[\]{}.-]{2,32}[:,>»])\s+",
    re.IGNORECASE,
)
_LINK = re.compile(r"<?https?://\S+|\bwww\.\S+", re.IGNORECASE)
# Small talk that ends in "?" but asks nothing a FAQ could answer ("hey jdub, how goes it", "you still around?").
_SMALL_TALK = re.compile(
    r"^((hi|hey|hello|howdy|yo|hiya|morning|evening)( all| guys| everyone| folks)?(\s+[\w`|^-]{2,32})?)?\W*"
    r"(how (are|r) (you|u|ya|things)|how goes it|how's it going|hows it going|what's up|whats up|wassup|sup|"
    r"(are )?(you|u) (still )?(there|around|here|awake)|(is )?any ?(one|body) (here|around|awake|alive|there))?"
    r"\W*$",
    re.IGNORECASE,
)
# A remark that opens with an interjection and neither asks nor reports a problem ("great, I have 10 packages in
# universe :)", "wow it is scary how fast fixes are made") is conversation, not a request.
_REMARK = re.compile(
    r"^(great|wow|cool|nice|lol|haha|heh|yeah|yea|ok|okay|oh|ah+|hmm+|well|btw)\b", re.IGNORECASE
)
_ACK = frozenset(
    "thanks thank you thx ty ok okay cool great nice got it that worked works work now solved fixed lol haha np no "
    "problem yes yep nope sure bye hi hello hey good morning night awesome perfect will do try lgtm all the same "
    "too me as well so very much a lot welcome sounds makes sense understood see".split()
)
_STOP = frozenset(
    "a an the i me my we our you your to of in on for and or is are am be it this that with do does did can "
    "could would should will how what why when where who which please pls any anyone there have has hi hello hey "
    "just so but if at by from about as not no yes get got".split()
)


def is_inquiry(message: ChatMessage, *, bot_mentioned: bool = False) -> bool:
    """In a support channel a top-level message is a request unless it is chit-chat ("thanks!", "ok cool"); a
    reply inside a thread is discussion unless it asks something itself."""
    text = message.text.strip()
    if message.is_bot or bot_mentioned or len(text) < MIN_CHARS:
        return False
    # What is said, without whom it is said to and the links it carries: a bare link, a greeting or a "thanks"
    # addressed to someone asks nothing.
    addressed = _ADDRESSEE.match(text)
    said = _LINK.sub(" ", text[addressed.end() :] if addressed else text).strip()
    words = _WORD.findall(said.lower())
    if len(words) < 2 or all(w in _ACK for w in words) or _SMALL_TALK.match(said):
        return False
    ref = message.ref
    in_thread = bool(ref.thread_id and ref.thread_id != ref.message_id)
    if "?" in said or "？" in said or _QUESTION_START.search(said) or _CJK_QUESTION.search(said):
        return True
    if in_thread:
        # A reply addressed to someone that asks nothing is a helper's answer, even when it names the problem
        # ("exon: if he can connect … then security shouldn't be an issue").
        return not addressed and bool(_REQUEST.search(said))
    if addressed or _REMARK.match(said):  # a statement to someone, or a remark: a request only if it says one
        return bool(_REQUEST.search(said))
    return len(words) >= MIN_WORDS


def group_key(text: str) -> str:
    """Same key for questions that differ only in case, punctuation, word order, filler words or numbers."""
    norm = unicodedata.normalize("NFKC", text).lower()
    words = sorted({w for w in _WORD.findall(norm) if w not in _STOP and not w.isdigit()})
    return hashlib.sha1(" ".join(words).encode()).hexdigest()[:16]


def to_inquiry(message: ChatMessage, *, link: str = "") -> Inquiry:
    return Inquiry(
        channel=message.ref.channel,
        message_id=message.ref.message_id,
        author=message.author,
        text=message.text,
        asked_at=message.sent_at,
        link=link,
        group=group_key(message.text),
    )
