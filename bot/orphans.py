"""Replies a dead replica left half-done: registered while they are written, finalised by whoever finds them.

While a live reply is being written its replica records where the reply is and what it shows (``Store.live``) and
refreshes that every ``live_heartbeat_s``. A replica that dies (kill -9, OOM, a lost node) stops refreshing; the
janitor of any replica — or of the same one after a restart — finds the reply silent for ``orphan_after_s``, takes
a lock on it so only one replica touches it, and edits its last message to the text shown so far plus a clear line
asking to mention the bot again. Platform-neutral: adapters tell the janitor which ChatPlatform serves a workspace.

What cannot succeed is not retried for ever: a message deleted meanwhile needs nothing; a text the platform refuses
as too long will be refused again; any other failure (no permission, a revoked token, a broken adapter) is logged
with its traceback and retried by later sweeps up to ``MAX_FINALISE_ATTEMPTS`` times, counted in the store so every
replica's attempts add up, then given up with one log line. Only rate limits do not count: the platform said when.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bot.background import Repeating
from bot.live_reply import LiveReply
from bot.ports import ChatPlatform
from bot.safety import defang_mass_mentions
from bot.stores.base import LiveReplies, Store
from bot.textsplit import safe_prefix_len, split_message
from bot.types import ChannelRef, MessageGone, MessageRef, MessageTooLong, PlatformRateLimited

log = logging.getLogger(__name__)

INTERRUPTED_LINE = "⚠️ Interrupted — mention me again."
# The lock on a reply being finalised is not released on success: a janitor that read the same stale list a moment
# earlier must not edit it a second time. It only has to outlive one sweep; two minutes is plenty.
FINALISE_LOCK_TTL_S = 120.0
STALE_BATCH = 100  # replies looked at per sweep; the rest wait for the next one
# Failed attempts (any replica) after which a reply is given up and left as it is. Sweeps come every
# orphan_sweep_s (15 s by default), so a transient cause (a Discord process still logging in) has a minute to pass.
MAX_FINALISE_ATTEMPTS = 5
# How long the store remembers a reply's failed attempts; far longer than MAX_FINALISE_ATTEMPTS sweeps.
ATTEMPTS_TTL_S = 24 * 3600.0

PlatformFor = Callable[[str], ChatPlatform]  # a workspace id → the platform object that serves it


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the registry holds about one reply in progress (as JSON)."""

    platform: str
    workspace: str
    channel: str
    thread_id: str | None
    messages: tuple[str, ...]  # the reply's message ids, in order; the last one holds the open tail
    text: str  # the model text received so far (not yet defanged)

    def to_json(self) -> str:
        return json.dumps(
            {
                "platform": self.platform,
                "workspace": self.workspace,
                "channel": self.channel,
                "thread": self.thread_id,
                "messages": list(self.messages),
                "text": self.text,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str) -> LiveState:
        d = json.loads(raw)
        return cls(
            platform=str(d["platform"]),
            workspace=str(d["workspace"]),
            channel=str(d["channel"]),
            thread_id=str(d["thread"]) if d.get("thread") else None,
            messages=tuple(str(m) for m in d.get("messages") or ()),
            text=str(d.get("text") or ""),
        )

    @classmethod
    def of(cls, reply: LiveReply, channel: ChannelRef, *, thread_id: str | None) -> LiveState:
        return cls(
            channel.platform,
            channel.workspace,
            channel.channel,
            thread_id,
            tuple(r.message_id for r in reply.refs),
            reply.text,
        )


@contextlib.asynccontextmanager
async def registered(
    live: LiveReplies, reply: LiveReply, channel: ChannelRef, *, thread_id: str | None, every_s: float
) -> AsyncIterator[None]:
    """Keep ``reply`` in the registry while the body runs. A body that ends (returns, or handles its errors) takes
    it out; one that is cancelled (shutdown) or raises leaves it in, so a janitor finalises what it left."""
    reply_id = uuid.uuid4().hex

    async def beat() -> None:
        try:
            await live.heartbeat(reply_id, LiveState.of(reply, channel, thread_id=thread_id).to_json())
        except Exception:  # the registry is a safety net: a store hiccup must not cost the user the reply
            log.warning("could not record a reply in progress", exc_info=True)

    await beat()
    beating = Repeating(beat, every_s=every_s, name="live-reply-heartbeat")
    ended = False
    try:
        yield
        ended = True
    finally:
        await beating.stop()
        if ended:
            try:
                await live.done(reply_id)
            except Exception:  # left in the registry, it gets an "interrupted" line on top of its final text
                log.warning("could not mark a finished reply done", exc_info=True)
        else:
            await beat()  # the latest text and messages, for whichever janitor finishes this reply


class OrphanJanitor:
    """Finds replies whose replica stopped beating and finalises them with ``INTERRUPTED_LINE``."""

    def __init__(self, *, store: Store, after_s: float) -> None:
        self._store = store
        self._after_s = after_s
        self._platforms: dict[str, PlatformFor] = {}

    def serve(self, platform: str, resolve: PlatformFor) -> None:
        """An adapter says it can reach ``platform``'s workspaces (Slack: ``SlackAdapter.platform``)."""
        self._platforms[platform] = resolve

    def platform(self, platform: str, workspace: str) -> ChatPlatform | None:
        """What serves ``workspace`` of ``platform`` in this process (None when another kind of process does)."""
        resolve = self._platforms.get(platform)
        return resolve(workspace) if resolve is not None else None

    async def sweep(self) -> int:
        """One pass over the stale replies this process can reach; returns how many it finalised (or found with
        nothing left to finalise); those given up are not counted."""
        finalised = 0
        for reply_id, raw in await self._store.live.stale(older_than_s=self._after_s, limit=STALE_BATCH):
            try:
                state = LiveState.from_json(raw)
            except (ValueError, KeyError, TypeError):
                log.warning("dropping an unreadable reply record %s", reply_id)
                await self._store.live.done(reply_id)
                continue
            resolve = self._platforms.get(state.platform)
            if resolve is None:
                continue  # served by another kind of process (a Discord shard, say): its janitor will do it
            lock = f"orphan:{reply_id}"
            token = await self._store.locks.acquire(lock, ttl_s=FINALISE_LOCK_TTL_S)
            if token is None:
                continue  # another replica is on it
            where = f"{state.platform}:{state.workspace}:{state.channel}"
            try:
                edited = await finalise(resolve(state.workspace), state)
            except PlatformRateLimited as limited:
                log.info("finalising interrupted reply %s in %s: rate limited for %.1fs; the next sweep tries again",
                         reply_id, where, limited.retry_after_s)  # fmt: skip
                await self._store.locks.release(lock, token)
                continue
            except MessageTooLong:
                # The same text would be refused again: leave the message as it is.
                log.error("giving up on interrupted reply %s in %s: the platform refuses its final text as too long",
                          reply_id, where, exc_info=True)  # fmt: skip
                await self._store.live.done(reply_id)
                continue
            except Exception:
                attempts = await self._store.kv.incr(f"orphan-attempts:{reply_id}", ttl_s=ATTEMPTS_TTL_S)
                if attempts >= MAX_FINALISE_ATTEMPTS:
                    log.error("giving up on interrupted reply %s in %s after %d failed attempts; its message stays "
                              "as it was", reply_id, where, attempts, exc_info=True)  # fmt: skip
                    await self._store.live.done(reply_id)
                    continue
                log.warning("could not finalise interrupted reply %s in %s (attempt %d of %d); the next sweep tries "
                            "again", reply_id, where, attempts, MAX_FINALISE_ATTEMPTS, exc_info=True)  # fmt: skip
                await self._store.locks.release(lock, token)
                continue
            await self._store.live.done(reply_id)
            finalised += 1
            if edited:
                log.info("finalised a reply interrupted in %s", where)
            else:
                log.info(
                    "interrupted reply %s in %s: its message is gone, nothing to finalise", reply_id, where
                )
        return finalised


async def finalise(platform: ChatPlatform, state: LiveState) -> bool:
    """Edit the reply's last message to what it showed plus the interrupted line; False when there was nothing to
    edit: a reply that never posted has nothing stuck, and a message deleted meanwhile needs nothing either."""
    if not state.messages:
        return False
    channel = ChannelRef(state.platform, state.workspace, state.channel)
    ref = MessageRef(channel, state.messages[-1], state.thread_id)
    text = final_text(state, limit=platform.limits.max_message_chars)
    # The platform's shared edit budget, as LiveReply uses it. The text is final: a pacer lets it pass ahead of
    # progress edits (on Discord it would otherwise queue behind every reply streaming in the channel).
    await platform.pacer.wait_turn(ref, final=True)
    try:
        await platform.edit(ref, text, final=True)
    except MessageGone:
        return False
    except PlatformRateLimited as limited:
        await platform.pacer.penalize(ref, limited.retry_after_s)
        raise
    return True


def final_text(state: LiveState, *, limit: int) -> str:
    """The last message's share of the text (earlier messages hold the parts before it), then the line."""
    line = INTERRUPTED_LINE
    text = defang_mass_mentions(state.text)
    parts = split_message(text, limit) if text else []
    tail = "".join(parts[len(state.messages) - 1 :]).rstrip()
    room = limit - len(line) - 2
    tail = tail[: safe_prefix_len(tail, room)] if len(tail) > room else tail
    return f"{tail}\n\n{line}" if tail else line
