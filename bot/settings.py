"""Settings from the environment, and optionally a TOML file named by SUPPORTBOT_CONFIG (environment wins).

Provider and platform credentials keep the names their SDKs and docs use (OPENAI_API_KEY, SLACK_BOT_TOKEN, …);
supportbot's own settings are prefixed SUPPORTBOT_. Secrets are SecretStr: their values never reach a message
or a log line.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from llm.routes import Route, RouteEntry, build_routes
from llm.servers import EntryOptions, StructuredMode
from llm.types import Task


def _env(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class ModelServer(BaseModel):
    """What one model server takes (``SUPPORTBOT_MODEL_SERVERS``); unset fields are learned from its answers."""

    model_config = {"extra": "forbid"}
    structured_output: StructuredMode | None = None
    context_window: int | None = Field(default=None, ge=256)
    max_concurrency: int | None = Field(default=None, ge=1)
    first_token_timeout_s: float | None = Field(default=None, gt=0)

    def options(self) -> EntryOptions:
        return EntryOptions(self.structured_output, self.context_window, self.max_concurrency,
                            self.first_token_timeout_s)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPPORTBOT_", extra="ignore", populate_by_name=True)

    # Providers
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY", "openai_api_key")
    openai_base_url: str | None = _env("OPENAI_BASE_URL", "openai_base_url")
    anthropic_api_key: SecretStr | None = _env("ANTHROPIC_API_KEY", "anthropic_api_key")
    anthropic_base_url: str | None = _env("ANTHROPIC_BASE_URL", "anthropic_base_url")

    # Stores
    redis_url: SecretStr | None = _env("REDIS_URL", "redis_url")  # may carry a password
    db: str = "./supportbot.db"  # SUPPORTBOT_DB: SQLite file used when REDIS_URL is absent

    # Models: routes as {"summarize": ["openai:gpt-5.4-mini", "anthropic:claude-haiku-4-5"], …}
    routes: dict[str, list[str]] = Field(default_factory=dict)
    max_tokens: dict[str, int] = Field(default_factory=dict)
    temperature: dict[str, float | None] = Field(default_factory=dict)
    cache_ttl_s: dict[str, float] = Field(default_factory=dict)  # response cache per task; 0 disables
    prices_file: str | None = None  # JSON or TOML overriding or adding to genai-prices' list prices
    # OPENAI_BASE_URL / ANTHROPIC_BASE_URL is a gateway in front of the provider itself (list prices apply);
    # otherwise a base URL that is not the provider's own is a self-hosted server, priced only by prices_file.
    base_url_is_provider: bool = False
    max_retries: int = Field(default=2, ge=0, le=10)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_token_timeout_s: float = Field(default=45.0, gt=0)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    anthropic_cache_ttl: Literal["5m", "1h"] = "5m"
    # From sending a request to the server answering with headers: a self-hosted server may queue it first, and
    # that wait does not count against the first-token timeout.
    accept_timeout_s: float = Field(default=120.0, gt=0)
    # Per route entry ("openai:MODEL", or "openai:*" for every model of that provider): structured output
    # (json_schema | json_object | tool | prompt), context window, calls at once, first-token timeout. Unset fields
    # are learned from the server's answers (refusals, overflows, cut streams) and remembered in the store.
    model_servers: dict[str, ModelServer] = Field(default_factory=dict)

    # Product
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0)  # default per channel; None: no budget
    channel_budgets_usd: dict[str, Decimal] = Field(default_factory=dict)  # channel id → monthly budget
    admins: list[str] = Field(default_factory=list)  # user ids allowed to see all channels' spend
    admin_channel: str | None = None  # where spend-spike alerts go
    support_channels: list[str] = Field(default_factory=list)  # empty: every channel the bot is in
    retention_days: int = Field(default=30, ge=1)
    faq_max_entries: int = Field(default=40, ge=1, le=500)  # entries one /faq posts, most-asked topics first
    support_staff: list[str] = Field(default_factory=list)  # user ids whose replies /faq prefers as answers
    # Refresh each channel's FAQ document this often (days) through the providers' Batch APIs; None: off.
    faq_refresh_days: float | None = Field(default=None, gt=0)
    user_requests_per_hour: int = Field(default=30, ge=1)  # model-backed requests per user (admins exempt)
    # Transcript tokens one summary call may carry (capped by the model's context window); longer threads are
    # summarized in parts. Smaller parts cost a little more in total but stay fast and within rate limits.
    summary_input_tokens: int = Field(default=24_000, ge=500)

    # Slack
    slack_bot_token: SecretStr | None = _env("SLACK_BOT_TOKEN", "slack_bot_token")
    slack_signing_secret: SecretStr | None = _env("SLACK_SIGNING_SECRET", "slack_signing_secret")
    slack_app_token: SecretStr | None = _env("SLACK_APP_TOKEN", "slack_app_token")
    slack_api_url: str | None = _env("SLACK_API_URL", "slack_api_url")
    slack_native_streaming: bool = True  # where the workspace takes streams (learned); chat.update elsewhere
    # Slack pacing (FACTS.md): where each learned budget starts — Tier 3 history in pages of 200 (the restricted
    # tier of non-Marketplace apps is learned from Slack's answers), Tier 3 chat.update with at least this burst,
    # Tier 4 for chat.appendStream (5 % under it) and Tier 2, a fifth of that, for chat.startStream/stopStream
    # (adapters/slack/buckets.py). All replicas share the budgets and what they learn.
    slack_history_per_minute: float = Field(default=50.0, gt=0)
    slack_history_page_limit: int = Field(default=200, ge=1, le=1000)
    slack_edits_per_minute: float = Field(default=50.0, gt=0)
    slack_edit_burst: int = Field(default=4, ge=1)
    slack_stream_calls_per_minute: float = Field(default=95.0, gt=0)
    slack_allow_bots: bool = False  # record and answer other bots' messages too

    # Discord
    discord_token: SecretStr | None = _env("DISCORD_TOKEN", "discord_token")
    discord_api_url: str | None = _env("DISCORD_API_URL", "discord_api_url")
    discord_gateway_url: str | None = _env("DISCORD_GATEWAY_URL", "discord_gateway_url")

    # Operations
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log collectors
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics, /healthz, /readyz; None: off
    metrics_host: str = "0.0.0.0"  # all interfaces: probes and Prometheus come from outside the container
    # Replies a dead replica left half-done (bot/orphans.py): a reply in progress beats every live_heartbeat_s; one
    # silent for orphan_after_s is finalised by whichever replica's janitor (every orphan_sweep_s) finds it first.
    # With the defaults a stuck reply is finalised at most ~45 s after its replica died (the promise is 60 s).
    live_heartbeat_s: float = Field(default=10.0, gt=0)
    orphan_after_s: float = Field(default=30.0, gt=0)
    orphan_sweep_s: float = Field(default=15.0, gt=0)
    # SIGTERM: stop taking events, let replies in flight finish for this long (Kubernetes' default grace is 30 s),
    # then exit; what is still unfinished is left to another replica's janitor.
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    purge_every_s: float = Field(default=3600.0, gt=0)  # how often retention_days is enforced

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        config_file = os.environ.get("SUPPORTBOT_CONFIG")
        if config_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=config_file),)
        return sources

    @field_validator("routes")
    @classmethod
    def _known_tasks(cls, routes: dict[str, list[str]]) -> dict[str, list[str]]:
        known = {t.value for t in Task}
        for task, specs in routes.items():
            if task not in known:
                raise ValueError(f"unknown task {task!r}; tasks are {', '.join(sorted(known))}")
            for spec in specs:
                RouteEntry.parse(spec, max_tokens=1, temperature=None)
        return routes

    @field_validator("model_servers")
    @classmethod
    def _known_entries(cls, servers: dict[str, ModelServer]) -> dict[str, ModelServer]:
        for spec in servers:
            RouteEntry.parse(spec, max_tokens=1, temperature=None)
        return servers

    def server_options(self) -> dict[str, EntryOptions]:
        return {spec: server.options() for spec, server in self.model_servers.items()}

    @property
    def providers(self) -> list[str]:
        return [
            name
            for name, key in (("openai", self.openai_api_key), ("anthropic", self.anthropic_api_key))
            if key
        ]

    def model_routes(self) -> dict[Task, Route]:
        return build_routes(
            providers=self.providers,
            overrides=self.routes,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            cache_ttl_s=self.cache_ttl_s,
        )

    def budget_for(self, channel: str) -> Decimal | None:
        return self.channel_budgets_usd.get(channel, self.monthly_budget_usd)

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


class SettingsError(Exception):
    """One clear line naming the setting; never the value."""


def env_name(field: str) -> str:
    """The environment variable a field is read from, for messages."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"SUPPORTBOT_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(
            f"invalid setting {env_name(str(first['loc'][0]) if first['loc'] else '')}: {first['msg']}"
        ) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed SUPPORTBOT_CONFIG
        raise SettingsError(f"invalid settings file SUPPORTBOT_CONFIG: {type(exc).__name__}") from None
