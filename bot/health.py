"""/healthz, /readyz and /metrics over HTTP (aiohttp), for probes and Prometheus; started by `supportbot run`
when a metrics port is set."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.metrics import Metrics
from bot.settings import Settings

# kubelet probes time out after timeoutSeconds (1 s by default; 3 s in deploy/k8s): answer before that.
STORE_PING_TIMEOUT_S = 2.0
NO_PROVIDER = "no model provider configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"


class Pingable(Protocol):
    async def ping(self) -> None: ...  # bot.stores.base.Store has it


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...] = ()


async def check_ready(
    *, store: Pingable, settings: Settings, redact: Callable[[str], str] = lambda s: s
) -> Readiness:
    """Ready when the store answers a ping and at least one model provider is configured."""
    reasons = []
    if not settings.providers:
        reasons.append(NO_PROVIDER)
    try:
        async with asyncio.timeout(STORE_PING_TIMEOUT_S):
            await store.ping()
    except Exception as exc:
        detail = redact(str(exc))[:200]
        reasons.append(f"store ping failed: {type(exc).__name__}" + (f": {detail}" if detail else ""))
    return Readiness(not reasons, tuple(reasons))


def health_app(*, metrics: Metrics, ready: Callable[[], Awaitable[Readiness]]) -> web.Application:
    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        # Alive means the event loop answers; dependencies belong to /readyz (a Redis outage must not make
        # Kubernetes restart every replica).
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        state = await ready()
        body = {"status": "ready" if state.ready else "not ready", "reasons": list(state.reasons)}
        return web.json_response(body, status=200 if state.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_health(
    *, metrics: Metrics, ready: Callable[[], Awaitable[Readiness]], host: str, port: int
) -> web.AppRunner:
    """Start /metrics, /healthz and /readyz; the caller cleans the runner up. ``port`` 0 picks a free one
    (``runner.addresses`` tells which)."""
    runner = web.AppRunner(health_app(metrics=metrics, ready=ready), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
