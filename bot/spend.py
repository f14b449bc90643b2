"""/llmcost and `supportbot spend`: what the bot has spent, from the ledger's aggregates."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bot.stores.base import Ledger, SpendRow
from bot.types import ChannelRef

PERIODS = {"today": 1, "7d": 7, "30d": 30}
TOKEN_KEYS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
_BARS = "▁▂▃▄▅▆▇█"


def parse_period(arg: str) -> tuple[str, int]:
    """'' → 7d; 'today' | '7d' | '30d' | 'N' | 'Nd' (1–90 days). Anything else raises ValueError."""
    word = (arg or "7d").strip().lower().split()[0] if (arg or "").strip() else "7d"
    if word in PERIODS:
        return word, PERIODS[word]
    digits = word[:-1] if word.endswith("d") else word
    if digits.isascii() and digits.isdigit() and len(digits) <= 3 and 1 <= int(digits) <= 90:  # no int() on huge input
        return f"{int(digits)}d", int(digits)
    raise ValueError(f"unknown period {word!r}: use today, 7d or 30d")


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    cost_usd: Decimal
    calls: int
    estimated: bool = False  # some of the cost rests on token counts the bot estimated
    unpriced: int = 0  # calls to a model nobody prices: their cost is unknown, not zero
    self_hosted: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} (self-hosted)" if self.self_hosted else self.name

    def cost_text(self) -> str:
        """'$0.12', '~$0.12' (estimated), 'unpriced', or '$0.12 + unpriced'."""
        if self.unpriced and self.cost_usd == 0:
            return "unpriced"
        text = mark(usd(self.cost_usd), self.estimated)
        return f"{text} + unpriced" if self.unpriced else text


@dataclass(frozen=True, slots=True)
class SpendReport:
    """What /llmcost answers: the figures of a period, or — when ``refusal`` is set — no figures and the reason
    (a usage line, an admin-only scope), which platforms show as a plain one-line reply."""

    period: str
    since: date
    scope: str  # a channel id, or "all channels"
    total_usd: Decimal
    calls: int
    cache_hits: int
    by_model: list[Line]
    by_feature: list[Line]
    by_channel: list[Line]
    tokens: dict[str, int]  # input, cache_read, cache_write_5m, cache_write_1h, output
    prompt_cache_saved_usd: Decimal
    response_cache_saved_usd: Decimal
    daily: list[tuple[date, Decimal]]
    top_users: list[Line] = field(default_factory=list)
    budget_usd: Decimal | None = None
    month_spent_usd: Decimal = Decimal(0)
    failed: int = 0  # calls that gave no complete answer (errors, cut streams)
    estimated_calls: int = 0  # calls whose token counts the bot estimated (the server sent none, or not all)
    estimated_tokens: int = 0
    estimated_usd: Decimal = Decimal(0)  # the part of total_usd resting on those estimates
    unpriced_calls: int = 0  # calls to models nobody prices: not in total_usd
    unpriced_tokens: int = 0
    refusal: str = ""

    @classmethod
    def refused(cls, reason: str, *, scope: str) -> SpendReport:
        """A report that gives no figures, only ``reason``."""
        return cls(
            period="",
            since=datetime.now(UTC).date(),
            scope=scope,
            total_usd=Decimal(0),
            calls=0,
            cache_hits=0,
            by_model=[],
            by_feature=[],
            by_channel=[],
            tokens=dict.fromkeys(TOKEN_KEYS, 0),
            prompt_cache_saved_usd=Decimal(0),
            response_cache_saved_usd=Decimal(0),
            daily=[],
            refusal=reason,
        )

    @property
    def answered(self) -> int:
        return self.calls - self.failed

    @property
    def budget_left_usd(self) -> Decimal | None:
        return None if self.budget_usd is None else self.budget_usd - self.month_spent_usd

    def total_text(self) -> str:
        """The total, '~'-marked when part of it is estimated and '+ unpriced' when some calls have no price."""
        text = mark(usd(self.total_usd), self.estimated_usd > 0)
        return f"{text} + unpriced" if self.unpriced_calls else text

    def calls_text(self) -> str:
        return (
            f"{self.calls:,} call(s): {self.answered:,} answered ({self.cache_hits:,} from cache), "
            f"{self.failed:,} failed"
        )

    def tokens_text(self) -> str:
        t = self.tokens
        text = (
            f"{t['input']:,} in, {t['cache_read']:,} cache read, "
            f"{t['cache_write_5m'] + t['cache_write_1h']:,} cache write, {t['output']:,} out"
        )
        return mark(text, self.estimated_tokens > 0)

    def notes(self) -> list[str]:
        """What the figures cannot say by themselves: unpriced calls, and what was estimated."""
        notes = []
        if self.unpriced_calls:
            notes.append(
                f"Unpriced: {self.unpriced_calls:,} call(s), {self.unpriced_tokens:,} tokens — no price source "
                "knows their model, so they are not in the total (SUPPORTBOT_PRICES_FILE can price them)."
            )
        if self.estimated_calls:
            notes.append(
                f"~ Estimated: {self.estimated_calls:,} call(s), {self.estimated_tokens:,} tokens "
                f"({usd(self.estimated_usd)}) were counted by the bot because the model server sent no usage."
            )
        return notes

    def chart(self) -> str:
        """Daily spend as one line of block characters, oldest day first."""
        values = [v for _, v in self.daily]
        top = max(values, default=Decimal(0))
        if top <= 0:
            return _BARS[0] * len(values)
        return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] for v in values)

    def to_text(self) -> str:
        if self.refusal:
            return self.refusal
        lines = [
            f"*LLM spend — {self.scope}, {self.period}* (since {self.since.isoformat()})",
            f"Total: {self.total_text()} over {self.calls_text()}",
            f"Daily: {self.chart()}",
        ]
        if self.budget_usd is not None:
            left = self.budget_left_usd or Decimal(0)
            lines.append(
                f"Budget this month: {usd(self.month_spent_usd)} of {usd(self.budget_usd)} "
                f"({_pct(self.month_spent_usd, self.budget_usd)}), {usd(max(left, Decimal(0)))} left"
            )
        for title, rows in (("By model", self.by_model), ("By feature", self.by_feature)):
            if rows:
                lines.append(f"{title}: " + ", ".join(f"{r.label} {r.cost_text()} ({r.calls})" for r in rows))
        if len(self.by_channel) > 1:
            lines.append("By channel: " + ", ".join(f"{r.name} {r.cost_text()}" for r in self.by_channel[:10]))
        lines.append(f"Tokens: {self.tokens_text()}")
        lines.append(
            f"Saved: {usd(self.prompt_cache_saved_usd)} by prompt caching, "
            f"{usd(self.response_cache_saved_usd)} by the response cache"
        )
        if self.top_users:
            lines.append("Top users: " + ", ".join(f"{r.name} {r.cost_text()}" for r in self.top_users))
        lines.extend(self.notes())
        return "\n".join(lines)


def mark(text: str, estimated: bool) -> str:
    """'~' in front of a figure that rests on estimated token counts."""
    return f"~{text}" if estimated else text


def plain(amount: Decimal) -> str:
    """A decimal as people write it: '0', '0.000123', '1.5' — never '0E-12' or '1.500000000000'."""
    if amount == 0:
        return "0"
    return format(amount.normalize(), "f")


def usd(amount: Decimal) -> str:
    if amount != 0 and abs(amount) < Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def _pct(part: Decimal, whole: Decimal) -> str:
    return f"{(part / whole * 100):.0f}%" if whole > 0 else "–"


@dataclass
class _Tally:
    """One breakdown line being summed."""

    cost_usd: Decimal = Decimal(0)
    calls: int = 0
    estimated: bool = False
    unpriced: int = 0
    self_hosted: bool = False

    def add(self, cost: Decimal, calls: int, *, estimated: bool, unpriced: int, self_hosted: bool) -> None:
        self.cost_usd += cost
        self.calls += calls
        self.estimated |= estimated
        self.unpriced += unpriced
        self.self_hosted |= self_hosted


def _lines(tallies: dict[str, _Tally]) -> list[Line]:
    lines = (Line(k, t.cost_usd, t.calls, t.estimated, t.unpriced, t.self_hosted) for k, t in tallies.items())
    return sorted(lines, key=lambda x: (-x.cost_usd, x.name))


async def month_spend(ledger: Ledger, channel: ChannelRef | None, *, today: date | None = None) -> Decimal:
    today = today or datetime.now(UTC).date()
    rows = await ledger.daily(since=today.replace(day=1), channel=channel)
    return sum((r.cost_usd for r in rows), Decimal(0))


async def build_report(
    ledger: Ledger,
    *,
    period: str,
    days: int,
    channel: ChannelRef | None,
    budget_usd: Decimal | None = None,
    names: dict[str, str] | None = None,
    today: date | None = None,
) -> SpendReport:
    today = today or datetime.now(UTC).date()
    since = today - timedelta(days=days - 1)
    rows: list[SpendRow] = await ledger.daily(since=since, channel=channel)
    by_model: dict[str, _Tally] = defaultdict(_Tally)
    by_feature: dict[str, _Tally] = defaultdict(_Tally)
    by_channel: dict[str, _Tally] = defaultdict(_Tally)
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    tokens = dict.fromkeys(TOKEN_KEYS, 0)
    marks = dict.fromkeys(("failed", "estimated", "estimated_tokens", "unpriced", "unpriced_tokens"), 0)
    prompt_saved = estimated_usd = total = Decimal(0)
    calls = hits = 0
    for r in rows:
        total += r.cost_usd
        calls += r.calls
        hits += r.cache_hits
        for tally, self_hosted in (
            (by_model[r.model], r.self_hosted > 0),
            (by_feature[r.feature or r.task], False),
            (by_channel[r.channel], False),
        ):
            tally.add(r.cost_usd, r.calls, estimated=r.estimated > 0, unpriced=r.unpriced, self_hosted=self_hosted)
        per_day[r.day] += r.cost_usd
        for k in tokens:
            tokens[k] += getattr(r, k)
        for k in marks:
            marks[k] += getattr(r, k)
        prompt_saved += r.saved_usd
        estimated_usd += r.estimated_usd
    # Records are needed only for what aggregates cannot say: who spent, and what cache hits saved.
    records = await ledger.records(
        since=datetime.combine(since, datetime.min.time(), tzinfo=UTC), channel=channel
    )
    users: dict[str, _Tally] = defaultdict(_Tally)
    response_saved = Decimal(0)
    for rec in records:
        if rec.cache_hit:
            response_saved += rec.saved_usd
        if rec.user:
            users[rec.user].add(
                rec.cost_usd, 1, estimated=rec.usage.estimated, unpriced=int(rec.unpriced), self_hosted=False
            )
    prompt_saved -= response_saved  # rows' saved_usd includes both kinds
    names = names or {}
    top = [replace(u, name=names.get(u.name, u.name)) for u in _lines(users)[:5]]
    return SpendReport(
        period=period,
        since=since,
        scope=channel.channel if channel else "all channels",
        total_usd=total,
        calls=calls,
        cache_hits=hits,
        by_model=_lines(by_model),
        by_feature=_lines(by_feature),
        by_channel=_lines(by_channel),
        tokens=tokens,
        prompt_cache_saved_usd=prompt_saved,
        response_cache_saved_usd=response_saved,
        daily=[(since + timedelta(days=i), per_day[since + timedelta(days=i)]) for i in range(days)],
        top_users=top,
        budget_usd=budget_usd,
        month_spent_usd=await month_spend(ledger, channel, today=today) if budget_usd is not None else Decimal(0),
        failed=marks["failed"],
        estimated_calls=marks["estimated"],
        estimated_tokens=marks["estimated_tokens"],
        estimated_usd=estimated_usd,
        unpriced_calls=marks["unpriced"],
        unpriced_tokens=marks["unpriced_tokens"],
    )


def _line_json(line: Line) -> dict[str, object]:
    return {
        "cost_usd": plain(line.cost_usd),
        "calls": line.calls,
        "estimated": line.estimated,
        "unpriced_calls": line.unpriced,
        **({"self_hosted": True} if line.self_hosted else {}),
    }


def report_json(report: SpendReport) -> dict[str, object]:
    """`supportbot spend --json`: one JSON-ready object; money as plain decimal strings so no precision is lost."""
    return {
        "period": report.period,
        "since": report.since.isoformat(),
        "scope": report.scope,
        "total_usd": plain(report.total_usd),
        "calls": report.calls,
        "answered": report.answered,
        "failed": report.failed,
        "cache_hits": report.cache_hits,
        "estimated": {
            "calls": report.estimated_calls,
            "tokens": report.estimated_tokens,
            "cost_usd": plain(report.estimated_usd),
        },
        "unpriced": {"calls": report.unpriced_calls, "tokens": report.unpriced_tokens},
        "by_model": {r.name: _line_json(r) for r in report.by_model},
        "by_feature": {r.name: _line_json(r) for r in report.by_feature},
        "by_channel": {r.name: _line_json(r) for r in report.by_channel},
        "tokens": report.tokens,
        "prompt_cache_saved_usd": plain(report.prompt_cache_saved_usd),
        "response_cache_saved_usd": plain(report.response_cache_saved_usd),
        "daily": {d.isoformat(): plain(v) for d, v in report.daily},
        "top_users": {r.name: plain(r.cost_usd) for r in report.top_users},
        "budget_usd": None if report.budget_usd is None else plain(report.budget_usd),
        "month_spent_usd": plain(report.month_spent_usd),
    }
