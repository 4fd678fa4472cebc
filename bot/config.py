"""Settings from the environment and ``.env``: the only module that reads them."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dotenv import dotenv_values
from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.routing import Routing

Locale = Literal["en", "ja", "zh"]
# The platforms a routes file may name (one per adapter; ``wecom_bot`` is the WeCom AI bot).
PLATFORMS = frozenset({"slack", "wechat", "wecom", "wecom_bot", "console"})
# WeChat and WeCom generate EncodingAESKey as 43 letters and digits (base64 of 32 bytes, "=" cut).
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,47}")


def _host_name() -> str:
    """The default REPLICA_ID: unique per machine, container or pod, and the same after a
    restart, so a replica recognises the answers it left unfinished."""
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:48].strip("-.")
    return name or "difybot"


class Settings(BaseSettings):
    """Every setting difybot reads; README documents each one by its environment name."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Dify
    dify_api_base: AnyHttpUrl = AnyHttpUrl("https://api.dify.ai/v1")
    dify_api_key: SecretStr
    dify_app_mode: str = ""  # empty: read from GET /info at startup
    dify_workflow_query_variable: str = "query"
    dify_connect_timeout: float = Field(5.0, gt=0)
    dify_read_timeout: float = Field(60.0, gt=0)
    dify_first_event_timeout: float = Field(15.0, gt=0)
    dify_max_retries: int = Field(3, ge=0, le=10)
    dify_auto_generate_name: bool = True
    # Several Dify apps: a YAML file of apps (keys by variable name) and routes to them.
    routes_file: str = ""

    # Dify's FILES_URL when it is not the API's host (Dify Cloud, a separate file domain):
    # answer files are fetched only from the API origin and this one.
    dify_files_url: AnyHttpUrl | None = None

    # attachments, both ways
    files_default_query: str = ""  # the question for a file-only message; empty: localized text
    files_max_mb: float = Field(100.0, gt=0)  # any one file, in or out, on top of Dify's limits

    # store
    database_url: str = "sqlite+aiosqlite:///./data/difybot.db"
    database_pool_size: int = Field(5, ge=1)
    database_max_overflow: int = Field(10, ge=0)
    database_auto_migrate: bool = True
    conversation_idle_expiry: float = Field(0.0, ge=0)
    journal_lease_seconds: float = Field(30.0, ge=2)
    # This replica's identity in the journal: stable across restarts, unique among live replicas.
    replica_id: str = Field(default_factory=_host_name)

    # HTTP listener
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    webhook_body_timeout: float = Field(5.0, gt=0, le=60)  # seconds for a webhook's whole body

    # answers
    stream_edit_interval: float | None = Field(None, gt=0)
    conversation_scope: Literal["", "user", "thread", "channel"] = ""
    bot_locale: Locale = "en"
    bot_texts: dict[str, str] = Field(default_factory=dict)
    shutdown_timeout: float = Field(25.0, ge=0)

    # access: comma-separated ids; empty = everyone
    slack_allowed_teams: str = ""
    slack_allowed_channels: str = ""
    slack_allowed_users: str = ""
    wechat_allowed_users: str = ""
    wecom_allowed_users: str = ""
    access_denied_reply: Literal["refuse", "silent"] = "refuse"
    rate_limit_per_minute: float = Field(20.0, ge=0)  # 0 = no limit
    rate_limit_burst: int = Field(10, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for collectors

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: AnyHttpUrl = AnyHttpUrl("https://slack.com/api/")
    slack_native_streaming: bool = True  # chat.startStream in threads; chat.update otherwise
    slack_markdown_blocks: bool = True  # answers as `markdown` blocks; False: mrkdwn sections
    slack_dm_threads: bool = False  # answer DMs in a thread under the question
    slack_allow_bots: bool = False  # answer other bots' messages too
    slack_update_budget_per_minute: int = Field(45, ge=1)  # chat.update per workspace (Tier 3)
    slack_budget_scale: float = Field(1.0, gt=0)  # times every other per-workspace Slack budget
    slack_thread_memory_hours: float = Field(72.0, gt=0)  # how long a followed thread is kept
    slack_feedback_buttons: bool = True  # 👍/👎 under answers (Dify message feedback)
    slack_user_lookup: bool = False  # users.info per asker (needs users:read): name, locale

    # WeChat Official Account
    wechat_token: SecretStr | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_encoding_aes_key: SecretStr | None = None
    # With an AES key set, also take plain (unencrypted) pushes, still checking their signature,
    # timestamp and nonce: for the switch between WeChat's plain and safe modes.
    wechat_compatible_mode: bool = False
    wechat_api_base: AnyHttpUrl = AnyHttpUrl("https://api.weixin.qq.com")
    # Verified service account with the customer-service API: slow answers are pushed; otherwise
    # the user gets "answer coming, send any message" and the next message fetches the answer.
    wechat_account_verified: bool = False
    # Seconds a WeChat delivery waits for the answer before giving up on a passive reply
    # (WeChat hangs up at 5 s). Also bounds the WeCom AI bot's and the opening statement's waits.
    wechat_reply_window: float = Field(4.5, gt=0, lt=5)
    wechat_locale: Locale = "zh"  # language of the bot's own texts on WeChat and WeCom

    # WeCom self-built app and AI bot
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    wecom_secret: SecretStr | None = None
    wecom_token: SecretStr | None = None
    wecom_encoding_aes_key: SecretStr | None = None
    wecom_api_base: AnyHttpUrl = AnyHttpUrl("https://qyapi.weixin.qq.com")
    wecom_bot_token: SecretStr | None = None
    wecom_bot_encoding_aes_key: SecretStr | None = None
    # WeCom app answers as "markdown" (rendered in the WeCom client only) or plain "text"
    # (for members who read in WeChat through the WeCom plugin).
    wecom_reply_format: Literal["markdown", "text"] = "markdown"

    @field_validator("dify_api_key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator(
        "wechat_encoding_aes_key", "wecom_encoding_aes_key", "wecom_bot_encoding_aes_key",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _aes_key_shape(cls, value: object) -> object:
        """Checked here, at load, so a bad key stops startup naming its variable (an empty
        one means no key, as before)."""
        if value is None or value == "":
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not _AES_KEY.fullmatch(text):
            raise ValueError(
                "must be the EncodingAESKey the platform generated: 43 letters and digits"
            )
        return value

    @field_validator("replica_id")
    @classmethod
    def _replica_id_shape(cls, value: str) -> str:
        if not _REPLICA_ID.fullmatch(value):
            raise ValueError("must be 1-48 letters, digits, '.', '_', ':' or '-'")
        return value

    @property
    def dify_base(self) -> str:
        """The API base without a trailing slash, ready for ``base_url``."""
        return str(self.dify_api_base).rstrip("/")

    def secrets(self) -> list[str]:
        """Every configured secret value (for log scrubbing)."""
        found = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
        return found


class DatabaseSettings(BaseSettings):
    """The settings ``difybot db …`` needs: no Dify key required to migrate a database."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Settings.model_fields["database_url"].default
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def load_database_settings(**overrides: Any) -> DatabaseSettings:
    try:
        return DatabaseSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a missing or malformed value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_routes(settings: Settings, *, environ: Mapping[str, str] | None = None) -> Routing:
    """The routing table from ROUTES_FILE (one default app when unset). The file names each
    app's key by variable; those are read here, from the environment or ``.env``."""
    from bot.routes_file import parse_routes
    from bot.routing import Routing

    if not settings.routes_file:
        return Routing()
    path = Path(settings.routes_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ROUTES_FILE: cannot read {path}: {exc}") from None
    if environ is None:
        environ = {**_dotenv(), **os.environ}
    return parse_routes(text, source=str(path), environ=environ)


def _dotenv() -> dict[str, str]:
    values = dotenv_values(".env") if Path(".env").is_file() else {}
    return {name: value for name, value in values.items() if value is not None}


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable, by its environment name, never echoing the value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in error["loc"][:1]).upper() or "settings"
        message = "is required" if error["type"] == "missing" else error["msg"]
        lines.append(f"{name}: {message}")
    return "; ".join(lines)
