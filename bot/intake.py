"""One intake for every platform: what happens to a request between the adapter's translation and the Assistant.

An adapter turns a platform event into a neutral request — a mention, a command, a direct ask — and names the
claim keys that make it "answered once" (its event id, the asking message). The intake does the rest, the same way
on Slack, Discord and the console:

- claims the keys in the shared store before any work, so a retried delivery, an edited mention re-delivered, or a
  copy reaching another replica gets no second answer (the key strings belong to the adapters: stores and replicas
  rely on them);
- gives the request its request id (every log line of it, and of every task it starts, carries it);
- runs it as tracked background work, so the platform's acknowledgement never waits for a model, tests can wait for
  quiet and a shutdown can drain what is in flight; once a shutdown began it declines instead (not claimed, so a
  replica that is still accepting may take the event);
- catches every error, logs its traceback and sends the short catch-all reply through the adapter's callback: a
  request that fails — in the model, in the store, or already while its event was turned into a Mention — gets an
  answer, never silence;
- builds the neutral ``Command`` and ``Mention`` (who is an admin, whether "share" was asked, whether a fresh
  summary was asked) so no adapter repeats those rules.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from bot.assistant import Assistant
from bot.background import BackgroundWork
from bot.requestids import current_request, request_context
from bot.stores.base import Store
from bot.summarize import wants_fresh
from bot.types import ChannelRef, ChatMessage, Command, Mention

log = logging.getLogger(__name__)

SORRY = "Sorry — something went wrong on my side. Please try again in a minute."
# Words in a command's arguments that ask for a report to be shown to the channel instead of only the asker.
SHARE_WORDS = frozenset({"share", "public"})

Work = Coroutine[Any, Any, None]
# How the catch-all reaches the person: the adapter posts ``text`` where it can (ephemeral, a reply, a follow-up).
ErrorReply = Callable[[str], Awaitable[object]]


class Wiring(Protocol):
    """What the intake needs of the assembled app (bot/app.py's App): the core does not import the composition root."""

    @property
    def assistant(self) -> Assistant: ...

    @property
    def store(self) -> Store: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """A key claimed in the shared store before a request's work: the first process to claim it answers."""

    key: str
    ttl_s: float


class Intake:
    """Claims, request ids, tracked work, shutdown and the catch-all reply for one platform's adapter."""

    def __init__(self, app: Wiring, *, platform: str, sorry: str = SORRY) -> None:
        self.platform = platform
        self.sorry = sorry
        self._assistant = app.assistant
        self._claims = app.store.claims
        self.work = BackgroundWork(label=platform)
        self.accepting = True  # False from shutdown on: requests are left alone (not claimed) or declined

    # ---- neutral requests -----------------------------------------------------------------------------------

    def mention(self, message: ChatMessage, *, fresh: bool | None = None) -> Mention:
        """The mention ``message`` is; a fresh summary when its text asks for one (unless the caller knows)."""
        return Mention(message, fresh=wants_fresh(message.text) if fresh is None else fresh)

    def command(
        self, name: str, args: str, channel: ChannelRef, user: str, *, user_name: str = "", platform_admin: bool = False
    ) -> Command:
        """A command from ``user``: an admin when settings name them, or when the platform says so (a Discord
        member with Manage Server, say)."""
        is_admin = platform_admin or self._assistant.is_admin(user)
        return Command(name, args.strip(), channel, user, user_name=user_name, is_admin=is_admin)

    @staticmethod
    def shared(args: str) -> bool:
        """Whether a command's arguments ask to show the answer to the channel ("/llmcost 7d share")."""
        return bool(SHARE_WORDS & set(args.lower().split()))

    # ---- taking requests ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def request(self, event_id: str = "", **fields: str) -> Iterator[None]:
        """One request id from the event to the reply's final edit: the adapter's own log lines about the event
        (ignored, malformed) and the work ``take`` starts inside share it."""
        with request_context(platform=self.platform, event_id=event_id, **fields):
            yield

    async def claim(self, claims: Iterable[Claim]) -> bool:
        """Whether every key was ours to claim (stops at the first taken: the request is a duplicate)."""
        for claim in claims:
            if not await self._claims.claim(claim.key, ttl_s=claim.ttl_s):
                return False
        return True

    def take(
        self,
        work: Work,
        *,
        name: str,
        event_id: str = "",
        claims: Iterable[Claim] = (),
        reply_error: ErrorReply | None = None,
        sorry: str | None = None,
        duplicate: Callable[[], None] | None = None,
        declined: Callable[[], Work] | None = None,
        **fields: str,
    ) -> bool:
        """Run ``work`` as tracked background work under a request id, after its ``claims``. Returns at once
        (the caller acknowledges the platform); False when the intake is no longer accepting: then ``work`` never
        starts and ``declined`` (a polite refusal) runs in its place, after the same claims.

        Called synchronously from the platform's handler, with no await between the ``accepting`` check and the
        spawn, so no accepted request escapes a drain."""
        opened = current_request() is None  # inside request(): the work keeps that request's id (tasks copy it)
        with self.request(event_id, **fields) if opened else contextlib.nullcontext():
            taken = self.accepting
            if not taken:
                work.close()  # never started
                if declined is None:
                    return False
                work, name = declined(), f"decline-{name}"
            self.work.spawn(self._run(work, list(claims), reply_error, sorry or self.sorry, duplicate, name=name),
                            name=name)  # fmt: skip
        return taken

    async def now(self, work: Work, *, name: str, reply_error: ErrorReply | None = None, **fields: str) -> None:
        """Run ``work`` here and now (the console: one request at a time, in order), with the same catch-all."""
        with request_context(platform=self.platform, **fields):
            await self._run(work, [], reply_error, self.sorry, None, name=name)

    async def _run(
        self,
        work: Work,
        claims: list[Claim],
        reply_error: ErrorReply | None,
        sorry: str,
        duplicate: Callable[[], None] | None,
        *,
        name: str,
    ) -> None:
        try:
            if claims and not await self.claim(claims):
                work.close()
                if duplicate is not None:
                    duplicate()
                return
            await work
        except Exception:
            log.exception("%s: %s failed", self.platform, name)
            if reply_error is None:
                return
            try:
                await reply_error(sorry)
            except Exception:
                log.exception("%s: could not tell the user that %s failed", self.platform, name)

    # ---- quiet and shutdown ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.work)

    async def idle(self) -> None:
        """Wait until every request taken so far (and anything it started) is done."""
        await self.work.idle()

    async def drain(self, *, grace_s: float) -> int:
        """Stop accepting, let the work in flight finish for up to ``grace_s``, cancel the rest; returns how many
        were cut off (their replies are left to the orphan janitor)."""
        self.accepting = False
        return await self.work.drain(grace_s=grace_s)
