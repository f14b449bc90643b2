"""Log lines for operators: JSON or text, stamped with the request id, and never carrying a secret.

Configured secret values and common token shapes become "[redacted]" in the message, the traceback and every
extra field, whatever logger the line came from (the filters sit on the root handler).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from pydantic import SecretStr

from bot.requestids import current_request
from bot.settings import Settings

REDACTED = "[redacted]"
# Configured secrets shorter than this are not searched for: a one-letter test key would garble every line.
MIN_SECRET_CHARS = 6
TOKEN_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\w-])sk-[\w-]{16,}"), REDACTED),  # OpenAI sk-/sk-proj-, Anthropic sk-ant-
    (re.compile(r"(?<![\w-])xox[abeoprs]-[\w-]{8,}"), REDACTED),  # Slack bot/user tokens
    (re.compile(r"(?<![\w-])xapp-[\w-]{8,}"), REDACTED),  # Slack app-level (Socket Mode) token
    (re.compile(r"\b(Bot|Bearer) [\w.~+/=-]{16,}"), rf"\1 {REDACTED}"),  # Authorization header values
    (re.compile(r"(?<![\w.-])[\w-]{24,}\.[\w-]{6}\.[\w-]{27,}"), REDACTED),  # Discord bot token
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),  # password in a URL
)
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "request_tag",
}


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret setting's value, and the password inside any that is a URL (REDIS_URL)."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            secret = value.get_secret_value()
            found.append(secret)
            with contextlib.suppress(ValueError):
                if password := urlsplit(secret).password:
                    found.append(password)
    return found


class SecretRedactor(logging.Filter):
    """A handler filter that rewrites each record: configured secret values and common token shapes become
    "[redacted]" in the message, the traceback, the stack and every extra field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in TOKEN_SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string still gets logged, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS or value is None or isinstance(value, bool | int | float):
                continue
            setattr(record, key, self.redact(value if isinstance(value, str) else str(value)))
        return True


_PLAIN = logging.Formatter()


class RequestContextFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request) and the request's fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_request()
        record.request_id = ctx.request_id if ctx else None
        record.request_tag = f" [{ctx.request_id}]" if ctx else ""
        if ctx:
            for key, value in ctx.fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For humans: the classic line, with the request id in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_tag"):
            record.request_tag = ""
        return super().format(record)


def log_handler(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """A handler in the configured format (SUPPORTBOT_LOG_FORMAT) that stamps request ids and redacts secrets."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(SecretRedactor(configured_secrets(settings)))
    return handler


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with ``log_handler(settings)``. Filters sit on the handler, not on a
    logger: a logger's filters never see records propagated from its children (httpx, discord, slack_bolt)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = log_handler(settings, stream=stream)
    root.addHandler(handler)
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    root.setLevel(level)
    # The HTTP clients log every request at INFO: one line per model call and per Slack call buried what the bot
    # itself said (doctor's checks among them). Kept at DEBUG, where someone tracing calls wants them.
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


CHATTY_LOGGERS = ("httpx", "httpx2")
