"""Direct messages and Slack's AI-app side pane: a conversation with the bot about the workspace's channels.

Slack sends no ``app_mention`` in a direct message, so a DM is read as a request: "summarize" with a message link,
a #channel or a channel's name summarizes that thread or channel; "faq" and "cost" do what /faq and /llmcost do.
In the side pane (``assistant_thread_started`` / ``_context_changed``) the channel the person is looking at is the
default, and the suggested prompts below start the common requests.

Whatever the bot reads for someone must be something that person could read: the bot may sit in private channels
the asker is not in, so every request is checked against the asker's membership first and refused clearly.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.async_store import AsyncAssistantThreadContextStore
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.deliveries import Deliveries
from adapters.slack.events import Malformed, SlackEvent, read_assistant_thread
from adapters.slack.platform import SlackPlatform
from adapters.slack.render import escape, spend_blocks
from bot.app import App
from bot.intake import Intake
from bot.spend import SpendReport
from bot.stores.base import KeyValue
from bot.types import ChannelRef, ChatMessage, MessageRef

log = logging.getLogger(__name__)

# assistant.threads.setSuggestedPrompts takes up to 4 (https://docs.slack.dev/reference/methods/
# assistant.threads.setSuggestedPrompts); each prompt's message is sent back as the person's message.
SUGGESTED_PROMPTS = [
    {"title": "Summarize this channel", "message": "Summarize this channel"},
    {"title": "Build an FAQ", "message": "Build an FAQ"},
    {"title": "What did we spend?", "message": "What did we spend?"},
]
GREETING = (
    "Hi! Open a channel and I can summarize it, build an FAQ from its questions, or tell you what I have spent "
    "there. You can also name one: `summarize #support`, or paste a message link to summarize its thread."
)
HELP = (
    "I can help with:\n"
    "• `summarize #channel` — or paste a message link to summarize its thread\n"
    "• `faq #channel [days]` — an FAQ from the questions asked there\n"
    "• `cost #channel [today|7d|30d]` — what I have spent there (`cost all` for every channel, admins only)"
)
WHICH_CHANNEL = "Which channel? Name it (`{kind} #support`), or paste a link to a message in it."
STATUS_READING = "is reading the conversation…"
# How long the side pane remembers the channel a person is looking at (a pane thread is rarely reopened later).
THREAD_CONTEXT_TTL_S = 7 * 24 * 3600

_PERMALINK = re.compile(
    r"<?https?://[^\s/<>|]+/archives/([CGD][A-Z0-9]+)/p(\d{10})(\d{6})(?:\?([^\s<>|]*))?(?:\|[^>]*)?>?"
)
_THREAD_TS = re.compile(r"(?:^|&)thread_ts=(\d{10}\.\d{6})")
_CHANNEL_MENTION = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")
_USER_MENTION = re.compile(r"<@[UWB][A-Z0-9]+(?:\|[^>]*)?>")
_CHANNEL_NAME = re.compile(r"#([a-z0-9][a-z0-9._-]{0,79})")
_WORD = re.compile(r"[a-z0-9;#._-]+")

SUMMARIZE_WORDS = frozenset({"summarize", "summarise", "summary", "sum", "recap", "tldr", "tl;dr"})
FAQ_WORDS = frozenset({"faq", "faqs"})
COST_WORDS = frozenset({"cost", "costs", "spend", "spent", "spending", "llmcost", "budget"})
# Words that may follow "summarize" without being a channel's name.
FILLER = frozenset({"this", "the", "channel", "thread", "please", "of", "in", "for", "me", "it", "us", "a", "an",
                    "build", "what", "did", "we", "our", "how", "much", "all", "today", "conversation"})  # fmt: skip
PERIOD = re.compile(r"^(today|all|\d{1,3}d?)$")


@dataclass(frozen=True, slots=True)
class Ask:
    """One message to the bot, read: what is asked (summarize, faq, cost, help) and about which channel."""

    kind: str
    channel: str | None = None  # a channel id (from <#C…> or a message link)
    channel_name: str | None = None  # a name typed as text ("support", "#support")
    thread_ts: str | None = None  # a message link's thread
    args: str = ""  # what /faq or /llmcost would get ("30", "7d all")


def read_ask(text: str) -> Ask:
    """The request in a direct message (Slack's wire text: links and mentions in angle brackets)."""
    channel = thread = None
    link = _PERMALINK.search(text)
    if link:
        channel = link.group(1)
        ts = f"{link.group(2)}.{link.group(3)}"
        in_thread = _THREAD_TS.search(link.group(4) or "")
        thread = in_thread.group(1) if in_thread else ts
        text = text[: link.start()] + " " + text[link.end() :]
    mentioned = _CHANNEL_MENTION.search(text)
    if mentioned and channel is None:
        channel = mentioned.group(1)
    text = _CHANNEL_MENTION.sub(" ", _USER_MENTION.sub(" ", text)).lower()
    words = [w.strip(".,;!?:") for w in _WORD.findall(text)]
    kind = next(
        (k for w in words for k, group in (("summarize", SUMMARIZE_WORDS), ("faq", FAQ_WORDS),
                                            ("cost", COST_WORDS), ("help", {"help"})) if w in group),
        "summarize" if link else "help",
    )  # fmt: skip
    name = None
    if channel is None:
        typed = _CHANNEL_NAME.search(text)
        if typed:
            name = typed.group(1)
        elif kind == "summarize":
            after = words[next(i for i, w in enumerate(words) if w in SUMMARIZE_WORDS) + 1 :] if words else []
            name = next((w for w in after if w not in FILLER and not PERIOD.match(w)), None)
    args = " ".join(w for w in words if PERIOD.match(w) and w not in SUMMARIZE_WORDS)
    return Ask(kind, channel, name, thread, args)


StatusLine = Callable[[str], Awaitable[object]]


class DirectConversation:
    """Answers one person's requests in a DM or in the side pane, for one workspace's installation."""

    def __init__(self, app: App, intake: Intake, *, platform_for: Callable[[str], SlackPlatform]) -> None:
        self.app = app
        self._intake = intake
        self._platform_for = platform_for

    async def answer(
        self,
        text: str,
        *,
        workspace: str,
        user: str,
        reply_in: ChannelRef,
        thread: str | None,
        message_ts: str,
        viewing: str | None = None,
        status: StatusLine | None = None,
    ) -> None:
        platform = self._platform_for(workspace)
        ask = read_ask(text)
        say = _Say(platform, reply_in, thread)
        if ask.kind == "help":
            await say(HELP)
            return
        target = ask.channel or (await platform.channel_named(ask.channel_name) if ask.channel_name else None)
        if ask.channel_name and target is None:
            await say(f"I can't find a channel called #{ask.channel_name} that I am in.")
            return
        target = target or viewing
        if ask.kind == "cost" and target is None:
            await self._cost(ask, workspace=workspace, user=user, channel=None, say=say)
            return
        if target is None or target == reply_in.channel:
            await say(WHICH_CHANNEL.format(kind=ask.kind))
            return
        refusal = await platform.readable_for(target, user)
        if refusal:
            log.info("refused %s of %s to %s: %s", ask.kind, target, user, refusal)
            await say(refusal)
            return
        channel = ChannelRef("slack", workspace, target)
        if status is not None:
            await _quietly(lambda: status(STATUS_READING))
        if ask.kind == "cost":
            await self._cost(ask, workspace=workspace, user=user, channel=channel, say=say)
        elif ask.kind == "faq":
            command = self._intake.command("faq", ask.args, channel, user)
            await self.app.assistant.faq(command, platform, reply_in=reply_in, reply_thread=thread)
        else:
            asked = ChatMessage(
                ref=MessageRef(channel, message_ts, ask.thread_ts),
                author=user,
                author_name=await platform.display_name(user),
                text=text,
                sent_at=datetime.now(UTC),
            )
            platform.expect_reply(reply_in, thread or message_ts, user=user)
            mention = self._intake.mention(asked)
            await self.app.assistant.summarize(mention, platform, reply_in=reply_in, reply_thread=thread)

    async def _cost(self, ask: Ask, *, workspace: str, user: str, channel: ChannelRef | None, say: _Say) -> None:
        command = self._intake.command("llmcost", ask.args, channel or ChannelRef("slack", workspace, ""), user)
        if channel is None and "all" not in ask.args.split():
            if not command.is_admin:
                await say(WHICH_CHANNEL.format(kind="cost"))
                return
            command = self._intake.command("llmcost", ask.args + " all", command.channel, user)
        result = await self.app.assistant.spend(command)
        if result.refusal:
            await say(result.refusal)
        else:
            await say(result.to_text(), report=result)


class _Say:
    """One-off replies in the conversation: plain lines, or a spend report as Block Kit."""

    def __init__(self, platform: SlackPlatform, channel: ChannelRef, thread: str | None) -> None:
        self.platform, self.channel, self.thread = platform, channel, thread

    async def __call__(self, text: str, *, report: SpendReport | None = None) -> None:
        if report is None:
            await self.platform.post(self.channel, text, thread_id=self.thread)
            return
        await self.platform.client.chat_postMessage(
            channel=self.channel.channel, text=escape(text), blocks=spend_blocks(report), thread_ts=self.thread
        )


async def _quietly(call: Callable[[], Awaitable[object]], what: str = "setting the assistant status") -> None:
    """Courtesies (a status line, a greeting, suggested prompts): failing one must not cost anything else. The
    call is made here, so a courtesy the intake declines (shutting down) leaves no coroutine never awaited."""
    try:
        await call()
    except Exception as exc:
        log.info("%s failed: %s", what, exc)


class ThreadContexts(AsyncAssistantThreadContextStore):
    """The channel each side-pane thread is looking at, kept in the shared store (every replica sees it).

    Bolt's default keeps it in the metadata of the bot's first message in the thread, which costs a
    conversations.replies call per request; the store already holds everything else the bot shares."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        await self._kv.put(_pane_key(channel_id, thread_ts), json.dumps(context), ttl_s=THREAD_CONTEXT_TTL_S)

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        raw = await self._kv.get(_pane_key(channel_id, thread_ts))
        loaded = json.loads(raw) if raw else None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("channel_id"), str):
            return None
        return AssistantThreadContext(loaded)


def _pane_key(channel_id: str, thread_ts: str) -> str:
    return f"slack:pane:{channel_id}:{thread_ts}"


class ConversationListeners:
    """Bolt's listeners for direct messages, the side pane and the Messages tab. ``Deliveries`` names the claims
    (one answer per message), the intake runs the work; this class only reads and routes."""

    def __init__(
        self,
        deliveries: Deliveries,
        conversation: DirectConversation,
        *,
        platform_for: Callable[[str], SlackPlatform],
    ) -> None:
        self._deliveries = deliveries
        self._intake = deliveries.intake
        self._conversation = conversation
        self._platform_for = platform_for

    async def direct_message(self, body: dict[str, Any], workspace: str, event: SlackEvent, ours: set[str]) -> None:
        """A DM is a request to the bot (Slack sends no app_mention there); edits and notices in it are not."""
        said = event.message
        if said is None or event.subtype is not None or (said.user in ours or said.bot_id in ours) or not said.user:
            return
        if said.is_bot and not self._deliveries.allow_bots:
            self._deliveries.ignored("bot", f"DM from bot {said.bot_id}")
            return
        reply_in = ChannelRef("slack", workspace, event.channel)
        work = self._conversation.answer(said.text, workspace=workspace, user=said.user, reply_in=reply_in,
                                                 thread=said.thread_ts, message_ts=said.ts)  # fmt: skip
        self._intake.take(
            work, name=f"dm-{said.ts}", claims=self._deliveries.claims(body, workspace, event.channel, said.ts),
            duplicate=self._deliveries.duplicate(f"DM {event.channel}/{said.ts}"),
            reply_error=self._poster(reply_in, said.thread_ts),
        )  # fmt: skip

    def _poster(self, reply_in: ChannelRef, thread: str | None) -> Callable[[str], Awaitable[object]]:
        """The intake's error reply in a conversation: a plain message where the person asked."""
        return lambda text: self._platform_for(reply_in.workspace).post(reply_in, text, thread_id=thread)

    async def on_pane_opened(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, say: Any,
        set_suggested_prompts: Any, save_thread_context: Any,
    ) -> None:  # fmt: skip
        try:
            thread = read_assistant_thread(event)
        except Malformed as why:
            self._deliveries.malformed(body, event, why)
            return
        context_payload = event["assistant_thread"].get("context")  # a dict: read_assistant_thread checked it

        async def greet() -> None:
            if thread.context_channel and isinstance(context_payload, dict):
                await save_thread_context(context_payload)
            await say(GREETING)
            await set_suggested_prompts(prompts=SUGGESTED_PROMPTS)

        self._intake.take(_quietly(greet, "greeting in the assistant pane"), name=f"pane-{thread.thread_ts}")

    async def on_home_opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        # Slack's agent messaging experience (agent_view, the default for apps since 2026-06) has no side pane:
        # the person talks to the bot in its Messages tab, whose opening is this event; the prompts pin to the top.
        channel = event.get("channel")
        if event.get("tab") != "messages" or not isinstance(channel, str) or not channel:
            return
        def prompts() -> Awaitable[object]:
            return client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, title="What can I do for you?", prompts=SUGGESTED_PROMPTS
            )

        self._intake.take(_quietly(prompts, "suggested prompts in the Messages tab"), name="home-prompts")

    async def on_pane_context(self, body: dict[str, Any], event: dict[str, Any], save_thread_context: Any) -> None:
        # The person switched to another channel with the pane open: that channel is what "this channel" means now.
        try:
            thread = read_assistant_thread(event)
        except Malformed as why:
            self._deliveries.malformed(body, event, why)
            return
        context_payload = event["assistant_thread"].get("context")
        if not isinstance(context_payload, dict) or not thread.context_channel:
            self._deliveries.ignored("malformed", "assistant_thread_context_changed without a channel")
            return
        saving = _quietly(lambda: save_thread_context(context_payload), "saving the pane's channel")
        self._intake.take(saving, name="pane-context")

    async def on_pane_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, set_status: Any,
        get_thread_context: Any,
    ) -> None:  # fmt: skip
        with self._deliveries.request(body):
            checked = self._deliveries.checked(body, event)
            said = None if checked is None else checked.message
            if checked is None or said is None or not said.user:
                return
            workspace = self._deliveries.installation(body, context)
            reply_in = ChannelRef("slack", workspace, checked.channel)

            async def answer() -> None:
                viewed = await get_thread_context()
                await self._conversation.answer(
                    said.text, workspace=workspace, user=str(said.user), reply_in=reply_in, thread=said.thread_ts,
                    message_ts=said.ts, viewing=viewed.channel_id if viewed is not None else None, status=set_status,
                )  # fmt: skip

            self._intake.take(
                answer(), name=f"pane-{said.ts}",
                claims=self._deliveries.claims(body, workspace, checked.channel, said.ts),
                duplicate=self._deliveries.duplicate(f"pane message {checked.channel}/{said.ts}"),
                reply_error=self._poster(reply_in, said.thread_ts),
            )  # fmt: skip
