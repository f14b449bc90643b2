"""The console adapter: the whole product in a terminal, and transcripts replayed through it.

Interactive: type messages; `@bot …` mentions the bot, `/faq [days]` and `/llmcost [period]` are commands,
`/channel NAME`, `/thread ID` (or `/thread` to leave), `/user NAME` change who and where you are, `/help` lists
them. Every reply is printed: streamed ones as they grow, one-line ones (usage, refusals) and reports whole.
Replay: `supportbot console --replay FILE.jsonl`, one JSON object per line with `channel`, `user`, `text` and
optional `thread` and `ts`; every bot reply is printed (with `--show-edits`, every edit, timestamped), and the
command exits once every reply is final.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bot.app import App
from bot.intake import Intake
from bot.pacing import IntervalPacer
from bot.types import ChannelRef, ChatMessage, Command, MessageRef, PlatformLimits

BOT_NAME = "bot"
WORKSPACE = "local"
HELP = (
    "Commands: @bot summarize · /faq [days] · /llmcost [today|7d|30d] [all] · /channel NAME · /thread [ID] · "
    "/user NAME · /help · Ctrl-D quits. Anything else is a message in the channel."
)
# Words that move you around in the interactive console (the rest of /… goes to the bot as a command).
MOVES = frozenset({"/channel", "/thread", "/user"})
COMMANDS = frozenset({"/faq", "/llmcost"})
_COMMAND_WORD = re.compile(r"/[A-Za-z][\w-]*")
# A terminal has no message limit; a generous one still exercises continuation messages for very long replies.
CONSOLE_LIMITS = PlatformLimits(max_message_chars=8000, min_edit_interval_s=0.05, markup="plain")


@dataclass
class _Posted:
    ref: MessageRef
    text: str
    versions: list[tuple[float, str]] = field(default_factory=list)


class ConsolePlatform:
    """ChatPlatform over a terminal: messages live in memory; edits can be echoed as they happen."""

    limits = CONSOLE_LIMITS

    def __init__(self, *, out: TextIO = sys.stdout, show_edits: bool = False, live: bool = False) -> None:
        self._out = out
        self._show_edits = show_edits
        self.live = live  # interactive: print the growing text as it arrives
        self._ids = itertools.count(1)
        self._t0 = time.monotonic()
        self.posted: dict[str, _Posted] = {}
        self.history: list[ChatMessage] = []  # what users said, for fetch_thread
        self._shown: dict[str, str] = {}  # live mode: what the terminal shows of each message so far
        self.pacer = IntervalPacer(min_interval_s=self.limits.min_edit_interval_s)  # a terminal has no shared budget

    def next_id(self) -> str:
        return f"m{next(self._ids)}"

    async def post(
        self, channel: ChannelRef, text: str, *, thread_id: str | None = None, body: str | None = None
    ) -> MessageRef:
        ref = MessageRef(channel, self.next_id(), thread_id)
        self.posted[ref.message_id] = _Posted(ref, text)
        self._version(ref, text, "post", body=body)
        return ref

    async def edit(self, ref: MessageRef, text: str, *, final: bool, body: str | None = None) -> None:
        posted = self.posted[ref.message_id]
        self._version(ref, text, "edit", body=body)
        posted.text = text

    async def fetch_thread(
        self, ref: MessageRef, *, since: datetime | None = None, progress: Callable[[str], None] | None = None
    ) -> list[ChatMessage]:
        thread = ref.thread_id or ref.message_id
        return [
            m
            for m in self.history
            if m.ref.channel == ref.channel
            and thread in (m.ref.thread_id, m.ref.message_id)
            and (since is None or m.sent_at > since)
        ]

    def _version(self, ref: MessageRef, text: str, kind: str, *, body: str | None) -> None:
        now = time.monotonic() - self._t0
        self.posted[ref.message_id].versions.append((now, text))
        if self._show_edits:
            self._out.write(f"[{now:8.3f}s] {kind} {ref.message_id} in #{ref.channel.channel}: {text!r}\n")
        elif self.live:
            # The reply's own text, growing as it grows; the placeholder (an empty body) is not worth a line.
            shown = text if body is None else body
            before = self._shown.get(ref.message_id)
            if before is None:
                self._out.write(f"\n{BOT_NAME}> {shown}")
            elif shown.startswith(before):
                self._out.write(shown[len(before) :])
            elif shown:
                self._out.write(f"\n{BOT_NAME} (edited)> {shown}")
            self._shown[ref.message_id] = shown
        self._out.flush()

    def final_text(self, refs: list[MessageRef]) -> str:
        return "".join(self.posted[r.message_id].text for r in refs)


class Console:
    """Turns lines of input into the neutral requests the intake runs (one at a time, in order: a transcript
    replays the same way every time)."""

    def __init__(self, app: App, platform: ConsolePlatform, *, out: TextIO = sys.stdout) -> None:
        self.app = app
        self.platform = platform
        self.out = out
        self.replies: list[str] = []
        self.intake = Intake(app, platform="console")

    async def handle(self, *, channel: str, user: str, text: str, thread: str | None = None, ts: Any = None) -> None:
        ref_channel = ChannelRef("console", WORKSPACE, channel)
        text = text.strip()
        if not text:
            return
        if text.startswith("/faq") or text.startswith("/llmcost"):
            name, _, args = text[1:].partition(" ")
            command = self.intake.command(name, args, ref_channel, user, user_name=user)
            await self.intake.now(self._command(command), name=f"/{name}", reply_error=self._sorry(channel))
            return
        message = ChatMessage(
            ref=MessageRef(ref_channel, str(ts) if ts is not None else self.platform.next_id(), thread),
            author=user,
            author_name=user,
            text=text,
            sent_at=_time(ts),
        )
        self.platform.history.append(message)
        mentioned = text.lower().startswith(f"@{BOT_NAME}")
        await self.app.assistant.record(message, mentions_bot=mentioned)
        if mentioned:
            await self.intake.now(self._mentioned(message), name="mention", reply_error=self._sorry(channel))

    async def _mentioned(self, message: ChatMessage) -> None:
        outcome = await self.app.assistant.summarize(self.intake.mention(message), self.platform)
        text = self.platform.final_text(outcome.refs)
        self._print_reply(text, message.ref.channel.channel, posted=bool(outcome.refs))

    def _sorry(self, channel: str) -> Callable[[str], Awaitable[None]]:
        """The intake's error reply: printed like any other one-line answer."""

        async def say(text: str) -> None:
            self._print_reply(text, channel, posted=False)

        return say

    async def _command(self, command: Command) -> None:
        if command.name == "faq":
            outcome = await self.app.assistant.faq(command, self.platform)
            self._print_reply(self.platform.final_text(outcome.refs), command.channel.channel, posted=bool(outcome.refs))
            return
        report = await self.app.assistant.spend(command)
        self._print_reply(report.to_text(), command.channel.channel, posted=False)  # a report is an answer, never a post

    def _print_reply(self, text: str, channel: str, *, posted: bool) -> None:
        """Live, a posted reply is already on screen (printed as it grew); anything else is printed whole."""
        self.replies.append(text)
        if self.platform.live:
            self.out.write("\n" if posted else f"\n{BOT_NAME}> {text}\n")
        else:
            self.out.write(f"--- {BOT_NAME} in #{channel} ---\n{text}\n")
        self.out.flush()


