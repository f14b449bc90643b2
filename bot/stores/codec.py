"""How stored values are written, shared by both engines so SQLite and Redis can never disagree.

Datetimes are kept as UTC: ISO strings inside documents, integer microseconds since the epoch in indexes (exact:
a ``datetime`` has microsecond resolution). Money is kept as Decimal strings in documents and as integer
pico-USD in aggregates, so sums are exact integer additions in SQL and in Redis ``HINCRBY``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from bot.stores.base import SpendRow
from bot.types import ChannelRef, ChatMessage, Inquiry, MessageRef
from llm.types import LedgerRecord, Outcome, Usage

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
PICO_PER_USD = 10**12
# Costs finer than a pico-dollar are rounded when a record is stored, so the record and the aggregates agree exactly.
PICO = Decimal(1).scaleb(-12)

USAGE_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
# What the aggregates count besides calls, tokens and money: calls that failed, calls (and their tokens) whose usage
# was estimated or whose model had no price, and calls to a self-hosted server.
MARK_FIELDS = ("failed", "estimated", "estimated_tokens", "unpriced", "unpriced_tokens", "self_hosted")
# Money sums in the aggregates, pico-USD: total cost, what caching saved, and the part of the cost that rests on
# estimated token counts.
MONEY_FIELDS = ("cost_pico", "saved_pico", "estimated_pico")


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC. A naive datetime is taken to be UTC already (``datetime.utcnow()`` style): refusing it
    would lose a ledger record over a caller's formatting slip."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_us(dt: datetime) -> int:
    return (as_utc(dt) - EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def day_of(dt: datetime) -> date:
    return as_utc(dt).date()


def to_pico(amount: Decimal) -> int:
    """Exact integer pico-USD; ``amount`` must already be a whole number of pico-dollars (see normalise_record)."""
    scaled = amount.scaleb(12)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} is finer than a pico-dollar")
    return int(scaled)


def from_pico(pico: int) -> Decimal:
    return Decimal(pico).scaleb(-12)


def channel_key(channel: ChannelRef) -> str:
    """An unambiguous key for a channel: each part is percent-quoted, so a ':' inside an id cannot collide."""
    return ":".join(quote(part, safe="") for part in (channel.platform, channel.workspace, channel.channel))


def part(value: str) -> str:
    return quote(value, safe="")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _channel_doc(channel: ChannelRef) -> list[str]:
    return [channel.platform, channel.workspace, channel.channel]


def encode_message(message: ChatMessage) -> str:
    ref = message.ref
    return _dumps(
        {
            "ch": _channel_doc(ref.channel),
            "id": ref.message_id,
            "th": ref.thread_id,
            "author": message.author,
            "name": message.author_name,
            "text": message.text,
            "at": as_utc(message.sent_at).isoformat(),
            "bot": message.is_bot,
        }
    )


def decode_message(raw: str) -> ChatMessage:
    doc = json.loads(raw)
    ref = MessageRef(ChannelRef(*doc["ch"]), doc["id"], doc["th"])
    return ChatMessage(ref, doc["author"], doc["name"], doc["text"], _dt(doc["at"]), is_bot=doc["bot"])


def encode_inquiry(inquiry: Inquiry) -> str:
    return _dumps(
        {
            "ch": _channel_doc(inquiry.channel),
            "id": inquiry.message_id,
            "author": inquiry.author,
            "text": inquiry.text,
            "at": as_utc(inquiry.asked_at).isoformat(),
            "link": inquiry.link,
            "group": inquiry.group,
        }
    )


def decode_inquiry(raw: str) -> Inquiry:
    doc = json.loads(raw)
    return Inquiry(
        ChannelRef(*doc["ch"]),
        doc["id"],
        doc["author"],
        doc["text"],
        _dt(doc["at"]),
        link=doc["link"],
        group=doc["group"],
    )


def _pico_exact(amount: Decimal) -> Decimal:
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        return amount.quantize(PICO)
    return amount


def normalise_record(record: LedgerRecord) -> LedgerRecord:
    """The record as it will be stored: an id (so a retried write is recognised, never counted twice), ``at`` in
    UTC, and costs rounded to whole pico-dollars so the stored record and the aggregates agree exactly."""
    return replace(
        record,
        id=record.id or uuid.uuid4().hex,
        at=as_utc(record.at),
        cost_usd=_pico_exact(record.cost_usd),
        saved_usd=_pico_exact(record.saved_usd),
    )


def encode_record(record: LedgerRecord) -> str:
    usage = record.usage
    return _dumps(
        {
            "id": record.id,
            "at": as_utc(record.at).isoformat(),
            "provider": record.provider,
            "model": record.model,
            "task": record.task,
            "platform": record.platform,
            "workspace": record.workspace,
            "channel": record.channel,
            "user": record.user,
            "feature": record.feature,
            "usage": {name: getattr(usage, name) for name in USAGE_FIELDS} | {"estimated": usage.estimated},
            "cost": str(record.cost_usd),
            "saved": str(record.saved_usd),
            "latency": record.latency_s,
            "ttft": record.ttft_s,
            "outcome": record.outcome.value,
            "cache_hit": record.cache_hit,
            "error": record.error,
            "unpriced": record.unpriced,
            "self_hosted": record.self_hosted,
            "price_source": record.price_source,
            "truncated": record.truncated,
        }
    )


def decode_record(raw: str) -> LedgerRecord:
    doc = json.loads(raw)
    return LedgerRecord(
        at=_dt(doc["at"]),
        provider=doc["provider"],
        model=doc["model"],
        task=doc["task"],
        platform=doc["platform"],
        workspace=doc["workspace"],
        channel=doc["channel"],
        user=doc["user"],
        feature=doc["feature"],
        usage=Usage(**doc["usage"]),
        cost_usd=Decimal(doc["cost"]),
        latency_s=doc["latency"],
        ttft_s=doc["ttft"],
        outcome=Outcome(doc["outcome"]),
        cache_hit=doc["cache_hit"],
        error=doc["error"],
        saved_usd=Decimal(doc["saved"]),
        id=doc["id"],
        # Records written before these fields existed: priced (or unpriced at $0) by the provider's list price.
        unpriced=doc.get("unpriced", False),
        self_hosted=doc.get("self_hosted", False),
        price_source=doc.get("price_source", ""),
        truncated=doc.get("truncated", False),
    )


def record_cell(record: LedgerRecord) -> tuple[str, str, str, str, str, str, str]:
    """The aggregate cell a record counts toward (besides its day)."""
    return (
        record.platform,
        record.workspace,
        record.channel,
        record.provider,
        record.model,
        record.task,
        record.feature,
    )


def record_increments(record: LedgerRecord) -> dict[str, int]:
    """What one record adds to its cell; both engines sum exactly these integers."""
    usage = record.usage
    tokens = usage.total_input + usage.output
    return {
        "calls": 1,
        "cache_hits": int(record.cache_hit),
        **{name: getattr(usage, name) for name in USAGE_FIELDS},
        "cost_pico": to_pico(record.cost_usd),
        "saved_pico": to_pico(record.saved_usd),
        "estimated_pico": to_pico(record.cost_usd) if usage.estimated else 0,
        "failed": int(record.failed),
        "estimated": int(usage.estimated),
        "estimated_tokens": tokens if usage.estimated else 0,
        "unpriced": int(record.unpriced),
        "unpriced_tokens": tokens if record.unpriced else 0,
        "self_hosted": int(record.self_hosted),
    }


def spend_row(day: date, cell: tuple[str, ...], totals: dict[str, int]) -> SpendRow:
    platform, workspace, channel, provider, model, task, feature = cell
    return SpendRow(
        day=day,
        platform=platform,
        workspace=workspace,
        channel=channel,
        provider=provider,
        model=model,
        task=task,
        feature=feature,
        calls=totals.get("calls", 0),
        cache_hits=totals.get("cache_hits", 0),
        input=totals.get("input", 0),
        output=totals.get("output", 0),
        cache_read=totals.get("cache_read", 0),
        cache_write_5m=totals.get("cache_write_5m", 0),
        cache_write_1h=totals.get("cache_write_1h", 0),
        cost_usd=from_pico(totals.get("cost_pico", 0)),
        saved_usd=from_pico(totals.get("saved_pico", 0)),
        estimated_usd=from_pico(totals.get("estimated_pico", 0)),
        **{name: totals.get(name, 0) for name in MARK_FIELDS},
    )
