"""The product's front door: adapters translate platform events into these calls and render what comes back.

Everything here is platform- and provider-neutral; each use case lives in its own module (summarize, faq,
spend, budgets, inquiries) and this class wires them to the live reply, budgets, alerts and the stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bot import faq_publish
from bot.budgets import BudgetState, budget_state, spike_alerts
from bot.faq import FaqBusy, FaqResult, FaqWriter
from bot.inquiries import is_inquiry, to_inquiry
from bot.live_reply import LiveReply
from bot.model_alerts import model_missing_alert
from bot.orphans import registered
from bot.ports import REPLY, ChatPlatform
from bot.safety import defang_mass_mentions
from bot.settings import Settings
from bot.spend import SpendReport, build_report, parse_period
from bot.stores.base import Store
from bot.summarize import SummaryResult, ThreadSummarizer
from bot.telemetry import NullTelemetry, Telemetry
from bot.types import ChannelRef, ChatMessage, Command, Mention, MessageRef, ReplyStopped
from llm.ports import LLM
from llm.types import Attribution, LLMError, ModelMissing

log = logging.getLogger(__name__)
T = TypeVar("T")

FAQ_DEFAULT_DAYS = 30
FAQ_MAX_DAYS = 365


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    refs: list[MessageRef]
    text: str
    ok: bool
    summary: SummaryResult | None = None


class Assistant:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        llm: LLM,
        alert_sink: ChatPlatform | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.llm = llm
        self.alert_sink = alert_sink  # the platform that owns settings.admin_channel
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.summarizer = ThreadSummarizer(llm=llm, store=store, max_input_tokens=settings.summary_input_tokens)
        self.faq_writer = FaqWriter(
            llm=llm,
            store=store,
            max_entries=settings.faq_max_entries,
            support_staff=frozenset(settings.support_staff),
        )

    # ---- what the bot sees ----------------------------------------------------------------------------

    def collects(self, channel: ChannelRef) -> bool:
        allowed = self.settings.support_channels
        return not allowed or channel.channel in allowed

    async def record(self, message: ChatMessage, *, mentions_bot: bool = False, link: str = "") -> None:
        """Every message of the channels the bot is in: kept for summaries, and collected when it is an inquiry."""
        await self.store.messages.add(message)
        if self.collects(message.ref.channel) and is_inquiry(message, bot_mentioned=mentions_bot):
            await self.store.inquiries.add(to_inquiry(message, link=link))

    async def edited(self, ref: MessageRef, text: str) -> None:
        await self.store.messages.edit(ref, text)

    async def deleted(self, ref: MessageRef) -> None:
        await self.store.messages.delete(ref)
        await self.store.inquiries.delete(ref.channel, ref.message_id)

    async def purge_expired(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        return await self.store.messages.purge_before(cutoff) + await self.store.inquiries.purge_before(
            cutoff
        )

    # ---- mention → summary ----------------------------------------------------------------------------

    async def summarize(
        self,
        mention: Mention,
        platform: ChatPlatform,
        *,
        reply_in: ChannelRef | None = None,
        reply_thread: str | None = None,
    ) -> ReplyOutcome:
        """Summarize the mention's thread (or channel). The reply goes there too, unless ``reply_in`` names where
        the person asked from (a direct message, the assistant pane): spend and budget stay with the channel read."""
        started = time.monotonic()
        ref = mention.message.ref
        channel = ref.channel
        answer_in = reply_in or channel
        if reply_in is None:
            reply_thread = ref.thread_id or ref.message_id
        bill_to = Attribution(
            channel.platform, channel.workspace, channel.channel, mention.message.author, "summary"
        )
        refusal = await self._refusal(channel, mention.message.author)
        if refusal:
            return await _say(platform, answer_in, refusal, thread_id=reply_thread)
        reply = LiveReply(platform, answer_in, thread_id=reply_thread)
        done = functools.partial(self._replied, reply, channel=channel, feature="summary", started=started)
        await reply.start()
        if reply.unreachable:  # no model call whose answer nobody could see
            return done(ReplyOutcome([], "", ok=False))
        async with self._registered(reply, answer_in, thread_id=reply_thread):
            try:
                result = await _unless_stopped(
                    reply,
                    self.summarizer.summarize(
                        mention, platform, bill_to=bill_to, on_text=reply.append, on_status=reply.set_status
                    ),
                )
            except ReplyStopped:
                return done(ReplyOutcome(await reply.finish(), reply.text, ok=False))
            except LLMError as exc:
                refs = await reply.fail(f"{exc}. Mention me again to retry.")
                return done(ReplyOutcome(refs, reply.text, ok=False))
            except Exception:
                log.exception("summary failed in %s", channel.key)
                refs = await reply.fail("something went wrong on my side. Mention me again to retry.")
                return done(ReplyOutcome(refs, reply.text, ok=False))
            await self._after_spend(channel, reply)
            refs = await reply.finish()
            return done(ReplyOutcome(refs, reply.text, ok=True, summary=result))

    # ---- /faq -----------------------------------------------------------------------------------------

    async def faq(
        self,
        command: Command,
        platform: ChatPlatform,
        *,
        reply_in: ChannelRef | None = None,
        reply_thread: str | None = None,
    ) -> ReplyOutcome:
        """/faq for ``command.channel``, published there, or where the person asked (``reply_in``)."""
        started = time.monotonic()
        channel = command.channel
        answer_in = reply_in or channel
        days = _days(command.args, default=FAQ_DEFAULT_DAYS)
        if days is None:
            usage = f"Usage: /faq [days] — days is a whole number from 1 to {FAQ_MAX_DAYS} (default {FAQ_DEFAULT_DAYS})."
            return await _say(platform, answer_in, usage, thread_id=reply_thread)
        refusal = await self._refusal(channel, command.user)
        if refusal:
            return await _say(platform, answer_in, refusal, thread_id=reply_thread)
        reply = LiveReply(platform, answer_in, thread_id=reply_thread)
        done = functools.partial(self._replied, reply, channel=channel, feature="faq", started=started)
        bill_to = Attribution(channel.platform, channel.workspace, channel.channel, command.user, "faq")
        await reply.start(placeholder=f"Writing an FAQ from the last {days} days of questions…")
        if reply.unreachable:
            return done(ReplyOutcome([], "", ok=False))
        async with self._registered(reply, answer_in, thread_id=reply_thread):
            try:
                result: FaqResult = await self.faq_writer.run(
                    channel,
                    days=days,
                    bill_to=bill_to,
                    progress=reply.set_status,
                    link_for=faq_publish.link_for(platform),
                    publish=faq_publish.publisher(platform, channel),
                )
            except FaqBusy as busy:
                refs = await reply.fail(str(busy))
                return done(ReplyOutcome(refs, reply.text, ok=False))
            except LLMError as exc:
                refs = await reply.fail(f"{exc}. Run /faq again to retry.")
                return done(ReplyOutcome(refs, reply.text, ok=False))
            except Exception:
                log.exception("faq failed in %s", channel.key)
                refs = await reply.fail("something went wrong on my side. Run /faq again to retry.")
                return done(ReplyOutcome(refs, reply.text, ok=False))
            reply.set_status("")
            reply.append(faq_publish.reply_text(result))
            await self._after_spend(channel, reply)
            refs = await reply.finish()
            if result.where == REPLY:  # the platform keeps this reply as the FAQ (e.g. pins it)
                await faq_publish.keep_reply(self.faq_writer, platform, channel, refs)
            return done(ReplyOutcome(refs, reply.text, ok=True))

    # ---- /llmcost -------------------------------------------------------------------------------------

    def is_admin(self, user: str) -> bool:
        return user in self.settings.admins

    async def spend(self, command: Command) -> SpendReport:
        """The channel's spend report, or one whose ``refusal`` says why there are no figures (a usage line, an
        admin-only scope). 'all' asks for every channel (admins)."""
        words = command.args.lower().split()
        everything = "all" in words
        scope = "all channels" if everything else command.channel.channel
        rest = " ".join(w for w in words if w not in ("all", "share", "public"))
        try:
            period, days = parse_period(rest)
        except ValueError as exc:
            return SpendReport.refused(f"{exc}. Usage: /llmcost [today|7d|30d] [all] [share]", scope=scope)
        if everything and not (command.is_admin or self.is_admin(command.user)):
            return SpendReport.refused(
                "Only admins can see the spend of all channels; here is how to ask for this channel: /llmcost 7d",
                scope=scope,
            )
        channel = None if everything else command.channel
        budget = None if channel is None else self.settings.budget_for(channel.channel)
        return await build_report(
            self.store.ledger, period=period, days=days, channel=channel, budget_usd=budget
        )

    # ---- budgets and alerts ---------------------------------------------------------------------------

    async def _refusal(self, channel: ChannelRef, user: str) -> str:
        """Why a model-backed request must not run (spent budget, one person's hourly limit), or ""."""
        budget = await self._budget(channel)
        if budget.exhausted:
            self.telemetry.refused(channel.platform, "budget")
            return budget.refusal()
        if self.is_admin(user):
            return ""
        limit = self.settings.user_requests_per_hour
        window = int(time.time() // 3600)
        key = f"rate:{channel.platform}:{channel.workspace}:{user}:{window}"
        if await self.store.kv.incr(key, ttl_s=3600) > limit:
            self.telemetry.refused(channel.platform, "user_rate")
            return f"You have asked me {limit} times this hour, the most one person can. Please try again later."
        return ""

    async def _budget(self, channel: ChannelRef) -> BudgetState:
        state = await budget_state(self.store, channel, self.settings.budget_for(channel.channel))
        own = channel.channel in self.settings.channel_budgets_usd
        self.telemetry.observe_budget(channel, state, own_budget=own)
        return state

    def _registered(
        self, reply: LiveReply, channel: ChannelRef, *, thread_id: str | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """While the reply is written it is in the store's registry, so if this replica dies another one (or this
        one, restarted) finalises it instead of leaving a message stuck at "…writing" (bot/orphans.py)."""
        every_s = self.settings.live_heartbeat_s
        return registered(self.store.live, reply, channel, thread_id=thread_id, every_s=every_s)

    def _replied(
        self, reply: LiveReply, outcome: ReplyOutcome, *, channel: ChannelRef, feature: str, started: float
    ) -> ReplyOutcome:
        """Metrics of a finished live reply (time to first visible text, edits, 429s), then its outcome."""
        self.telemetry.observe_reply(
            reply.stats, platform=channel.platform, feature=feature, ok=outcome.ok, started_at=started
        )
        return outcome

    async def _after_spend(self, channel: ChannelRef, reply: LiveReply) -> None:
        try:
            warning = (await self._budget(channel)).warning
            if warning:
                reply.append("\n\n" + warning)
            alerts = await spike_alerts(self.store, channel)
        except Exception:  # budgets and alerts must never cost the user their answer
            log.exception("budget check failed in %s", channel.key)
            return
        await self._tell_admins(channel, alerts)

    async def model_missing(self, notice: ModelMissing, bill_to: Attribution) -> None:
        """The router met a model that answered "not found": tell the admin channel, once a day per model."""
        alert = await model_missing_alert(self.store, notice)
        if alert is not None:
            await self._tell_admins(ChannelRef(bill_to.platform, bill_to.workspace, bill_to.channel), [alert])

    async def _tell_admins(self, channel: ChannelRef, alerts: list[str]) -> None:
        """Post alerts to the admin channel of ``channel``'s workspace (when set) and log them."""
        if alerts and self.alert_sink is not None and self.settings.admin_channel:
            admin = ChannelRef(channel.platform, channel.workspace, self.settings.admin_channel)
            for alert in alerts:
                try:
                    await self.alert_sink.post(admin, alert)
                except Exception:
                    log.exception("could not post an alert to %s", admin.key)
        for alert in alerts:
            log.warning("%s", alert)


async def _unless_stopped(reply: LiveReply, work: Coroutine[Any, Any, T]) -> T:
    """``work``, cancelled when the person stops the reply it writes (ReplyStopped): the rest would only cost. The
    model call is recorded as cancelled in the ledger, with what it had used."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(reply.stopped.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ReplyStopped("the person stopped the reply")
    return task.result()


async def _say(
    platform: ChatPlatform, channel: ChannelRef, text: str, *, thread_id: str | None = None
) -> ReplyOutcome:
    """A one-off message (refusals, usage lines): no live reply, no model call."""
    ref = await platform.post(channel, defang_mass_mentions(text), thread_id=thread_id)
    return ReplyOutcome([ref], text, ok=False)


def _days(args: str, *, default: int) -> int | None:
    word = args.strip().split()[0] if args.strip() else ""
    if not word:
        return default
    word = word[:-1] if word.lower().endswith("d") else word
    # isascii: "²".isdigit() is true but int() refuses it; the length cap keeps int() off 100,000-digit words.
    if word.isascii() and word.isdigit() and len(word) <= 4 and 1 <= int(word) <= FAQ_MAX_DAYS:
        return int(word)
    return None
