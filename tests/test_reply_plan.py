"""What each message of a live reply should show (bot/reply_plan.py), without a platform: the pump in
bot/live_reply.py edits messages towards these plans (tests/test_live_reply.py tests it end to end)."""

from __future__ import annotations

import pytest

from bot.reply_plan import EMPTY_REPLY, MIN_PART_CHARS, ReplyPlanner
from bot.safety import has_mass_mention

MARKER = " ▍"


def planner(limit: int = 40) -> ReplyPlanner:
    return ReplyPlanner(limit=limit, marker=MARKER, placeholder="…writing")


def test_a_status_line_takes_at_most_a_third_of_the_message() -> None:
    p = planner(limit=40)
    p.status = "sorted 340 of 1,000 questions"
    (only,) = p.plan("Hi", final=False)
    assert only.text.startswith("Hi" + MARKER) and len(only.text) - len("Hi" + MARKER) <= 40 // 3


def test_the_placeholder_stands_in_until_text_arrives() -> None:
    (only,) = planner().plan("", final=False)
    assert (only.text, only.body, only.done, only.visible_end) == ("…writing", "", False, 0)


def test_text_in_progress_carries_the_marker_and_the_status_line_below() -> None:
    p = planner(limit=200)
    p.status = "sorted 3 of 10"
    (only,) = p.plan("Hello there", final=False)
    assert only.text == "Hello there" + MARKER + "\n\nsorted 3 of 10"
    assert only.body == "Hello there" and only.visible_end == len("Hello there") and not only.done


def test_the_final_plan_has_no_marker_and_an_empty_reply_says_so() -> None:
    p = planner()
    p.status = "working"
    (only,) = p.plan("Done.", final=True)
    assert (only.text, only.done, only.body) == ("Done.", True, None)
    assert [m.text for m in planner().plan("", final=True)] == [EMPTY_REPLY]


def test_text_past_the_limit_freezes_a_finished_message_and_continues_in_the_next() -> None:
    # Long enough to reach textsplit's lookahead: only then is a streamed part decided.
    words = " ".join(f"word{i}" for i in range(80))
    wants = planner(limit=40).plan(words, final=False)
    assert len(wants) >= 2 and all(w.done for w in wants[:-1]) and not wants[-1].done
    assert all(len(w.text) <= 40 for w in wants)
    final = planner(limit=40).plan(words, final=True)
    assert "".join(w.text for w in final).split() == words.split()


def test_a_crowd_ping_never_reaches_the_plan() -> None:
    p = planner(limit=200)
    streaming = p.plan("Tell <!chan", final=False)  # the token may still become <!channel>: held back
    assert "<!chan" not in streaming[0].text
    final = p.plan("Tell <!channel> now", final=True)
    assert not has_mass_mention("".join(w.text for w in final))


def test_shrinking_stops_at_the_smallest_part() -> None:
    p = planner(limit=40)
    assert p.shrink(0, 40) and p.limit == 30
    p = planner(limit=MIN_PART_CHARS)
    assert not p.shrink(0, MIN_PART_CHARS) and p.limit == MIN_PART_CHARS


def test_a_limit_below_the_smallest_part_is_refused() -> None:
    with pytest.raises(ValueError):
        planner(limit=MIN_PART_CHARS - 1)
