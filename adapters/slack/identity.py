"""Who the bot is and which installation a Slack payload belongs to: one key for every store and report.

A single-workspace token's identity comes from one auth.test. A payload's installation is what Bolt reads
(``authorizations[0]``), not the envelope's ``team_id``: in a Slack Connect channel that can be the other
organisation's, and an org-wide Enterprise Grid install has no team at all, only its organisation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.payloads import Authorization


class BotIdentity:
    """Bolt's authorize step for a single-workspace token: one auth.test, shared by every request.

    Bolt's default calls auth.test lazily and without a lock, so a burst of first events sends a burst of auth.test
    calls (Tier 4) and the ones answered 429 lose their events; here one call is made and the rest wait for it.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._result: AuthorizeResult | None = None
        self._lock = asyncio.Lock()
        self.installation = ""  # the workspace (or, for an org-wide install, organisation) the token belongs to

        # A plain function, not a bound method: Bolt passes arguments by the names in the signature ("self" too).
        async def authorize(
            enterprise_id: str | None = None, team_id: str | None = None, user_id: str | None = None
        ) -> AuthorizeResult:
            return await self.identify()

        self.authorize = authorize

    async def identify(self) -> AuthorizeResult:
        if self._result is None:
            async with self._lock:
                if self._result is None:
                    response = await self._client.auth_test()
                    self._result = AuthorizeResult.from_auth_test_response(
                        bot_token=self._client.token, auth_test_response=response
                    )
                    self.installation = install_key(
                        response.get("team_id"), response.get("enterprise_id"), response.get("is_enterprise_install")
                    )
        return self._result


def install_key(team: object, enterprise: object, org_install: object) -> str:
    """The key of an installation: its workspace, or for an org-wide (Enterprise Grid) install its organisation."""
    team = team if isinstance(team, str) and team else None
    enterprise = enterprise if isinstance(enterprise, str) and enterprise else None
    if org_install in (True, "true") and enterprise:
        return enterprise
    return team or enterprise or ""


def installation(body: dict[str, Any], context: AsyncBoltContext | None, identity: BotIdentity | None) -> str:
    """The installation an event or command belongs to: one key for the message log, summaries, /llmcost and
    budgets. In a Slack Connect channel the envelope's team_id (and event.team) can be the other organisation's;
    the installation is authorizations[0] (what Bolt's extract_team_id reads), else this token's own auth.test
    (commands and shortcuts carry no authorizations), else what the payload says."""
    first = _first_authorization(body.get("authorizations"))
    if first is not None:
        key = install_key(first.team_id, first.enterprise_id, first.is_enterprise_install)
        if key:
            return key
    if identity is not None and identity.installation:
        return identity.installation
    if context is not None:
        key = install_key(context.team_id, context.enterprise_id, context.is_enterprise_install)
        if key:
            return key
    return install_key(body.get("team_id"), body.get("enterprise_id"), body.get("is_enterprise_install"))


def _first_authorization(grants: object) -> Authorization | None:
    """The installation a delivery is for, as Slack documents it (payloads.py), or None: absent, or not that shape
    (then this token's own installation answers)."""
    if not isinstance(grants, list) or not grants:
        return None
    try:
        return Authorization.model_validate(grants[0])
    except ValidationError:
        return None
