"""The scheduled FAQ refresh (setting ``faq_refresh_days``): every channel whose FAQ is kept as a document is
refreshed that often, with its sorting and writing sent through the providers' Batch APIs at half the price —
nobody is waiting for it. One replica does each refresh: the first to claim it in the store; the channel's /faq lock
keeps it from running beside a /faq someone typed.

A failed refresh (a batch that failed or expired, a provider down) changes nothing people see: the FAQ document
stays as it was, what the run paid for is kept (bot/faq.py), the admin channel is told, and the refresh is
tried again ``RETRY_AFTER_S`` later by whichever replica comes first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot import faq_publish
from bot.faq import FaqBusy, FaqWriter
from bot.faq_doc import FaqState, faq_channels
from bot.ports import ChatPlatform, DocumentPublisher
from bot.safety import defang_mass_mentions
from bot.stores.base import Store
from bot.types import ChannelRef
from llm.types import Attribution, BatchFailed, LLMError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 15 * 60.0  # how often each replica looks for a channel due (a refresh waits at most this long)
RETRY_AFTER_S = 3600.0  # a failed refresh is tried again after this (the claim on it lapses)
SCHEDULER = "scheduled"  # the user a scheduled refresh is billed to (feature "faq")

PlatformFor = Callable[[ChannelRef], ChatPlatform | None]


class FaqSchedule:
    def __init__(
        self,
        *,
        writer: FaqWriter,
        store: Store,
        every_days: float,
        platform_for: PlatformFor,
        admin_channel: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._writer = writer
        self.clock = clock  # when "now" is (a test moves it on)
        self._store = store
        self._every = timedelta(days=every_days)
        self._platform_for = platform_for
        self._admin_channel = admin_channel
        self.check_every_s = CHECK_EVERY_S

    @property
    def clock(self) -> Callable[[], datetime]:
        return self._writer.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self._writer.clock = clock  # the runs' leases are timed by the same clock as what is due

    def due(self, state: FaqState, now: datetime) -> bool:
        """A refresh is due a period after the last run (scheduled or typed) finished."""
        last = state.refreshed_at or (state.result.made_at if state.result else "")
        if not last:
            return True
        return now - datetime.fromisoformat(last) >= self._every

    async def tick(self) -> int:
        """Refresh every channel that is due and that this process can publish to; returns how many it refreshed."""
        refreshed = 0
        now = self.clock()
        attempt = int(now.timestamp() // RETRY_AFTER_S)
        for channel, days in (await faq_channels(self._store)).items():
            state = await self._writer.state(channel)
            if not state.document.get("place") or not self.due(state, now):
                continue  # only a kept document is refreshed: a FAQ posted as a message is not re-posted weekly
            platform = self._platform_for(channel)
            if not isinstance(platform, DocumentPublisher):
                continue  # served by another kind of process (its scheduler does it), or one that cannot publish
            # A refresh whose replica died waiting for its batches (a crash, a restart) is taken over at once, by
            # one replica: it frees the dead run's lock and polls the batches that run left in flight.
            dead = await self._writer.dead_run(channel)
            if dead is not None:
                if not await self._store.claims.claim(f"faq-takeover:{channel.key}:{dead}", ttl_s=RETRY_AFTER_S * 2):
                    continue
                log.info("scheduled FAQ refresh of %s: taking over a run that stopped (its batches are resumed)",
                         channel.key)  # fmt: skip
                await self._writer.take_over(channel, dead)
            # One replica per refresh, one attempt per RETRY_AFTER_S: the claim names the run it follows and the
            # period it is tried in, so a failed refresh is tried again in the next period.
            elif not await self._store.claims.claim(
                f"faq-refresh:{channel.key}:{state.refreshed_at}:{attempt}", ttl_s=RETRY_AFTER_S * 2
            ):
                continue
            if await self.refresh(channel, days, platform):
                refreshed += 1
        return refreshed

    async def refresh(self, channel: ChannelRef, days: int, platform: ChatPlatform) -> bool:
        bill_to = Attribution(channel.platform, channel.workspace, channel.channel, SCHEDULER, "faq")
        try:
            result = await self._writer.run(
                channel,
                days=days,
                bill_to=bill_to,
                progress=lambda _: None,
                link_for=faq_publish.link_for(platform),
                publish=faq_publish.publisher(platform, channel),
            )
        except FaqBusy:
            log.info("scheduled FAQ refresh of %s: a /faq run is under way; it refreshes the FAQ itself", channel.key)
            return False
        except BatchFailed as exc:
            await self._tell_admins(channel, platform, f"a batch of model calls did not complete ({exc})")
            return False
        except LLMError as exc:
            await self._tell_admins(channel, platform, str(exc))
            return False
        except Exception as exc:
            log.exception("scheduled FAQ refresh of %s failed", channel.key)
            await self._tell_admins(channel, platform, type(exc).__name__)
            return False
        log.info("scheduled FAQ refresh of %s: %d new question(s), %d categor(ies) rewritten, %d kept; %s",
                 channel.key, result.new_inquiries, result.rewritten, result.kept,
                 result.note or f"published in {result.place or result.where}")  # fmt: skip
        return True

    async def _tell_admins(self, channel: ChannelRef, platform: ChatPlatform, why: str) -> None:
        text = (
            f"⚠️ The scheduled FAQ refresh of channel {channel.channel} failed: {why}. The FAQ stays as it was; "
            f"it will be tried again in about {RETRY_AFTER_S / 3600:.0f} h."
        )
        log.warning("%s", text)
        if not self._admin_channel:
            return
        admin = ChannelRef(channel.platform, channel.workspace, self._admin_channel)
        try:
            await platform.post(admin, defang_mass_mentions(text))
        except Exception:
            log.exception("could not tell the admin channel %s about a failed FAQ refresh", admin.key)
