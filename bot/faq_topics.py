"""What one FAQ run knows about each topic — its questions, most asked first, with the replies that answered
them — and how a topic is shown to the writer: the replies under short labels ([A1] …) that are the only ids an
entry may cite, the current entries ([E1] …) a refresh may replace."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.faq_answers import Answer
from bot.faq_doc import OPEN_EXAMPLES, Faq, FaqState, OpenTopic, Source
from bot.types import Inquiry, MessageRef
from llm.tokens import count_tokens

QUESTIONS_PER_ENTRY = 4  # most-asked answered questions (with their replies) shown per entry asked for


@dataclass
class Question:
    group: str
    text: str
    count: int
    answers: list[Answer]
    asked_at: datetime

    @property
    def rank(self) -> tuple[int, int, datetime]:
        best = max((4 * a.thanked + 3 * a.staff for a in self.answers), default=0)
        return (-self.count, -best, self.asked_at)


@dataclass
class Category:
    name: str
    priority: str
    questions: list[Question] = field(default_factory=list)  # most asked first

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def count(self) -> int:
        return sum(q.count for q in self.questions)

    @property
    def answered(self) -> list[Question]:
        return [q for q in self.questions if q.answers]

    def shown(self, entries: int) -> list[Question]:
        """The answered questions the writer sees for ``entries`` entries: the most asked (ties: the best
        answered, then the longest known), so a refresh that adds a one-off question leaves them as they were."""
        return self.answered[: QUESTIONS_PER_ENTRY * entries]


def fingerprint(questions: list[Question]) -> dict[str, list[str]]:
    return {q.group: sorted(a.ref.message_id for a in q.answers) for q in questions}


def categories_of(
    groups: dict[str, list[Inquiry]], answers: dict[str, list[Answer]], state: FaqState
) -> list[Category]:
    by_key: dict[str, Category] = {}
    for key, group in groups.items():
        name, priority = state.labels.get(key, ("Other", "low"))
        cat = by_key.setdefault(name.lower(), Category(name, priority))
        found: dict[str, Answer] = {}
        for inq in group:  # a near-duplicate's answers count for the whole group
            for a in answers.get(inq.message_id, []):
                found.setdefault(a.ref.message_id, a)
        best = sorted(found.values(), key=lambda a: -(4 * a.thanked + 3 * a.staff))
        first = min(group, key=lambda i: i.asked_at)
        cat.questions.append(Question(key, first.text, len(group), best[:3], first.asked_at))
    for cat in by_key.values():
        cat.questions.sort(key=lambda q: q.rank)
    return sorted(by_key.values(), key=lambda c: (-c.count, c.name))


def is_new(shown: dict[str, list[str]], written: dict[str, list[str]]) -> bool:
    """New answered questions, or new answers to old ones, since the entries were written."""
    return any(not set(ids) <= set(written.get(group, [])) for group, ids in shown.items())


def open_topics(
    categories: list[Category], with_entries: set[str], refused: dict[str, list[str]]
) -> list[OpenTopic]:
    """Questions nobody answered, per category, most asked first: those without replies, every question of a
    category that got no grounded entry, and the questions of entries refused for citing nothing real."""
    topics = []
    for c in categories:
        if c.key in with_entries:
            open_ = [q.text for q in c.questions if not q.answers]
            count = sum(q.count for q in c.questions if not q.answers) + len(refused.get(c.key, []))
            open_ = refused.get(c.key, []) + open_
        else:
            open_ = [q.text for q in c.questions]
            count = c.count
        if open_:
            topics.append(OpenTopic(c.name, count, tuple(open_[:OPEN_EXAMPLES])))
    return sorted(topics, key=lambda t: (-t.count, t.category))


def covers(category: Category, sources: tuple[Source, ...], written: dict[str, list[str]]) -> int:
    """How many times the questions an entry's sources answer were asked (at least 1): the replies' questions in
    this run, else the questions they were written from."""
    question_of = {mid: group for group, ids in written.items() for mid in ids}
    question_of.update({a.ref.message_id: q.group for q in category.answered for a in q.answers})
    asked = {q.group: q.count for q in category.questions}
    groups = {question_of[s.message_id] for s in sources if s.message_id in question_of}
    return max(1, sum(asked.get(g, 0) for g in groups))


class Labels:
    """Short labels ([A1], [A2] …) for the messages one writing call shows; only these resolve back to sources."""

    def __init__(self) -> None:
        self._by_label: dict[str, Source] = {}
        self._by_id: dict[str, str] = {}
        self.shown: set[str] = set()  # labels whose text this call already carries

    def label(self, ref: MessageRef | None, source: Source | None = None) -> str:
        mid = ref.message_id if ref is not None else source.message_id if source is not None else ""
        if mid in self._by_id:
            return self._by_id[mid]
        name = f"A{len(self._by_label) + 1}"
        self._by_id[mid] = name
        self._by_label[name] = source or Source(mid, "")  # linked once the entry is kept (_linked)
        return name

    def resolve(self, cited: list[str], *, allowed: set[str]) -> tuple[tuple[Source, ...], int]:
        """The sources behind ``cited`` (labels, or the message ids themselves) that were shown for the entry's
        category, and how many cited ones were not."""
        out: list[Source] = []
        unknown = 0
        for raw in cited:
            name = raw.strip().strip("[]#").strip()
            name = self._by_id.get(name, name.upper())
            if name in allowed and self._by_label[name] not in out:
                out.append(self._by_label[name])
            elif name not in allowed:
                unknown += 1
        return tuple(out), unknown


class Section:
    """One category's part of a writing call: its answered questions with their replies (only what is new when
    the category already has entries), and its current entries."""

    def __init__(
        self, category: Category, entries: int, current: list[Faq], written: dict[str, list[str]]
    ) -> None:
        self.category = category
        self.entries = entries
        self.current = current
        # An update sends only what is new: questions with replies the entries were not written from.
        if current:
            fresh = [
                replace(q, answers=[a for a in q.answers if a.ref.message_id not in written.get(q.group, [])])
                for q in category.shown(entries)
            ]
            self.questions = [q for q in fresh if q.answers]
        else:
            self.questions = category.shown(entries)
        self.labels: set[str] = set()
        self._written = written
        self.tokens = sum(
            count_tokens(q.text) + sum(count_tokens(a.text) + 8 for a in q.answers) for q in self.questions
        )
        self.tokens += sum(count_tokens(f.question) + count_tokens(f.answer) + 10 for f in current)

    def render(self, labels: Labels) -> str:
        c = self.category
        head = f"Category: {c.name} — asked {c.count} times — write {self.entries} entr{'y' if self.entries == 1 else 'ies'}"
        lines = [head]
        if self.current:
            lines.append("Current entries:")
            for k, f in enumerate(self.current, 1):
                cited = " ".join(f"[{self._label(labels, None, s)}]" for s in f.sources)
                lines.append(f"- [E{k}] Q: {f.question} | A: {f.answer} | sources: {cited}")
            lines.append("New questions and replies:")
        for q in self.questions:
            lines.append(f"Q ({q.count}×) {q.text[:500]}")
            for a in q.answers:
                name = self._label(labels, a.ref, None)
                # In a chat, one reply often answers several questions of its thread: its text is sent once.
                if name in labels.shown:
                    lines.append(f"  [{name}] (shown above)")
                else:
                    labels.shown.add(name)
                    lines.append(f"  [{name}] {a.author_name or a.author}: {a.text}")
        return "\n".join(lines)

    def covers(self, sources: tuple[Source, ...]) -> int:
        return covers(self.category, sources, self._written)

    def slot(self, replaces: str) -> int | None:
        """Which current entry ``replaces`` names (0-based), None for a new entry or a label never shown."""
        name = replaces.strip().strip("[]").upper()
        if name.startswith("E") and name[1:].isdigit() and 1 <= int(name[1:]) <= len(self.current):
            return int(name[1:]) - 1
        return None

    def _label(self, labels: Labels, ref: MessageRef | None, source: Source | None) -> str:
        name = labels.label(ref, source)
        self.labels.add(name)
        return name
