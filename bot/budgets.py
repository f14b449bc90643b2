"""Monthly budgets per channel, and alerts when a day's spend jumps far above normal."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bot.spend import month_spend, usd
from bot.stores.base import Store
from bot.types import ChannelRef

WARN_AT = Decimal("0.8")  # the reply carries a warning from 80 % of the budget
SPIKE_FACTOR = 10  # a day's spend above 10× the trailing 7-day median raises an alert
SPIKE_DAYS = 7


@dataclass(frozen=True, slots=True)
class BudgetState:
    budget_usd: Decimal | None
    spent_usd: Decimal

    @property
    def exhausted(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    @property
    def warning(self) -> str:
        if self.budget_usd is None or self.budget_usd <= 0 or self.spent_usd < self.budget_usd * WARN_AT:
            return ""
        pct = self.spent_usd / self.budget_usd * 100
        return f"⚠️ This channel has used {pct:.0f}% of its monthly LLM budget ({usd(self.spent_usd)} of {usd(self.budget_usd)})."

    def refusal(self) -> str:
        return (
            f"This channel has used its monthly LLM budget ({usd(self.spent_usd)} of {usd(self.budget_usd or Decimal(0))}), "
            "so I'm not calling a model until next month. An admin can raise the budget."
        )


async def budget_state(store: Store, channel: ChannelRef, budget_usd: Decimal | None) -> BudgetState:
    if budget_usd is None:
        return BudgetState(None, Decimal(0))
    return BudgetState(budget_usd, await month_spend(store.ledger, channel))


async def spike_alerts(store: Store, channel: ChannelRef, *, today: date | None = None) -> list[str]:
    """Alerts for the channel and for each of its features whose spend today passed 10× the trailing 7-day
    median; each is returned once per day (claimed in the store, so replicas don't repeat it). A channel with no
    spend history (median 0) has no baseline and raises none."""
    today = today or datetime.now(UTC).date()
    rows = await store.ledger.daily(since=today - timedelta(days=SPIKE_DAYS), channel=channel)
    per_key: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in rows:
        per_key["the channel"][r.day] += r.cost_usd
        per_key[f"feature {r.feature or r.task}"][r.day] += r.cost_usd
    alerts = []
    for what, days in per_key.items():
        history = [days.get(today - timedelta(days=i), Decimal(0)) for i in range(1, SPIKE_DAYS + 1)]
        median = Decimal(statistics.median(history))
        spent = days.get(today, Decimal(0))
        if median > 0 and spent > median * SPIKE_FACTOR:
            key = f"alert:{channel.key}:{what}:{today.isoformat()}"
            if await store.claims.claim(key, ttl_s=2 * 86400):
                alerts.append(
                    f"Spend alert: {what} in {channel.channel} spent {usd(spent)} today, "
                    f"over {SPIKE_FACTOR}× its 7-day median of {usd(median)}."
                )
    return alerts
