"""The composition root: settings → store, model router, telemetry and assistant. Adapters receive an ``App``.

Only here (and in bot/cli.py, bot/doctor.py) are the concrete ModelRouter and the Prometheus telemetry built; the
use cases see them through their ports (llm.ports.LLM, bot.telemetry.Telemetry)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.assistant import Assistant
from bot.background import every
from bot.faq import FaqWriter
from bot.faq_schedule import FaqSchedule, PlatformFor
from bot.metrics import Metrics
from bot.orphans import OrphanJanitor
from bot.settings import Settings
from bot.stores import open_store
from bot.stores.base import Store
from llm import PriceTable, Timeouts, create_router
from llm.provider import SELF_HOSTED_FIRST_TOKEN_S
from llm.router import ModelRouter

log = logging.getLogger(__name__)
# The purge lock lapses a little before the next period, so a replica's slightly early timer still finds it free.
PURGE_LOCK_SHARE = 0.9


@dataclass
class App:
    settings: Settings
    store: Store
    llm: ModelRouter
    assistant: Assistant
    metrics: Metrics = field(default_factory=Metrics)  # the Telemetry the assistant reports to; /metrics shows it
    janitor: OrphanJanitor = field(init=False)  # adapters register their platforms with it (see bot/orphans.py)

    def __post_init__(self) -> None:
        self.janitor = OrphanJanitor(store=self.store, after_s=self.settings.orphan_after_s)

    async def maintain(self, stop: asyncio.Event) -> None:
        """The background upkeep of `supportbot run`, until ``stop``: finalise replies that dead replicas left
        half-done (at once — this may be a restart after a crash — then every orphan_sweep_s), and erase messages
        past retention_days every purge_every_s (one replica per period: the others find the lock taken)."""
        s = self.settings

        async def purge() -> None:
            if await self.store.locks.acquire("retention-purge", ttl_s=s.purge_every_s * PURGE_LOCK_SHARE):
                erased = await self.assistant.purge_expired()
                log.info("retention: erased %d message(s) and question(s) older than %d days", erased, s.retention_days)

        jobs = [
            every(s.orphan_sweep_s, self.janitor.sweep, stop, name="orphan sweep"),
            every(s.purge_every_s, purge, stop, name="retention purge"),
        ]
        if s.faq_refresh_days:
            janitor = self.janitor
            faq = self.faq_schedule(platform_for=lambda c: janitor.platform(c.platform, c.workspace))
            jobs.append(every(faq.check_every_s, faq.tick, stop, name="scheduled FAQ refresh"))
        await asyncio.gather(*jobs)

    def faq_schedule(self, *, platform_for: PlatformFor) -> FaqSchedule:
        """The scheduled FAQ refresh (settings ``faq_refresh_days``): its writing goes through the Batch APIs."""
        s = self.settings
        assert s.faq_refresh_days is not None
        writer = FaqWriter(
            llm=self.llm,
            store=self.store,
            max_entries=s.faq_max_entries,
            support_staff=frozenset(s.support_staff),
            batch=self.llm,
        )
        return FaqSchedule(
            writer=writer,
            store=self.store,
            every_days=s.faq_refresh_days,
            platform_for=platform_for,
            admin_channel=s.admin_channel,
        )

    async def close(self) -> None:
        await self.llm.close()
        await self.store.close()


async def build_app(settings: Settings, *, store: Store | None = None, metrics: Metrics | None = None) -> App:
    store = store or await open_store(redis_url=settings.secret("redis_url"), sqlite_path=settings.db)
    metrics = metrics or Metrics()
    router = create_router(
        openai_api_key=settings.secret("openai_api_key"),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=settings.secret("anthropic_api_key"),
        anthropic_base_url=settings.anthropic_base_url,
        routes=settings.model_routes(),
        prices=PriceTable.load(settings.prices_file),
        ledger=store.ledger,
        cache=store.kv,
        timeouts=Timeouts(
            connect_s=settings.connect_timeout_s,
            first_token_s=settings.first_token_timeout_s,
            idle_s=settings.idle_timeout_s,
            accept_s=settings.accept_timeout_s,
            self_hosted_first_token_s=SELF_HOSTED_FIRST_TOKEN_S,
        ),
        max_retries=settings.max_retries,
        anthropic_cache_ttl=settings.anthropic_cache_ttl,
        observers=[metrics.observe_call],
        base_url_is_provider=settings.base_url_is_provider,
        server_options=settings.server_options(),
    )
    metrics.watch_router(router)
    assistant = Assistant(settings=settings, store=store, llm=router, telemetry=metrics)
    router.on_model_missing = assistant.model_missing  # a retired model is reported to the admin channel
    return App(settings, store, router, assistant, metrics)
