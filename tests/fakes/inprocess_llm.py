"""A model provider inside the test process: no sockets, answers you ``enqueue``, under the real ModelRouter.

For unit tests of ``bot/`` (and the soak bench) that need a model but not the wire: the router's retries,
fallbacks, pricing and ledger all run as in production; only the provider's HTTP is replaced. Integration tests
use tests/fakes/llm_server.py with the real SDKs instead.

Usage::

    provider = InProcessProvider()
    provider.enqueue(["Summary: ", "the deploy failed."])           # the next call streams these chunks
    provider.enqueue([ProviderFailure.status(401)])                 # the one after fails before any text
    provider.enqueue(['{"entries": []}'])                           # structured answers are JSON text
    app = inprocess_app(settings, store, provider)                  # bot.app.App wired to it

Calls with nothing enqueued get ``default`` (one short sentence) or, with ``default=None``, fail loudly.
``provider.requests`` keeps the last ``keep_requests`` requests (bounded, so a soak does not grow with it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass

from bot.app import App
from bot.assistant import Assistant
from bot.metrics import Metrics
from bot.settings import Settings
from bot.stores.base import Store
from llm.models import PriceTable
from llm.provider import RETRYABLE_STATUS, Delta, ErrorInfo, StructuredSpec, status_kind
from llm.router import ModelRouter
from llm.routes import RouteEntry
from llm.servers import StructuredMode
from llm.tokens import count_tokens
from llm.types import Request, Usage

DEFAULT_ANSWER = ("Summary: ", "the thread asks how to deploy; ", "nobody has answered yet.")


class NothingEnqueued(Exception):
    """A call the test did not plan for (the provider was made with ``default=None``)."""


class ProviderFailure(Exception):
    """A provider error as the router sees it after ``classify`` (what an SDK exception would mean)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message or info.kind)
        self.info = info

    @classmethod
    def status(cls, code: int, *, retry_after_s: float | None = None) -> ProviderFailure:
        """An HTTP error answer; retryable as the real providers' are (llm/provider.py RETRYABLE_STATUS)."""
        kind = status_kind(code)
        return cls(ErrorInfo(kind, code in RETRYABLE_STATUS, retry_after_s, code, f"HTTP {code}"))


@dataclass(frozen=True, slots=True)
class _Answer:
    chunks: tuple[str | BaseException, ...]
    usage: Usage | None  # None: counted from the request and the text, as a provider reports it


@dataclass(frozen=True, slots=True)
class Received:
    entry: RouteEntry
    request: Request
    structured: StructuredSpec | None

    @property
    def user_text(self) -> str:
        return "\n".join(m.content for m in self.request.messages if m.role == "user")


class InProcessProvider:
    """llm.provider.Provider, answering from a queue."""

    base_url = ""  # the provider's own API, as far as the router can tell
    self_hosted = False
    default_structured_mode = StructuredMode.JSON_SCHEMA

    def __init__(
        self,
        *,
        name: str = "openai",
        default: Sequence[str] | None = DEFAULT_ANSWER,
        keep_requests: int = 100,
    ) -> None:
        self.name = name
        self.calls = 0
        self.requests: deque[Received] = deque(maxlen=keep_requests)
        self._queue: deque[_Answer] = deque()
        self._default = None if default is None else _Answer(tuple(default), None)

    def enqueue(self, chunks: Iterable[str | BaseException], *, usage: Usage | None = None) -> None:
        """The answer to the next call not yet answered: ``chunks`` streamed in order. An exception among them is
        raised at that point: first, the call fails before any text; later, the stream breaks mid-answer."""
        self._queue.append(_Answer(tuple(chunks), usage))

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def stream(
        self,
        entry: RouteEntry,
        request: Request,
        *,
        structured: StructuredSpec | None = None,
        streamed: bool = True,
    ) -> AsyncGenerator[Delta, None]:
        self.calls += 1
        self.requests.append(Received(entry, request, structured))
        if self._queue:
            answer = self._queue.popleft()
        elif self._default is not None:
            answer = self._default
        else:
            raise NothingEnqueued(f"call {self.calls} ({entry.model}) found nothing enqueued")
        yield Delta(accepted=True)  # as a server's response headers would
        text = ""
        for piece in answer.chunks:
            if isinstance(piece, BaseException):
                raise piece
            text += piece
            yield Delta(text=piece)
            await asyncio.sleep(0)  # the consumer runs between chunks, as it does between a real stream's events
        prompt = request.system + "".join(m.content for m in request.messages)
        usage = answer.usage or Usage(input=count_tokens(prompt), output=count_tokens(text))
        yield Delta(usage=usage, final_usage=True, finish="stop")

    async def context_window(self, entry: RouteEntry) -> int | None:
        return None  # the model table's figure applies

    async def list_models(self) -> list[str]:
        return []

    def classify(self, exc: BaseException) -> ErrorInfo | None:
        return exc.info if isinstance(exc, ProviderFailure) else None

    async def close(self) -> None:
        return None


async def _no_wait(_seconds: float) -> None:
    return None


def inprocess_router(
    settings: Settings, store: Store, provider: InProcessProvider, *, cache: bool = True
) -> ModelRouter:
    """The production router over ``provider``: routes and prices from ``settings``, ledger (and, with ``cache``,
    the response cache) in ``store``; retry backoff is not slept, so tests of failures stay fast."""
    return ModelRouter(
        providers={provider.name: provider},
        routes=settings.model_routes(),
        prices=PriceTable.load(settings.prices_file),
        ledger=store.ledger,
        cache=store.kv if cache else None,
        max_retries=settings.max_retries,
        sleep=_no_wait,
    )


def inprocess_app(
    settings: Settings, store: Store, provider: InProcessProvider, *, cache: bool = True
) -> App:
    """bot.app.App as build_app wires it, with ``provider`` in place of the real providers' SDK clients.
    ``settings`` must name the provider (e.g. ``openai_api_key="sk-inprocess"``) so its routes exist."""
    if provider.name not in settings.providers:
        raise ValueError(f"settings configure {settings.providers or 'no provider'}, not {provider.name!r}")
    metrics = Metrics()
    router = inprocess_router(settings, store, provider, cache=cache)
    metrics.watch_router(router)
    assistant = Assistant(settings=settings, store=store, llm=router, telemetry=metrics)
    return App(settings, store, router, assistant, metrics)