def _time(ts: Any) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    if isinstance(ts, int | float) or (isinstance(ts, str) and ts.replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(ts), UTC)
    parsed = datetime.fromisoformat(str(ts))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _banner(app: App, *, log_file: str | None = None) -> str:
    providers = app.settings.providers
    lines = ["supportbot console — type a message; @bot to summarize, /faq, /llmcost, /help; Ctrl-D to quit."]
    if log_file:
        lines.append(f"Logs go to {log_file}.")
    if not providers:
        lines.append(
            "No model provider is configured: set OPENAI_API_KEY and/or ANTHROPIC_API_KEY (and OPENAI_BASE_URL / "
            "ANTHROPIC_BASE_URL for a compatible server). Messages are still recorded; mentions will say so."
        )
    else:
        lines.append(
            f"Models from: {', '.join(providers)}. Store: {'redis' if app.settings.redis_url else app.settings.db}."
        )
    return "\n".join(lines)


async def replay(app: App, path: str, *, show_edits: bool, out: TextIO = sys.stdout) -> int:
    console = Console(app, ConsolePlatform(out=out, show_edits=show_edits), out=out)
    lines = (await asyncio.to_thread(Path(path).read_text, encoding="utf-8")).splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            channel, user, text = str(item["channel"]), str(item["user"]), str(item["text"])
        except (ValueError, KeyError, TypeError) as exc:
            out.write(f"line {number}: skipped, not a transcript line ({type(exc).__name__})\n")
            continue
        thread = item.get("thread")
        await console.handle(
            channel=channel,
            user=user,
            text=text,
            thread=None if thread is None else str(thread),
            ts=item.get("ts"),
        )
    return 0


async def interactive(
    app: App, *, out: TextIO = sys.stdout, read: Callable[[str], str] = input, log_file: str | None = None
) -> int:
    console = Console(app, ConsolePlatform(out=out, live=True), out=out)
    out.write(_banner(app, log_file=log_file) + "\n")
    channel, user, thread = "general", "you", None
    loop = asyncio.get_running_loop()
    while True:
        prompt = f"#{channel}{'/' + thread if thread else ''} {user}> "
        try:
            line = await loop.run_in_executor(None, read, prompt)
        except EOFError:
            out.write("\n")
            return 0
        word, _, rest = line.strip().partition(" ")
        if word == "/channel" and rest.strip():
            channel, thread = rest.strip().lstrip("#"), None
        elif word == "/thread":
            thread = rest.strip() or None
        elif word == "/user" and rest.strip():
            user = rest.strip()
        elif _COMMAND_WORD.fullmatch(word) and word not in COMMANDS:
            # /help, a move without its argument, or a typo: say what works instead of posting it as a message.
            out.write(("" if word == "/help" else f"Unknown or incomplete command {word}. ") + HELP + "\n")
            out.flush()
        else:
            await console.handle(channel=channel, user=user, text=line, thread=thread)


async def run_console(
    app: App, *, replay_file: str | None = None, show_edits: bool = False, log_file: str | None = None
) -> int:
    if replay_file:
        return await replay(app, replay_file, show_edits=show_edits)
    return await interactive(app, log_file=log_file)
