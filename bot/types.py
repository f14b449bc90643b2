"""The neutral chat language: what adapters translate platform payloads into at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ChannelRef:
    platform: str  # slack, discord, console
    workspace: str  # Slack team id, Discord guild id, "local"
    channel: str

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}"


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: ChannelRef
    message_id: str
    thread_id: str | None = None  # the thread's root message id; None outside a thread


@dataclass(frozen=True, slots=True)
class ChatMessage:
    ref: MessageRef
    author: str  # stable user id
    author_name: str  # display name, as people in the channel know them
    text: str
    sent_at: datetime
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class Mention:
    """Someone asked the bot to summarize: ``message`` is the mention itself."""

    message: ChatMessage
    fresh: bool = False  # the user asked for a fresh summary instead of an incremental one


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # faq, llmcost
    args: str
    channel: ChannelRef
    user: str
    user_name: str = ""
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class Inquiry:
    channel: ChannelRef
    message_id: str
    author: str
    text: str
    asked_at: datetime
    link: str = ""
    group: str = ""  # near-duplicate group key


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    """What a platform allows; each adapter fills these from its own documented limits."""

    max_message_chars: int
    min_edit_interval_s: float  # pacing floor between edits of one message
    markup: str = "plain"  # plain, slack_mrkdwn, discord_markdown
    extra: dict[str, float] = field(default_factory=dict)
    # How long a live reply may hold back its first message waiting for the model's first text, so that message
    # carries text instead of a placeholder that costs an edit; 0 posts the placeholder at once. Only worth it where
    # the platform shows the user the bot is working meanwhile (Discord's typing indicator).
    first_post_grace_s: float = 0.0


class PlatformRateLimited(Exception):
    """The platform answered 429; ``retry_after_s`` is its Retry-After."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


class MessageTooLong(Exception):
    """The platform refused the text as too long (Slack's msg_too_long)."""


class MessageGone(Exception):
    """The message or channel no longer exists or the bot lost access to it."""


class ReplyStopped(Exception):
    """The person stopped this reply where it is shown (Slack's stop button on a streamed reply): nothing more is
    written to it, and the work behind it is not worth finishing."""
