"""Calls nobody waits for, through the providers' Batch APIs: half the list price, answered within 24 h (most within
the hour). OpenAI takes a JSONL file of requests (``/v1/files`` + ``/v1/batches``) and answers with an output file;
Anthropic takes the requests in one body (``/v1/messages/batches``) and answers with a JSONL results stream. The
provider modules speak those (they alone import the SDKs); this module submits, polls, reads the answers back,
validates them, and records each answered request in the ledger at the batch price, like any other call.

What can go wrong, and what happens then:
- a server without batch endpoints (a self-hosted one: 404/405 on submit) — the calls are made the normal way, and
  that is remembered for the server (``UNSUPPORTED_TTL_S``), so later runs do not ask again;
- a batch that fails, expires or is cancelled as a whole — ``BatchFailed``: what was answered is still recorded
  (it was billed), the caller keeps what it had and retries on its next run;
- one request that errored or came back invalid inside a finished batch — asked again the normal way (when every
  request errored, the batch counts as failed: asking each again would most likely repeat it);
- the process polling a batch dies or restarts — with a ``BatchJob``, the batch's id was written down before the
  first poll, so the replica that takes the job over polls that batch (same requests) instead of paying for a new
  one; the note is removed once the batch's answers are read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from llm.ledger import ledger_record
from llm.models import PriceTable
from llm.ports import BATCH_WAIT_S, BatchJob, ResponseCache
from llm.provider import ErrorInfo, Provider, StructuredSpec
from llm.routes import Route, RouteEntry
from llm.structured import json_text, spec_for
from llm.types import Attribution, BatchFailed, LedgerRecord, Outcome, Request, Task, Usage

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# genai-prices selects its batch variants with this price context (both providers bill batches at 50 %).
BATCH_PRICE_CONTEXT = {"processing": "batch"}
# Marks a ledger record as a batch call: the price source says which prices applied.
BATCH_MARK = "batch"
POLL_S = 30.0  # both providers suggest polling every few tens of seconds; a batch takes minutes at least
UNSUPPORTED_TTL_S = 7 * 86400.0  # re-asked after a week, like the other things learned about a server
MAX_LINES = 10_000  # Anthropic takes up to 100,000 requests per batch, OpenAI 50,000; a run sends far fewer

BatchState = Literal["running", "ended", "failed", "expired", "cancelled"]


@dataclass(frozen=True, slots=True)
class BatchLine:
    custom_id: str
    request: Request


@dataclass(frozen=True, slots=True)
class BatchStatus:
    state: BatchState
    detail: str = ""  # the provider's own words for a failure


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """One request's result: its text (the JSON of a structured answer) and usage, or why it has none."""

    custom_id: str
    text: str = ""
    usage: Usage | None = None
    error: str = ""  # "" when answered
    finish: str | None = None


class BatchUnsupported(Exception):
    """The server has no batch endpoints (a self-hosted OpenAI-compatible server answers 404)."""


class BatchProvider(Protocol):
    """What a provider module offers for batches (llm/openai_provider.py, llm/anthropic_provider.py)."""

    async def submit_batch(self, entry: RouteEntry, lines: list[BatchLine], spec: StructuredSpec | None) -> str:
        """The batch id; BatchUnsupported when the server has no batch endpoints."""
        ...

    async def batch_status(self, batch_id: str) -> BatchStatus: ...

    async def batch_answers(self, batch_id: str) -> list[BatchAnswer]:
        """Every answered and errored request of an ended batch (expired ones included, as errors)."""
        ...

    async def cancel_batch(self, batch_id: str) -> None: ...

    def classify(self, exc: BaseException) -> ErrorInfo | None: ...


class BatchHost(Protocol):
    """What the runner uses of the router it is part of (llm/router.py): the routes and providers, the prices, the
    key-value space, the ledger, and the normal way of asking for what a batch cannot answer."""

    routes: dict[Task, Route]
    prices: PriceTable
    self_hosted: frozenset[str]

    @property
    def providers(self) -> dict[str, Provider]: ...

    @property
    def kv(self) -> ResponseCache | None: ...

    async def record(self, record: LedgerRecord) -> None: ...

    async def structured(self, task: Task, request: Request, schema: type[M], *, bill_to: Attribution) -> M: ...


