"""Telling an admin that a route's model is gone: once a day per model, with what to change it to."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bot.stores.base import Store
from llm.routes import default_model
from llm.types import ModelMissing, Task

# The claim outlives its day a little, so a replica whose clock runs late does not repeat the alert.
CLAIM_TTL_S = 2 * 86400


async def model_missing_alert(store: Store, notice: ModelMissing, *, today: date | None = None) -> str | None:
    """The admin alert for ``notice``, or None when it was already given today (claimed in the store, so replicas
    do not repeat it)."""
    today = today or datetime.now(UTC).date()
    key = f"alert:model-missing:{notice.provider}:{notice.model}:{today.isoformat()}"
    if not await store.claims.claim(key, ttl_s=CLAIM_TTL_S):
        return None
    spec = f"{notice.provider}:{notice.model}"
    then = (
        f"The bot fell back to {notice.fallback} for now."
        if notice.fallback
        else f"The {notice.task} route has no other model, so these requests fail until it is changed."
    )
    current = _current(notice)
    advice = f'Change SUPPORTBOT_ROUTES ("{notice.task}") from {spec} to a current model'
    advice += f", e.g. {notice.provider}:{current}" if current else ""
    return (
        f'Model alert: {notice.provider} answered "not found" for {notice.model} (task {notice.task}): it was '
        f"retired, renamed, or is not offered to this API key. {then} {advice}; "
        "`supportbot doctor` lists the models each provider offers."
    )


def _current(notice: ModelMissing) -> str | None:
    """Today's default model for the task on that provider, unless that is the one that went missing."""
    try:
        model = default_model(notice.provider, Task(notice.task))
    except (KeyError, ValueError):
        return None
    return model if model != notice.model else None
