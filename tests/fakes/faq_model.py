"""A fake model for /faq runs: it sorts questions by the dataset's own labels (the issue allows this: the FAQ
benchmark measures cost and plumbing, not writing quality) and writes exactly the entries it is asked for."""

from __future__ import annotations

import json
import re

from tests.fakes.llm_server import FakeReply, ReceivedRequest, Responder

_NUMBERED = re.compile(r"^(\d+)\. (.*)$")
_CATEGORY = re.compile(r"Category: (.+?) — asked (\d+) times — write (\d+)")
# Realistic entry length: a question and a 2–3 sentence answer (~60 tokens of answer).
ANSWER = (
    "Open the app and go to the card or account settings to check the current status. If it still looks wrong, "
    "contact support from the Help section with the date and amount so an agent can look into it."
)


def label_of(truth: dict[str, str], text: str) -> str:
    return truth.get(text, "other").replace("_", " ").title()


def faq_responder(truth: dict[str, str]) -> Responder:
    """``truth`` maps question text (as sent, first 500 characters) to its dataset label."""

    def respond(req: ReceivedRequest) -> FakeReply:
        if req.schema_name == "sorting":
            groups: dict[str, list[int]] = {}
            for line in req.user_text.splitlines():
                m = _NUMBERED.match(line)
                if m:
                    groups.setdefault(label_of(truth, m.group(2)), []).append(int(m.group(1)))
            body = [{"category": c, "priority": "medium", "questions": ns} for c, ns in groups.items()]
            return FakeReply(json.dumps({"groups": body}))
        if req.schema_name == "entries":
            entries = [
                {
                    "category": m.group(1),
                    "question": f"How do I handle {m.group(1).lower()} (case {k + 1})?",
                    "answer": ANSWER,
                    "priority": "high",
                    "covers": max(1, int(m.group(2)) // max(1, int(m.group(3)))),
                }
                for m in _CATEGORY.finditer(req.user_text)
                for k in range(int(m.group(3)))
            ]
            return FakeReply(json.dumps({"entries": entries}))
        return FakeReply("Summary.")

    return respond