class BatchRunner:
    """Structured calls for one task sent as one batch through the task's route (the first configured entry whose
    server takes batches), polled until done. Part of the router: it prices and records through it."""

    def __init__(
        self,
        router: BatchHost,
        *,
        poll_s: float = POLL_S,
        wait_s: float = BATCH_WAIT_S,
    ) -> None:
        self._router = router
        self.poll_s = poll_s
        self.wait_s = wait_s
        self._unsupported: dict[str, float] = {}  # server key → monotonic time to ask again

    async def structured(
        self,
        task: Task,
        requests: list[Request],
        schema: type[M],
        *,
        bill_to: Attribution,
        job: BatchJob | None = None,
    ) -> list[M]:
        """Validated answers in the order of ``requests``. Raises BatchFailed when the batch as a whole failed.
        With ``job``, a batch of the same requests the job left in flight (a replica died polling it) is polled
        instead of sending a new one."""
        if not requests:
            return []
        entry, provider = await self._entry(task)
        if entry is None or provider is None:
            return await self._one_by_one(task, requests, schema, bill_to)
        spec = spec_for(schema)
        lines = [BatchLine(f"r{i}", r) for i, r in enumerate(requests)]
        out: dict[str, M] = {}
        for start in range(0, len(lines), MAX_LINES):
            chunk = lines[start : start + MAX_LINES]
            note = _Note(job, f"{job.key}:{task.value}:{start}", entry, chunk, schema) if job else None
            try:
                done = await self._run(task, entry, provider, chunk, spec, schema, bill_to, note)
            except BatchUnsupported:
                await self._remember_unsupported(entry)
                log.info("%s has no batch endpoints: %s calls go the normal way", _server(entry, provider), task)
                return await self._one_by_one(task, requests, schema, bill_to)
            out.update(done)
        missing = [line for line in lines if line.custom_id not in out]
        if missing:  # errored or invalid inside a finished batch: asked again the normal way
            again = await self._one_by_one(task, [line.request for line in missing], schema, bill_to)
            out.update({line.custom_id: answer for line, answer in zip(missing, again, strict=True)})
        return [out[line.custom_id] for line in lines]

    async def _run(
        self,
        task: Task,
        entry: RouteEntry,
        provider: BatchProvider,
        lines: list[BatchLine],
        spec: StructuredSpec,
        schema: type[M],
        bill_to: Attribution,
        note: _Note | None = None,
    ) -> dict[str, M]:
        at = datetime.now(UTC)
        started = time.monotonic()
        resumed = await note.find() if note is not None else None
        if resumed is not None:
            batch_id, at = resumed
            started -= (datetime.now(UTC) - at).total_seconds()  # the wait counts from when it was sent
            log.info("resuming batch %s of %d %s request(s) sent at %s", batch_id, len(lines), task, at.isoformat())
        else:
            batch_id = await provider.submit_batch(entry, lines, spec)
            log.info("sent %d %s request(s) as batch %s to %s/%s", len(lines), task, batch_id, entry.provider,
                     entry.model)  # fmt: skip
            if note is not None:
                await note.write(batch_id, at, ttl_s=self.wait_s + POLL_S * 4)
        status = await self._status(provider, batch_id)
        while status.state == "running":
            if time.monotonic() - started > self.wait_s:
                await provider.cancel_batch(batch_id)
                if note is not None:
                    await note.clear()
                raise BatchFailed(f"batch {batch_id} was not done after {self.wait_s:.0f}s (cancelled)",
                                  batch_id=batch_id)  # fmt: skip
            await asyncio.sleep(self.poll_s)
            status = await self._status(provider, batch_id)
        answers = await provider.batch_answers(batch_id) if status.state != "failed" else []
        if note is not None:  # read (or failed for good): nobody should poll it again
            await note.clear()
        latency = time.monotonic() - started
        out: dict[str, M] = {}
        wanted = {line.custom_id for line in lines}
        for answer in answers:
            if answer.custom_id not in wanted:
                continue
            if answer.usage is not None:  # billed, answered or not
                ok = not answer.error and answer.finish != "length"
                await self._record(task, entry, bill_to, answer, at=at, latency_s=latency, ok=ok)
            if answer.error:
                continue
            try:
                out[answer.custom_id] = schema.model_validate_json(json_text(answer.text))
            except ValidationError:
                log.info("batch %s: answer %s did not match %s; asking again", batch_id, answer.custom_id,
                         schema.__name__)  # fmt: skip
        errors = [a.error for a in answers if a.error and a.custom_id in wanted]
        if status.state == "ended" and errors and len(errors) == len(lines):
            # Every request errored (Anthropic's way of failing a batch): asking each again would repeat it.
            status = BatchStatus("failed", f"every request errored ({errors[0][:160]})")
        if status.state != "ended":
            raise BatchFailed(f"batch {batch_id} {status.state}" + (f": {status.detail}" if status.detail else ""),
                              batch_id=batch_id)  # fmt: skip
        return out

    async def _status(self, provider: BatchProvider, batch_id: str) -> BatchStatus:
        """The batch's state; a poll the server refused for a while (429, 5xx, a lost connection) counts as
        "still running" — the batch goes on without us, and giving up on it would waste what it costs."""
        try:
            return await provider.batch_status(batch_id)
        except Exception as exc:
            info = provider.classify(exc)
            if info is None or not info.retryable:
                raise
            log.info("polling batch %s: %s; polling again", batch_id, info.kind)
            return BatchStatus("running")

    async def _one_by_one(
        self, task: Task, requests: list[Request], schema: type[M], bill_to: Attribution
    ) -> list[M]:
        return list(
            await asyncio.gather(*(self._router.structured(task, r, schema, bill_to=bill_to) for r in requests))
        )

    async def _entry(self, task: Task) -> tuple[RouteEntry | None, BatchProvider | None]:
        """The first entry of the task's route whose server takes batches (as far as is known)."""
        route = self._router.routes.get(task)
        providers = self._router.providers
        for entry in route.entries if route else ():
            provider = providers.get(entry.provider)
            if provider is None or not hasattr(provider, "submit_batch"):
                continue
            if not await self._unsupported_known(entry):
                return entry, provider  # type: ignore[return-value]  # checked by hasattr above
        return None, None

    def _key(self, entry: RouteEntry) -> str:
        provider = self._router.providers[entry.provider]
        return f"batch-unsupported:{entry.provider}:{getattr(provider, 'base_url', '')}"

    async def _unsupported_known(self, entry: RouteEntry) -> bool:
        key = self._key(entry)
        if self._unsupported.get(key, 0.0) > time.monotonic():
            return True
        cache = self._router.kv
        if cache is None:
            return False
        try:
            return await cache.get(key) is not None
        except Exception:  # the store is a memory aid here: asking the server again is harmless
            return False

    async def _remember_unsupported(self, entry: RouteEntry) -> None:
        key = self._key(entry)
        self._unsupported[key] = time.monotonic() + UNSUPPORTED_TTL_S
        if self._router.kv is not None:
            try:
                await self._router.kv.put(key, "1", ttl_s=UNSUPPORTED_TTL_S)
            except Exception:
                log.warning("could not remember that %s has no batch endpoints", key, exc_info=True)

    async def _record(
        self,
        task: Task,
        entry: RouteEntry,
        bill_to: Attribution,
        answer: BatchAnswer,
        *,
        at: datetime,
        latency_s: float,
        ok: bool,
    ) -> None:
        router = self._router
        usage = answer.usage or Usage()
        self_hosted = entry.provider in router.self_hosted
        quote = router.prices.quote(
            entry.model, usage, provider=entry.provider, self_hosted=self_hosted, at=at, context=BATCH_PRICE_CONTEXT
        )
        # List prices come from genai-prices' batch variant; a price file's price is taken as it is (it names one).
        source = f"{quote.source} ({BATCH_MARK})" if quote.source else ""
        record = ledger_record(
            task,
            entry,
            bill_to,
            at=at,
            usage=usage,
            cost_usd=quote.cost_usd,
            latency_s=latency_s,
            ttft_s=None,
            outcome=Outcome.OK if ok else Outcome.ERROR,
            error="" if ok else (answer.error or "cut short")[:200],
            saved_usd=quote.saved_usd,
            unpriced=quote.unpriced,
            self_hosted=self_hosted,
            price_source=source,
            truncated=answer.finish == "length",
        )
        await router.record(record)


