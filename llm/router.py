"""The LLM port's implementation: picks the route for a task, runs the one retry loop, falls back to the next
route entry, serves and fills the response cache, and writes exactly one ledger record per provider call or cache
hit — failed and interrupted calls included.

Per server it also asks the way the server takes (llm/servers.py): the structured-output mode, an answer limit
that fits the context window, and no more calls at once than it bears — learning each from the server's refusals,
overflows and cut streams. A stream counts as an answer only when it ended with a finish reason and some text.

Its parts, one idea each: llm/retries.py (when to ask again, what the user is told), llm/stream_timeouts.py (accept,
first-token and idle timeouts), llm/attempt.py (what one try produced), llm/ledger.py (the ledger records),
llm/cached_answers.py (the response cache), llm/server_fit.py (each server's way) and llm/batch.py (calls nobody
waits for, through the Batch APIs)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from llm.attempt import Attempt, Ended
from llm.batch import BatchJob, BatchRunner
from llm.cached_answers import CachedAnswer, CachedAnswers
from llm.ledger import CallLedger
from llm.models import PriceTable, capabilities
from llm.ports import LedgerSink, ResponseCache
from llm.provider import DEFAULT_TIMEOUTS, FINISH_LENGTH, ErrorInfo, Provider, StructuredSpec, Timeouts
from llm.retries import USER_MESSAGES, MissingModels, retry_delay, user_message
from llm.routes import Route, RouteEntry
from llm.server_fit import DOWNGRADE_MODE, MIN_ANSWER_TOKENS, WHOLE, ServerFit
from llm.servers import DOWNGRADE, EntryOptions
from llm.stream_timeouts import StreamTimeout, timed
from llm.structured import cache_key, json_text, repair_request, spec_for
from llm.types import (
    Answer,
    Attribution,
    Chunk,
    LedgerRecord,
    LLMError,
    ModelMissing,
    Outcome,
    Request,
    StructuredOutputError,
    Task,
    Usage,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# A server that cut or refused a request is asked again at once, without counting it as a retry, when the
# router changed how it asks (a lower concurrency limit, a weaker structured-output mode, a non-streamed probe).
# Each such change can only happen a few times per call, so this bounds them.
MAX_ADAPTATIONS = 6


class ModelRouter:
    """The one production ``llm.ports.LLM`` (and ``BatchLLM``); only the composition root builds it."""

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
        self._missing = MissingModels()
        self.routes = routes
        self.prices = prices
        self._cache = cache
        self._answers = CachedAnswers(cache) if cache is not None else None
        self._timeouts = timeouts
        self._max_retries = max_retries
        self._sleep = sleep  # between retries (a test hook: tests see the delays without waiting them out)
        self._observers = observers if observers is not None else []  # told every ledger record (metrics)
        self._ledger = CallLedger(sink=ledger, prices=prices, self_hosted=self_hosted, observers=self._observers)
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
            text = await self._collect(task, repair_request(request, text, first), bill_to, spec, valid)
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

    @property
    def unrecorded(self) -> int:
        """Ledger writes that raised (the store buffers; this counts what it could not): a metric."""
        return self._ledger.unrecorded

    @unrecorded.setter
    def unrecorded(self, count: int) -> None:
        self._ledger.unrecorded = count

    async def record(self, record: LedgerRecord) -> None:
        """Write a ledger record made outside the streaming path (batch calls)."""
        await self._ledger.write(record)

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
        if self._answers is not None and route.cache_ttl_s > 0:
            key = cache_key(route, request, scope=bill_to.scope, structured=structured)
            hit = await self._answers.get(key)
            if hit is not None:
                await self._ledger.cache_hit(task, hit.entry, bill_to, hit.cost_usd)
                yield Chunk(text=hit.text)
                yield Chunk(usage=Usage(), truncated=hit.truncated)
                return

        last: ErrorInfo | None = None
        usable = [e for e in route.entries if e.provider in self._providers]
        for n, entry in enumerate(usable):
            provider = self._providers[entry.provider]
            if n < len(usable) - 1 and self._missing.skipped(entry):
                continue  # answered "not found" recently; the next entry serves until it is tried again
            spec = await self.fit.spec(structured, entry, provider)
            sized = await self.fit.fit_answer(request, entry)
            timeouts = self.fit.timeouts(entry, provider, self._timeouts)
            retries = adaptations = 0
            streamed, downgraded = True, False
            while True:
                gate = await self.fit.gate(entry, provider)
                async with gate:
                    call = Attempt(entry)
                    try:
                        deltas = timed(
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
                        if not call.answered:
                            raise Ended(call.ending())
                    except (asyncio.CancelledError, GeneratorExit):
                        # The caller went away (user cancelled, reply abandoned): the call still cost money.
                        await self._ledger.attempt(task, sized, bill_to, call, call.failed_outcome, "cancelled")
                        raise
                    except Exception as exc:
                        info = exc.info if isinstance(exc, (StreamTimeout, Ended)) else provider.classify(exc)
                        if info is None:  # not a failure the provider knows: record it, and let it surface
                            error = repr(exc)[:200]
                            await self._ledger.attempt(task, sized, bill_to, call, call.failed_outcome, error)
                            raise
                        # A stream that ended unfinished (even empty) is interrupted: the server took the request.
                        outcome = Outcome.INTERRUPTED if isinstance(exc, Ended) else call.failed_outcome
                        error = f"{info.kind}: {info.message}"
                        await self._ledger.attempt(task, sized, bill_to, call, outcome, error)
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
                            raise LLMError(user_message(info), kind=info.kind, partial_text=call.text) from exc
                        last = info
                        if info.kind == "model_not_found":
                            await self._model_missing(task, entry, usable[n + 1 :], info, bill_to)
                        delay = retry_delay(info, retries, max_retries=self._max_retries)
                        if delay is None:
                            break  # not retryable here: fall back to the next route entry
                        log.info(
                            "retrying %s/%s in %.2fs after %s", entry.provider, entry.model, delay, info.kind
                        )
                        retries += 1
                        await self._sleep(delay)
                        continue
                    truncated = call.finish == FINISH_LENGTH
                    record = await self._ledger.attempt(task, sized, bill_to, call, Outcome.OK, truncated=truncated)
                if downgraded and spec is not None:  # the weaker mode answered where the stronger was refused
                    await self.fit.remember_mode(entry, provider, spec)
                if key is not None and self._answers is not None and (cacheable is None or cacheable(call.text)):
                    answer = CachedAnswer(call.text, entry, record.cost_usd, truncated)
                    await self._answers.put(key, answer, ttl_s=route.cache_ttl_s)
                if not visible:
                    yield Chunk(text=call.text)
                yield Chunk(usage=record.usage, truncated=truncated)
                return
        info = last or ErrorInfo("unavailable", False)
        raise LLMError(user_message(info), kind=info.kind)

    async def _model_missing(
        self, task: Task, entry: RouteEntry, rest: list[RouteEntry], info: ErrorInfo, bill_to: Attribution
    ) -> None:
        self._missing.mark(entry)
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

    async def models_offered(self, provider: str) -> list[str]:
        """What ``provider``'s server lists (raises the SDK's error when it cannot say)."""
        return await self._providers[provider].list_models()

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
