"""What every Slack listener does with a delivery before any work: read it, name its claims, count what is ignored.

A delivery is read once against the shapes Slack documents (events.py): one that does not fit is acknowledged,
logged in one line naming the field, and counted, never crashed on. The claim keys named here — each event id, and
each asking message (channel + ts) — are claimed in the shared store before any work (bot/intake.py), so a retried
delivery, an edited mention re-delivered as a new event, or a copy reaching another replica never produces a second
reply. The installation a payload belongs to is read once (identity.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack.events import Malformed, SlackEvent, read_delivery
from adapters.slack.identity import BotIdentity, installation
from bot.app import App
from bot.intake import Claim, Intake

log = logging.getLogger(__name__)

# Slack re-delivers an event up to 3 times over about an hour (https://docs.slack.dev/apis/events-api/#retries):
# a claim must outlive the last retry.
CLAIM_TTL_S = 3600.0


class Deliveries:
    """The reading, claiming and counting shared by the adapter's listeners (mentions, messages, DMs, the pane)."""

    def __init__(self, app: App, intake: Intake, identity: BotIdentity, *, allow_bots: bool) -> None:
        self.app = app
        self.intake = intake
        self.identity = identity
        self.allow_bots = allow_bots

    def installation(self, body: dict[str, Any], context: AsyncBoltContext | None) -> str:
        """The installation a delivery belongs to (identity.py): one key for the log, summaries and budgets."""
        return installation(body, context, self.identity)

    def claims(self, body: dict[str, Any], workspace: str, channel: str, ts: str) -> list[Claim]:
        """What makes a request to the bot answered once: the delivery's event id (a retry, here or on another
        replica, stops) and the asking message itself (Slack re-delivers an edited mention as a new app_mention
        with a new event id and the same ts, and one message may arrive both as a mention and in a DM)."""
        event_id = body.get("event_id")
        claims = [Claim(f"slack:{workspace}:{event_id}", CLAIM_TTL_S)] if isinstance(event_id, str) and event_id else []
        # As long as messages are kept: Slack lets people edit a message days later, and the edit is re-delivered.
        ttl_s = max(CLAIM_TTL_S, self.app.settings.retention_days * 86400.0)
        return [*claims, Claim(f"slack:{workspace}:asked:{channel}:{ts}", ttl_s)]

    def request(self, body: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
        """The request id of one event delivery, from the listener to the reply's final edit."""
        return self.intake.request(str(body.get("event_id") or ""))

    def duplicate(self, detail: str) -> Callable[[], None]:
        return lambda: self.ignored("duplicate", detail)

    def ignored(self, reason: str, detail: str) -> None:
        log.info("ignored a Slack event (%s): %s", reason, detail[:200])
        self.app.metrics.platform_event("slack", f"ignored_{reason}")

    def checked(self, body: dict[str, Any], event: dict[str, Any]) -> SlackEvent | None:
        """The event's typed view, or None (one warning) when the delivery lacks the shape Slack documents: ignored
        (and acknowledged), not crashed on."""
        try:
            return read_delivery(body)
        except Malformed as why:
            self.malformed(body, event, why)
            return None

    def malformed(self, body: dict[str, Any], event: dict[str, Any], why: Malformed) -> None:
        """One warning naming the field (never its value: it may be anyone's text), and one count."""
        log.warning("ignored a malformed Slack %s event %s: %s", str(event.get("type"))[:40],
                    str(body.get("event_id"))[:40], why)  # fmt: skip
        self.app.metrics.platform_event("slack", "ignored_malformed")