class _Note:
    """One batch in flight, written down for its job: the batch id, which server and model it went to, when it was
    sent, and a digest of its requests (a batch is resumed only for the very same requests)."""

    def __init__(self, job: BatchJob, key: str, entry: RouteEntry, lines: list[BatchLine], schema: type) -> None:
        self._job = job
        self.key = f"batch-inflight:{key}"
        text = json.dumps(
            [entry.provider, entry.model, schema.__name__]
            + [[ln.custom_id, ln.request.system, [(m.role, m.content) for m in ln.request.messages],
                ln.request.prompt_version, ln.request.max_tokens] for ln in lines],  # fmt: skip
            ensure_ascii=False,
            default=str,
        )
        self._digest = hashlib.sha256(text.encode()).hexdigest()

    async def find(self) -> tuple[str, datetime] | None:
        """The batch this job left in flight for these requests, with when it was sent."""
        try:
            raw = await self._job.journal.get(self.key)
            data = json.loads(raw) if raw else None
        except Exception:  # the note is a saving, not a requirement: without it a new batch is sent
            log.warning("could not read the batch note %s", self.key, exc_info=True)
            return None
        if not isinstance(data, dict) or data.get("digest") != self._digest:
            return None  # none, or one for other requests (new questions came in meanwhile)
        return str(data["id"]), datetime.fromisoformat(data["at"])

    async def write(self, batch_id: str, at: datetime, *, ttl_s: float) -> None:
        value = json.dumps({"id": batch_id, "at": at.isoformat(), "digest": self._digest})
        try:
            await self._job.journal.put(self.key, value, ttl_s=ttl_s)
        except Exception:
            log.warning("could not note batch %s in flight: a restart would send it again", batch_id, exc_info=True)

    async def clear(self) -> None:
        try:
            await self._job.journal.delete(self.key)
        except Exception:  # it lapses by itself; a later run with other requests ignores it
            log.warning("could not clear the batch note %s", self.key, exc_info=True)


def is_batch(record: LedgerRecord) -> bool:
    """Whether a ledger record is a call made through a Batch API."""
    return record.price_source.endswith(f"({BATCH_MARK})")


def _server(entry: RouteEntry, provider: Any) -> str:
    return f"{entry.provider} at {getattr(provider, 'base_url', '') or 'its own API'}"
