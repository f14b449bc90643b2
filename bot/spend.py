"""/llmcost and `supportbot spend`: what the bot has spent, from the ledger's aggregates."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bot.stores.base import Ledger, SpendRow
from bot.types import ChannelRef

PERIODS = {"today": 1, "7d": 7, "30d": 30}
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


@dataclass(frozen=True, slots=True)
class SpendReport:
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

    @property
    def budget_left_usd(self) -> Decimal | None:
        return None if self.budget_usd is None else self.budget_usd - self.month_spent_usd

    def chart(self) -> str:
        """Daily spend as one line of block characters, oldest day first."""
        values = [v for _, v in self.daily]
        top = max(values, default=Decimal(0))
        if top <= 0:
            return _BARS[0] * len(values)
        return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] for v in values)

    def to_text(self) -> str:
        lines = [
            f"*LLM spend — {self.scope}, {self.period}* (since {self.since.isoformat()})",
            f"Total: {usd(self.total_usd)} over {self.calls} call(s), {self.cache_hits} answered from cache",
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
                lines.append(f"{title}: " + ", ".join(f"{r.name} {usd(r.cost_usd)} ({r.calls})" for r in rows))
        if len(self.by_channel) > 1:
            lines.append("By channel: " + ", ".join(f"{r.name} {usd(r.cost_usd)}" for r in self.by_channel[:10]))
        t = self.tokens
        lines.append(
            f"Tokens: {t['input']:,} in, {t['cache_read']:,} cache read, "
            f"{t['cache_write_5m'] + t['cache_write_1h']:,} cache write, {t['output']:,} out"
        )
        lines.append(
            f"Saved: {usd(self.prompt_cache_saved_usd)} by prompt caching, "
            f"{usd(self.response_cache_saved_usd)} by the response cache"
        )
        if self.top_users:
            lines.append("Top users: " + ", ".join(f"{r.name} {usd(r.cost_usd)}" for r in self.top_users))
        return "\n".join(lines)


def usd(amount: Decimal) -> str:
    if amount != 0 and abs(amount) < Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def _pct(part: Decimal, whole: Decimal) -> str:
    return f"{(part / whole * 100):.0f}%" if whole > 0 else "–"


def _lines(costs: dict[str, Decimal], calls: Counter[str]) -> list[Line]:
    return sorted((Line(k, v, calls[k]) for k, v in costs.items()), key=lambda x: (-x.cost_usd, x.name))


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
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    by_feature: dict[str, Decimal] = defaultdict(Decimal)
    by_channel: dict[str, Decimal] = defaultdict(Decimal)
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    calls_model: Counter[str] = Counter()
    calls_feature: Counter[str] = Counter()
    calls_channel: Counter[str] = Counter()
    tokens = dict.fromkeys(("input", "cache_read", "cache_write_5m", "cache_write_1h", "output"), 0)
    prompt_saved = Decimal(0)
    total = Decimal(0)
    calls = hits = 0
    for r in rows:
        total += r.cost_usd
        calls += r.calls
        hits += r.cache_hits
        by_model[r.model] += r.cost_usd
        calls_model[r.model] += r.calls
        feature = r.feature or r.task
        by_feature[feature] += r.cost_usd
        calls_feature[feature] += r.calls
        by_channel[r.channel] += r.cost_usd
        calls_channel[r.channel] += r.calls
        per_day[r.day] += r.cost_usd
        for k in tokens:
            tokens[k] += getattr(r, k)
        prompt_saved += r.saved_usd
    # Records are needed only for what aggregates cannot say: who spent, and what cache hits saved.
    records = await ledger.records(
        since=datetime.combine(since, datetime.min.time(), tzinfo=UTC), channel=channel
    )
    users: dict[str, Decimal] = defaultdict(Decimal)
    user_calls: Counter[str] = Counter()
    response_saved = Decimal(0)
    for rec in records:
        if rec.cache_hit:
            response_saved += rec.saved_usd
        if rec.user:
            users[rec.user] += rec.cost_usd
            user_calls[rec.user] += 1
    prompt_saved -= response_saved  # rows' saved_usd includes both kinds
    names = names or {}
    top = [Line(names.get(u.name, u.name), u.cost_usd, u.calls) for u in _lines(users, user_calls)[:5]]
    return SpendReport(
        period=period,
        since=since,
        scope=channel.channel if channel else "all channels",
        total_usd=total,
        calls=calls,
        cache_hits=hits,
        by_model=_lines(by_model, calls_model),
        by_feature=_lines(by_feature, calls_feature),
        by_channel=_lines(by_channel, calls_channel),
        tokens=tokens,
        prompt_cache_saved_usd=prompt_saved,
        response_cache_saved_usd=response_saved,
        daily=[(since + timedelta(days=i), per_day[since + timedelta(days=i)]) for i in range(days)],
        top_users=top,
        budget_usd=budget_usd,
        month_spent_usd=await month_spend(ledger, channel, today=today) if budget_usd is not None else Decimal(0),
    )


def report_json(report: SpendReport) -> dict[str, object]:
    """`supportbot spend --json`: one JSON-ready object; money as strings so no precision is lost."""
    return {
        "period": report.period,
        "since": report.since.isoformat(),
        "scope": report.scope,
        "total_usd": str(report.total_usd),
        "calls": report.calls,
        "cache_hits": report.cache_hits,
        "by_model": {r.name: {"cost_usd": str(r.cost_usd), "calls": r.calls} for r in report.by_model},
        "by_feature": {r.name: {"cost_usd": str(r.cost_usd), "calls": r.calls} for r in report.by_feature},
        "by_channel": {r.name: {"cost_usd": str(r.cost_usd), "calls": r.calls} for r in report.by_channel},
        "tokens": report.tokens,
        "prompt_cache_saved_usd": str(report.prompt_cache_saved_usd),
        "response_cache_saved_usd": str(report.response_cache_saved_usd),
        "daily": {d.isoformat(): str(v) for d, v in report.daily},
        "top_users": {r.name: str(r.cost_usd) for r in report.top_users},
        "budget_usd": None if report.budget_usd is None else str(report.budget_usd),
        "month_spent_usd": str(report.month_spent_usd),
    }
