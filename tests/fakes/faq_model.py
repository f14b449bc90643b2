"""A fake model for /faq runs. It sorts questions by the dataset's own labels (or a labelling function) and writes
one entry per answered question from the replies it was shown, citing their labels — or, asked to, misbehaves the
way real models do: cites ids it was never shown, claims an answer with no source, files an entry under a category
it was not asked about. The FAQ benchmark measures cost, grounding and plumbing, not writing quality."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.llm_server import FakeReply, ReceivedRequest, Responder

_NUMBERED = re.compile(r"^(\d+)\. (.*)$")
_CATEGORY = re.compile(r"^Category: (.+?) — asked (\d+) times — write (\d+)")
_QUESTION = re.compile(r"^Q \((\d+)×\) (.*)$")
_REPLY = re.compile(r"^  \[(A\d+)\] [^:]*: (.*)$")
_SHOWN = re.compile(r"^  \[(A\d+)\] \(shown above\)$")  # a reply the call showed earlier
_CURRENT = re.compile(r"^- \[(E\d+)\] Q: (.*) \| A: (.*) \| sources: (.*)$")
MADE_UP = "A999"  # a label no call ever shows (calls show far fewer replies)
BAD = frozenset({"made_up_ids", "no_sources", "unasked_category"})


def label_of(truth: dict[str, str], text: str) -> str:
    return truth.get(text, "other").replace("_", " ").title()


@dataclass
class _Section:
    category: str
    count: int
    entries: int
    current: list[dict[str, Any]] = field(default_factory=list)
    questions: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (text, [(label, reply)])


def parse_sections(text: str) -> list[_Section]:
    sections: list[_Section] = []
    seen: dict[str, str] = {}
    for line in text.splitlines():
        if m := _CATEGORY.match(line):
            sections.append(_Section(m.group(1), int(m.group(2)), int(m.group(3))))
        elif not sections:
            continue
        elif m := _CURRENT.match(line):
            labels = re.findall(r"A\d+", m.group(4))
            sections[-1].current.append({"label": m.group(1), "question": m.group(2), "sources": labels})
        elif m := _QUESTION.match(line):
            sections[-1].questions.append((m.group(2), []))
        elif (m := _SHOWN.match(line)) and sections[-1].questions and m.group(1) in seen:
            sections[-1].questions[-1][1].append((m.group(1), seen[m.group(1)]))
        elif (m := _REPLY.match(line)) and sections[-1].questions:
            seen[m.group(1)] = m.group(2)
            sections[-1].questions[-1][1].append((m.group(1), m.group(2)))
    return sections


def write_entries(text: str, *, bad: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for s in parse_sections(text):
        # Fresh: one entry per answered question, up to the number asked for. Update: only what changes — a new
        # entry while there is room, else one that replaces the last current entry with the new answer.
        mine: list[dict[str, Any]] = []
        room = s.entries - len(s.current)
        for q, replies in s.questions:
            if not replies:  # nothing to write an answer from
                continue
            replaces = ""
            if len(mine) >= room:
                if not s.current or len(mine) >= room + 1:
                    break
                replaces = s.current[-1]["label"]
            mine.append(
                {
                    "category": s.category,
                    "question": q,
                    "answer": replies[0][1],
                    "sources": [label for label, _ in replies],
                    "replaces": replaces,
                }
            )
        if not mine:
            continue
        if "made_up_ids" in bad:
            for e in mine:
                e["sources"] = [*e["sources"], MADE_UP]
            mine.append(
                {**mine[0], "question": "A question answered by a made-up message", "sources": [MADE_UP], "replaces": ""}
            )
        if "no_sources" in bad:
            mine.append(
                {**mine[0], "question": "A question answered without any source", "sources": [], "replaces": ""}
            )
        if "unasked_category" in bad:
            mine.append({**mine[0], "category": "Nobody Asked This", "replaces": ""})
        entries.extend(mine)
    return entries


def faq_responder(
    truth: dict[str, str] | None = None,
    *,
    label: Callable[[str], str] | None = None,
    bad: frozenset[str] = frozenset(),
) -> Responder:
    """``truth`` maps question text (as sent, first 500 characters) to its dataset label; ``label`` labels text
    without one. ``bad`` names the misbehaviours to show when writing (see BAD)."""
    assert bad <= BAD, bad
    known = truth or {}

    def name(text: str) -> str:
        if text in known or label is None:
            return label_of(known, text)
        return label(text)

    def respond(req: ReceivedRequest) -> FakeReply:
        if req.schema_name == "sorting":
            groups: dict[str, list[int]] = {}
            for line in req.user_text.splitlines():
                m = _NUMBERED.match(line)
                if m:
                    groups.setdefault(name(m.group(2)), []).append(int(m.group(1)))
            body = [{"category": c, "priority": "medium", "questions": ns} for c, ns in groups.items()]
            return FakeReply(json.dumps({"groups": body}))
        if req.schema_name == "placing":  # a refresh's few questions, one label each
            known = set(re.findall(r"^Labels in use: (.*)$", req.user_text, re.MULTILINE)[0].split(", "))
            labels = []
            for line in req.user_text.splitlines():
                if m := _NUMBERED.match(line):
                    label = name(m.group(2))
                    labels.append(label if label in known else f"{label} (medium)")
            return FakeReply(json.dumps({"labels": labels}))
        if req.schema_name == "entries":
            return FakeReply(json.dumps({"entries": write_entries(req.user_text, bad=bad)}))
        return FakeReply("Summary.")

    return respond
