"""Exactly one ledger record per provider call or response-cache hit — failed and interrupted calls included.

The usage is the provider's own final count when it sent one; otherwise (a cut stream, a server that reports no
usage) it is estimated and marked so. A ledger write that fails never fails the call: the store buffers what it
can, and what it could not is counted (``unrecorded``, a metric)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from llm.attempt import Attempt
from llm.models import PriceTable
from llm.ports import LedgerSink
from llm.routes import RouteEntry
from llm.tokens import count_tokens
from llm.types import Attribution, LedgerRecord, Outcome, Request, Task, Usage

log = logging.getLogger(__name__)


class CallLedger:
    """Prices attempts and writes their records to ``sink``, telling every observer (metrics) first."""

    def __init__(
        self,
        *,
        sink: LedgerSink,
        prices: PriceTable,
        self_hosted: frozenset[str],
        observers: list[Callable[[LedgerRecord], None]],
    ) -> None:
        self._sink = sink
        self._prices = prices
        self._self_hosted = self_hosted
        self._observers = observers  # the caller's list: an observer added to it later is told too
        self.unrecorded = 0  # ledger writes that raised (the store buffers; this counts what it could not)

    async def attempt(
        self,
        task: Task,
        request: Request,
        bill_to: Attribution,
        attempt: Attempt,
        outcome: Outcome,
        error: str = "",
        *,
        truncated: bool = False,
    ) -> LedgerRecord:
        """Record one attempt at ``request`` (the request as sent: its size estimates missing usage)."""
        usage = billed_usage(attempt, request, outcome)
        entry = attempt.entry
        self_hosted = entry.provider in self._self_hosted
        billed = usage.total_input + usage.output > 0
        quote = self._prices.quote(
            entry.model, usage, provider=entry.provider, self_hosted=self_hosted, at=attempt.at
        )
        record = ledger_record(
            task,
            entry,
            bill_to,
            at=attempt.at,
            usage=usage,
            cost_usd=quote.cost_usd,
            latency_s=time.monotonic() - attempt.started,
            ttft_s=attempt.ttft,
            outcome=outcome,
            error=error,
            saved_usd=quote.saved_usd,
            unpriced=quote.unpriced and billed,  # a call refused before the model ran cost nothing anyway
            self_hosted=self_hosted,
            price_source=quote.source if billed else "",
            truncated=truncated,
        )
        await self.write(record)
        return record

    async def cache_hit(self, task: Task, entry: RouteEntry, bill_to: Attribution, saved: Decimal) -> None:
        """Record an answer served from the response cache: no call, nothing billed, ``saved`` spared."""
        await self.write(
            ledger_record(
                task,
                entry,
                bill_to,
                at=datetime.now(UTC),
                usage=Usage(),
                cost_usd=Decimal(0),
                latency_s=0.0,
                ttft_s=0.0,
                outcome=Outcome.CACHED,
                cache_hit=True,
                saved_usd=saved,
            )
        )

    async def write(self, record: LedgerRecord) -> None:
        for observe in self._observers:
            observe(record)
        try:
            await self._sink.add(record)
        except Exception:
            self.unrecorded += 1
            log.exception("ledger write failed for a %s call to %s", record.task, record.model)


def billed_usage(attempt: Attempt, request: Request, outcome: Outcome) -> Usage:
    """The provider's final count when it sent one; nothing when it refused before the model ran; else an estimate
    (flagged ``estimated``) from the request and the text that arrived."""
    if attempt.usage is not None and attempt.final_usage:
        return attempt.usage
    if outcome is Outcome.ERROR and attempt.usage is None:
        # Refused before the model ran (429, 5xx, auth, timeout before any byte): nothing was billed.
        return Usage()
    # The provider's count is missing or incomplete (cut stream, server without usage): estimate, flagged.
    partial = attempt.usage
    prompt = (
        partial.total_input
        if partial
        else count_tokens(request.system + "".join(m.content for m in request.messages))
    )
    return Usage(
        input=partial.input if partial else prompt,
        output=count_tokens(attempt.text),
        cache_read=partial.cache_read if partial else 0,
        cache_write_5m=partial.cache_write_5m if partial else 0,
        cache_write_1h=partial.cache_write_1h if partial else 0,
        estimated=True,
    )


def ledger_record(task: Task, entry: RouteEntry, bill_to: Attribution, **fields: Any) -> LedgerRecord:
    """A ledger record of a call to ``entry`` for ``task``, billed to ``bill_to``; ``fields`` are the rest."""
    return LedgerRecord(
        provider=entry.provider,
        model=entry.model,
        task=task.value,
        platform=bill_to.platform,
        workspace=bill_to.workspace,
        channel=bill_to.channel,
        user=bill_to.user,
        feature=bill_to.feature,
        **fields,
    )
