"""The LLM port's implementation: picks the route for a task, owns the one retry loop, the timeouts, the fallback
to the next route entry, the response cache, and writes exactly one ledger record per provider call or cache hit
— failed and interrupted calls included.

Per server it also asks the way the server takes (llm/servers.py): the structured-output mode, an answer limit
that fits the context window, and no more calls at once than it bears — learning each from the server's refusals,
overflows and cut streams. A stream counts as an answer only when it ended with a finish reason and some text."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llm.batch import BatchJob, BatchRunner
from llm.models import PriceTable, capabilities
from llm.ports import LedgerSink, ResponseCache
from llm.provider import (
    DEFAULT_TIMEOUTS,
    FINISH_LENGTH,
    Delta,
    ErrorInfo,
    Provider,
    StructuredSpec,
    Timeouts,
)
from llm.routes import Route, RouteEntry
from llm.server_fit import DOWNGRADE_MODE, MIN_ANSWER_TOKENS, WHOLE, ServerFit
from llm.servers import DOWNGRADE, ConcurrencyGate, EntryOptions
from llm.structured import cache_key, json_text, spec_for
from llm.tokens import count_tokens
from llm.types import (
    Answer,
    Attribution,
    Chunk,
    LedgerRecord,
    LLMError,
    Message,
    ModelMissing,
    Outcome,
    Request,
    StructuredOutputError,
    Task,
    Usage,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# Backoff when the server names no delay: min(0.5·2^n, 8 s) minus up to 25 % jitter, as the SDKs do (FACTS.md).
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# A Retry-After longer than this is not worth waiting for inside a chat reply: fall back to the next entry.
MAX_RETRY_AFTER_S = 60.0
# A model that answered "not found" is skipped (when its route has another entry) for this long before it is
# tried again: a retired model stays retired, but a renamed deployment or a key given access recovers.
MISSING_MODEL_SKIP_S = 3600.0

USER_MESSAGES = {
    "rate_limited": "the model provider is rate-limiting the bot right now",
    "overloaded": "the model provider is overloaded right now",
    "auth": "the model provider refused the bot's API key (an admin needs to check it)",
    "timeout": "the model did not answer in time",
    "unconfigured": "no model is configured (set OPENAI_API_KEY or ANTHROPIC_API_KEY)",
    "model_not_found": "the configured model no longer exists (an admin needs to change the model route)",
    "interrupted": "the model's answer broke off before it finished",
    "empty": "the model returned no answer",
    "context_length_exceeded": "the conversation is too long for the model's context window",
}
# A server that cut or refused a request is asked again at once, without counting it as a retry, when the
# router changed how it asks (a lower concurrency limit, a weaker structured-output mode, a non-streamed probe).
# Each such change can only happen a few times per call, so this bounds them.
MAX_ADAPTATIONS = 6


class _Ended(Exception):
    """A stream that ended without error but not as a finished answer (no finish reason, or nothing at all)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class _StreamTimeout(Exception):
    def __init__(self, first_token: bool, accepted: bool = True) -> None:
        what = "stream went silent" if not first_token else "no first token in time" if accepted else (
            "the server did not accept the request in time"
        )
        super().__init__(what)
        self.info = ErrorInfo("timeout", retryable=not first_token, message=str(self))


class _Watchdog:
    """Cancels the streaming task when it has waited on the provider past ``deadline``.

    Only a wait *inside* the provider stream counts (``waiting``); time the caller spends between chunks does not.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], deadline: float, idle_s: float):
        self.deadline = deadline
        self.waiting = False
        self.fired = False
        self._loop = loop
        self._task = task
        self._idle_s = idle_s
        self._handle = loop.call_at(deadline, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now < self.deadline:
            self._handle = self._loop.call_at(self.deadline, self._check)
        elif self.waiting:
            self.fired = True
            self._task.cancel()
        else:  # the caller is busy with a chunk; the deadline moves on when it asks for the next one
            self._handle = self._loop.call_at(now + self._idle_s, self._check)

    def move_to(self, deadline: float) -> None:
        """A new deadline; an earlier one than the timer's needs the timer moved too."""
        if deadline < self.deadline:
            self._handle.cancel()
            self._handle = self._loop.call_at(deadline, self._check)
        self.deadline = deadline

    def stop(self) -> None:
        self._handle.cancel()


