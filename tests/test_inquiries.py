"""Which chat lines /faq collects as questions: real Ubuntu IRC lines (tests/fixtures/ubuntu-irc and the dev set),
chatter left out, questions and problem reports kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.inquiries import is_inquiry
from bot.types import ChannelRef, ChatMessage, MessageRef

CHANNEL = ChannelRef("slack", "T1", "C1")


def line(text: str, *, reply: bool = False) -> ChatMessage:
    ref = MessageRef(CHANNEL, "2", "1") if reply else MessageRef(CHANNEL, "1")
    return ChatMessage(ref, "U1", "someone", text, datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("hey jdub, how goes it", False),  # a greeting with a name
        ("Robbie_Crash, are you still around?", True),  # small talk that ends in "?"
        ("http://www.ubuntuforums.org/showthread.php?p=11009#post11009", False),  # a bare link
        ("dwightschrute: bad news:  http://ubuntuforums.org/showthread.php?t=1742263", True),
        ("bob2: i am going to /msg you now", False),  # a statement to someone
        ("great, I have about 10 packages in universe for hoary :)", False),  # a remark
        (
            "wow it is scary how much work they have done on hoary already and how fast updates and fixes are made",
            False,
        ),
        ("bob2, depends on how broken and yes", True),  # an answer that names the problem
        (
            "exon: if he can connect to the mail server with telnet then you security shouldnt be an issue",
            True,
        ),
        ("thanks a lot, that worked!", False),
        ("ok cool", False),
    ],
)
def test_chatter_is_not_collected(text: str, reply: bool) -> None:
    assert not is_inquiry(line(text, reply=reply))


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("can anyone recommend any app to create/open *.rar file?", False),
        ("hi, ok, how do i restard x/gdm?", True),
        ("Hi All! I took the plunge and installed Ubuntu. However, I need some help.", False),
        ("the gimp ScriptFU filters are broken in hoary", True),
        (
            'hey guys, I just installed Fluxbox, and I"m running it...all the fonts in my gnome apps look kinda gross now',
            False,
        ),
        ("bob2: how do i connect securely to this ftp?", False),
        (
            "I'm trying to add a static IP address to eth0, in addition to the dynamic address I already have.",
            False,
        ),
        ("is it possible (or desirable) to dist-upgrade to hoary?", False),
        ("Nafallo: so go back to 2.6.7?", True),  # a follow-up addressed to the helper still asks something
    ],
)
def test_questions_and_problem_reports_are_collected(text: str, reply: bool) -> None:
    assert is_inquiry(line(text, reply=reply))