@dataclass
class _Call:
    """What one attempt against one route entry produced so far."""

    entry: RouteEntry
    started: float = field(default_factory=time.monotonic)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ttft: float | None = None
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    final_usage: bool = False
    finish: str | None = None
    siblings: int = 0  # most other calls to the same server seen in flight during this one

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ModelRouter:
    def __init__(
        self,
        *,
        providers: dict[str, Provider],
        routes: dict[Task, Route],
        prices: PriceTable,
        ledger: LedgerSink,
        cache: ResponseCache | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_retries: int = 2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observers: list[Callable[[LedgerRecord], None]] | None = None,
        self_hosted: frozenset[str] = frozenset(),
        on_model_missing: Callable[[ModelMissing, Attribution], Awaitable[None]] | None = None,
        options: dict[str, EntryOptions] | None = None,
    ) -> None:
        self._providers = providers
        # Providers whose base URL is not the provider's own: priced only by the user's price file.
        self.self_hosted = self_hosted
        # Told (once per "not found" answer) so an admin can change the route; bot/ claims it once a day.
        self.on_model_missing = on_model_missing
        self._missing: dict[tuple[str, str], float] = {}  # (provider, model) → monotonic time to try it again
        self.routes = routes
        self.prices = prices
        self._ledger = ledger
        self._cache = cache
        self._timeouts = timeouts
        self._max_retries = max_retries
        self._sleep = sleep
        self._observers = observers or []
        self.unrecorded = 0  # ledger writes that raised (the store buffers; this counts what it could not)
        # The way each server takes calls: set per entry, or learned and remembered (llm/server_fit.py).
        self.fit = ServerFit(providers=providers, options=options or {}, kv=cache)
        self.servers = self.fit.memory
        self.batches = BatchRunner(self)  # calls nobody waits for, at the batch price (llm/batch.py)

    # ---- the LLM port -------------------------------------------------------------------------------------

    def stream(self, task: Task, request: Request, *, bill_to: Attribution) -> AsyncGenerator[Chunk, None]:
        """Text chunks as the model writes them, then one final chunk with the usage and no text. A caller that
        stops early should ``aclose()`` it (or use ``contextlib.aclosing``) so the call is recorded at once."""
        return self._run(task, request, bill_to, structured=None, cacheable=None)

    async def complete(self, task: Task, request: Request, *, bill_to: Attribution) -> str:
        return (await self.answer(task, request, bill_to=bill_to)).text

    async def answer(self, task: Task, request: Request, *, bill_to: Attribution) -> Answer:
        """The whole answer of a call nobody watches arrive: unlike ``stream``, a cut answer is asked again."""
        parts: list[str] = []
        truncated = False
        async for c in self._run(task, request, bill_to, structured=None, cacheable=None, visible=False):
            parts.append(c.text)
            truncated = truncated or c.truncated
        return Answer("".join(parts), truncated)

    async def structured(self, task: Task, request: Request, schema: type[M], *, bill_to: Attribution) -> M:
        """A validated instance of ``schema``; one repair attempt on invalid output, then StructuredOutputError."""
        spec = spec_for(schema)

        def valid(text: str) -> bool:
            try:
                schema.model_validate_json(json_text(text))
                return True
            except ValidationError:
                return False

        text = await self._collect(task, request, bill_to, spec, valid)
        try:
            return schema.model_validate_json(json_text(text))
        except ValidationError as first:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in first.errors()[:10])
            last = request.messages[-1]
            note = (
                f"\n\nYour previous answer did not match the required structure ({problems}). "
                f"Previous answer:\n{text[:4000]}\nAnswer again, following the structure exactly."
            )
            repair = Request(
                request.system,
                request.messages[:-1] + (Message(last.role, last.content + note),),
                prompt_version=request.prompt_version,
                max_tokens=request.max_tokens,
            )
            text = await self._collect(task, repair, bill_to, spec, valid)
            try:
                return schema.model_validate_json(json_text(text))
            except ValidationError as second:
                raise StructuredOutputError(
                    f"the model's answer did not match {schema.__name__} after a repair attempt: "
                    f"{second.error_count()} problem(s)",
                    kind="invalid_output",
                ) from second

    async def structured_batch(
        self,
        task: Task,
        requests: list[Request],
        schema: type[M],
        *,
        bill_to: Attribution,
        job: BatchJob | None = None,
    ) -> list[M]:
        """Validated answers to ``requests``, sent through the provider's Batch API at the batch price (nobody is
        waiting: a scheduled job). A server without batch endpoints is asked the normal way (remembered);
        ``llm.batch.BatchFailed`` when a batch failed or expired as a whole. ``job``: batches in flight are noted
        there, and resumed by whoever runs the job next (see llm/batch.py)."""
        return await self.batches.structured(task, requests, schema, bill_to=bill_to, job=job)

    @property
    def providers(self) -> dict[str, Provider]:
        return self._providers

    @property
    def kv(self) -> ResponseCache | None:
        """Where what is learned about servers is remembered (the store's key-value space)."""
        return self._cache

    async def record(self, record: LedgerRecord) -> None:
        """Write a ledger record made outside the streaming path (batch calls)."""
        await self._write(record)

    def input_budget(self, task: Task) -> int:
        """Prompt tokens every model of the task's route can take by the built-in table: window minus answer."""
        route = self.routes.get(task)
        entries = route.entries if route else ()
        return min((capabilities(e.model).context_window - e.max_tokens for e in entries), default=8_000)

    async def context_budget(self, task: Task) -> int:
        """Prompt tokens every configured model of the task's route can take, with what the servers report and
        what was learned from their overflows (``context_window``), minus the answer."""
        route = self.routes.get(task)
        budgets = [
            await self.context_window(e) - e.max_tokens
            for e in (route.entries if route else ())
            if e.provider in self._providers
        ]
        return max(MIN_ANSWER_TOKENS, min(budgets, default=8_000))

    async def context_window(self, entry: RouteEntry) -> int:
        return await self.fit.context_window(entry)

    # ---- internals ----------------------------------------------------------------------------------------

    async def _collect(
        self,
        task: Task,
        request: Request,
        bill_to: Attribution,
        structured: StructuredSpec | None,
        cacheable: Callable[[str], bool] | None,
    ) -> str:
        parts = [
            c.text
            async for c in self._run(
                task, request, bill_to, structured=structured, cacheable=cacheable, visible=False
            )
        ]
        return "".join(parts)

    async def _run(
        self,
        task: Task,
        request: Request,
        bill_to: Attribution,
        *,
        structured: StructuredSpec | None,
        cacheable: Callable[[str], bool] | None,
        visible: bool = True,
    ) -> AsyncGenerator[Chunk, None]:
        """Chunks of one answer. ``visible``: the caller shows text as it arrives, so text is yielded at once and a
        call that broke after text is never asked again behind the user's back; otherwise the text is yielded
        only once the answer is complete, and a broken answer is asked again."""
        route = self.routes.get(task)
        if route is None or not any(e.provider in self._providers for e in route.entries):
            raise LLMError(USER_MESSAGES["unconfigured"], kind="unconfigured")
        key = None
        if self._cache is not None and route.cache_ttl_s > 0:
            key = cache_key(route, request, scope=bill_to.scope, structured=structured)
            hit = await self._cache_get(key)
            if hit is not None:
                text, entry, saved, truncated = hit
                await self._record_hit(task, entry, bill_to, saved)
                yield Chunk(text=text)
                yield Chunk(usage=Usage(), truncated=truncated)
                return

        last: ErrorInfo | None = None
        usable = [e for e in route.entries if e.provider in self._providers]
        for n, entry in enumerate(usable):
            provider = self._providers[entry.provider]
            if n < len(usable) - 1 and self._missing.get((entry.provider, entry.model), 0.0) > time.monotonic():
                continue  # answered "not found" recently; the next entry serves until it is tried again
            spec = await self.fit.spec(structured, entry, provider)
            sized = await self.fit.fit_answer(request, entry)
            timeouts = self.fit.timeouts(entry, provider, self._timeouts)
            attempt = adaptations = 0
            streamed, downgraded = True, False
            while True:
                gate = await self.fit.gate(entry, provider)
                async with gate:
                    call = _Call(entry)
                    try:
                        deltas = self._timed(
                            provider.stream(entry, sized, structured=spec, streamed=streamed), call, timeouts, gate
                        )
                        async with aclosing(deltas):
                            async for delta in deltas:
                                if delta.usage is not None:
                                    call.usage, call.final_usage = delta.usage, delta.final_usage
                                if delta.finish is not None:
                                    call.finish = delta.finish
                                if delta.text:
                                    if call.ttft is None:
                                        call.ttft = time.monotonic() - call.started
                                    call.parts.append(delta.text)
                                    if visible:
                                        yield Chunk(text=delta.text)
                        if call.finish is None or not call.parts:
                            raise _Ended(_ending(call))
                    except (asyncio.CancelledError, GeneratorExit):
                        # The caller went away (user cancelled, reply abandoned): the call still cost money.
                        await self._record(task, sized, bill_to, call, _outcome_of(call), "cancelled")
                        raise
                    except Exception as exc:
                        info = exc.info if isinstance(exc, (_StreamTimeout, _Ended)) else provider.classify(exc)
                        if info is None:
                            await self._record(task, sized, bill_to, call, _outcome_of(call), repr(exc)[:200])
                            raise
                        # A stream that ended unfinished (even empty) is interrupted: the server took the request.
                        outcome = Outcome.INTERRUPTED if isinstance(exc, _Ended) else _outcome_of(call)
                        await self._record(task, sized, bill_to, call, outcome, f"{info.kind}: {info.message}")
                        adapted = await self.fit.adapt(
                            info, entry=entry, provider=provider, gate=gate, siblings=call.siblings,
                            had_text=bool(call.parts), spec=spec, streamed=streamed,
                        )
                        if adapted and adaptations < MAX_ADAPTATIONS and not (call.parts and visible):
                            adaptations += 1
                            if adapted == DOWNGRADE_MODE:
                                assert spec is not None
                                spec = replace(spec, mode=DOWNGRADE[spec.mode] or spec.mode)
                                downgraded = True
                            elif adapted == WHOLE:
                                streamed = False
                            log.info("asking %s/%s again: %s after %s", entry.provider, entry.model, adapted,
                                     info.kind)
                            continue
                        if info.kind == "context_length_exceeded":
                            await self.fit.learn_overflow(entry, provider, sized, info)
                        if call.parts and visible:
                            # Text is already visible to the user: retrying would repeat it. Keep what arrived.
                            raise LLMError(_user_message(info), kind=info.kind, partial_text=call.text) from exc
                        last = info
                        if info.kind == "model_not_found":
                            await self._model_missing(task, entry, usable[n + 1 :], info, bill_to)
                        delay = self._retry_delay(info, attempt)
                        if delay is None:
                            break  # not retryable here: fall back to the next route entry
                        log.info(
                            "retrying %s/%s in %.2fs after %s", entry.provider, entry.model, delay, info.kind
                        )
                        attempt += 1
                        await self._sleep(delay)
                        continue
                    truncated = call.finish == FINISH_LENGTH
                    record = await self._record(task, sized, bill_to, call, Outcome.OK, truncated=truncated)
                if downgraded and spec is not None:  # the weaker mode answered where the stronger was refused
                    await self.fit.remember_mode(entry, provider, spec)
                if key is not None and (cacheable is None or cacheable(call.text)):
                    await self._cache_put(key, route.cache_ttl_s, call.text, entry, record.cost_usd, truncated)
                if not visible:
                    yield Chunk(text=call.text)
                yield Chunk(usage=record.usage, truncated=truncated)
                return
        info = last or ErrorInfo("unavailable", False)
        raise LLMError(_user_message(info), kind=info.kind)

    async def _timed(
        self, deltas: AsyncGenerator[Delta, None], call: _Call, timeouts: Timeouts, gate: ConcurrencyGate
    ) -> AsyncGenerator[Delta, None]:
        """Accept, first-token and idle timeouts around a provider stream — never a whole-request cap.

        The first-token clock starts when the server accepted the work (its response headers arrived), so time a
        busy server queues the request before answering counts against ``accept_s`` instead. One watchdog timer
        per call instead of a timeout context per chunk: a chunk only moves the deadline."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        watch = _Watchdog(loop, task, loop.time() + timeouts.accept_s, timeouts.idle_s)
        accepted = False
        try:
            async with aclosing(deltas):
                it = aiter(deltas)
                while True:
                    watch.waiting = True
                    call.siblings = max(call.siblings, gate.active - 1)
                    try:
                        delta = await anext(it)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        if not watch.fired:
                            raise
                        task.uncancel()
                        raise _StreamTimeout(first_token=not call.parts, accepted=accepted) from None
                    finally:
                        watch.waiting = False
                    call.siblings = max(call.siblings, gate.active - 1)
                    if delta.accepted and not accepted:
                        accepted = True
                        watch.move_to(loop.time() + timeouts.first_token_s)
                    yield delta
                    # Until text arrives the first-token deadline stands (usage-only events don't move it).
                    if call.parts:
                        watch.move_to(loop.time() + timeouts.idle_s)
        finally:
            watch.stop()

    def _retry_delay(self, info: ErrorInfo, attempt: int) -> float | None:
        if not info.retryable or attempt >= self._max_retries:
            return None
        if info.retry_after_s is not None:
            return info.retry_after_s if info.retry_after_s <= MAX_RETRY_AFTER_S else None
        return min(BACKOFF_BASE_S * 2**attempt, BACKOFF_CAP_S) * (1 - 0.25 * random.random())

    async def _model_missing(
        self, task: Task, entry: RouteEntry, rest: list[RouteEntry], info: ErrorInfo, bill_to: Attribution
    ) -> None:
        self._missing[(entry.provider, entry.model)] = time.monotonic() + MISSING_MODEL_SKIP_S
        fallback = f"{rest[0].provider}:{rest[0].model}" if rest else None
        log.warning("%s model %s answered not found (%s); falling back to %s",
                    entry.provider, entry.model, info.message, fallback or "nothing")  # fmt: skip
        if self.on_model_missing is None:
            return
        notice = ModelMissing(entry.provider, entry.model, task.value, fallback, info.message)
        try:
            await self.on_model_missing(notice, bill_to)
        except Exception:  # telling the admin must never cost the user the fallback's answer
            log.exception("could not report the missing model %s/%s", entry.provider, entry.model)

    def _usage_of(self, call: _Call, request: Request, outcome: Outcome) -> Usage:
        if call.usage is not None and call.final_usage:
            return call.usage
        if outcome is Outcome.ERROR and call.usage is None:
            # Refused before the model ran (429, 5xx, auth, timeout before any byte): nothing was billed.
            return Usage()
        # The provider's count is missing or incomplete (cut stream, server without usage): estimate, flagged.
        partial = call.usage
        prompt = (
            partial.total_input
            if partial
            else count_tokens(request.system + "".join(m.content for m in request.messages))
        )
        return Usage(
            input=partial.input if partial else prompt,
            output=count_tokens(call.text),
            cache_read=partial.cache_read if partial else 0,
            cache_write_5m=partial.cache_write_5m if partial else 0,
            cache_write_1h=partial.cache_write_1h if partial else 0,
            estimated=True,
        )

    async def _record(
        self,
        task: Task,
        request: Request,
        bill_to: Attribution,
        call: _Call,
        outcome: Outcome,
        error: str = "",
        *,
        truncated: bool = False,
    ) -> LedgerRecord:
        usage = self._usage_of(call, request, outcome)
        entry = call.entry
        self_hosted = entry.provider in self.self_hosted
        billed = usage.total_input + usage.output > 0
        quote = self.prices.quote(
            entry.model, usage, provider=entry.provider, self_hosted=self_hosted, at=call.at
        )
        record = _ledger_record(
            task,
            entry,
            bill_to,
            at=call.at,
            usage=usage,
            cost_usd=quote.cost_usd,
            latency_s=time.monotonic() - call.started,
            ttft_s=call.ttft,
            outcome=outcome,
            error=error,
            saved_usd=quote.saved_usd,
            unpriced=quote.unpriced and billed,  # a call refused before the model ran cost nothing anyway
            self_hosted=self_hosted,
            price_source=quote.source if billed else "",
            truncated=truncated,
        )
        await self._write(record)
        return record

    async def _record_hit(self, task: Task, entry: RouteEntry, bill_to: Attribution, saved: Decimal) -> None:
        await self._write(
            _ledger_record(
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

    async def _write(self, record: LedgerRecord) -> None:
        for observe in self._observers:
            observe(record)
        try:
            await self._ledger.add(record)
        except Exception:
            self.unrecorded += 1
            log.exception("ledger write failed for a %s call to %s", record.task, record.model)

    async def _cache_get(self, key: str) -> tuple[str, RouteEntry, Decimal, bool] | None:
        assert self._cache is not None
        try:
            raw = await self._cache.get(key)
            if raw is None:
                return None
            data = json.loads(raw)
            entry = RouteEntry(data["provider"], data["model"], 0)
            return data["text"], entry, Decimal(data["cost"]), bool(data.get("truncated"))
        except Exception:
            log.warning("response cache read failed; calling the model", exc_info=True)
            return None

    async def _cache_put(
        self, key: str, ttl_s: float, text: str, entry: RouteEntry, cost: Decimal, truncated: bool
    ) -> None:
        assert self._cache is not None
        value = json.dumps(
            {"text": text, "provider": entry.provider, "model": entry.model, "cost": str(cost),
             "truncated": truncated}
        )
        try:
            await self._cache.put(key, value, ttl_s=ttl_s)
        except Exception:
            log.warning("response cache write failed", exc_info=True)

    async def models_offered(self, provider: str) -> list[str]:
        """What ``provider``'s server lists (raises the SDK's error when it cannot say)."""
        return await self._providers[provider].list_models()

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()


def _ledger_record(task: Task, entry: RouteEntry, bill_to: Attribution, **fields: Any) -> LedgerRecord:
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


def _outcome_of(call: _Call) -> Outcome:
    return Outcome.INTERRUPTED if call.parts else Outcome.ERROR


def _ending(call: _Call) -> ErrorInfo:
    """What a stream that ended without an error but without a finished answer means."""
    if not call.parts:
        # Nothing at all (llama.cpp streams back nothing for a prompt past its context).
        return ErrorInfo("empty", True, message="the stream ended with no answer")
    # Text, then a normal end without a finish reason: the server stopped generating (llama.cpp does when the
    # next request arrives). Never an answer to keep, cache or record as ok.
    return ErrorInfo("interrupted", True, message="the stream ended without a finish reason")


def _user_message(info: ErrorInfo) -> str:
    return USER_MESSAGES.get(info.kind, f"the model provider failed ({info.kind})")
