"""Settings from the environment and ``.env``: the only module that reads them."""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from dotenv import dotenv_values
from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.errors import ConfigError
from bot.texts import check_overrides

if TYPE_CHECKING:
    from bot.routing import Routing

Locale = Literal["en", "ja", "zh"]
# Dify's app modes (``bot.dify.client.MODES``); empty: read from GET /info at startup.
AppMode = Literal["", "chat", "agent-chat", "advanced-chat", "agent", "workflow", "completion"]
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


ENV_FILE = ".env"
# Variables a .env may hold for others: docker/compose.yml's, and the test suite's database.
FOREIGN_VARIABLES = frozenset({"DIFYBOT_PORT", "POSTGRES_PASSWORD", "TEST_DATABASE_URL"})
# The default database before it moved to the per-user data folder (relative to the cwd).
OLD_DEFAULT_DATABASE = Path("data") / "difybot.db"


def default_database_url() -> str:
    """SQLite in the per-user data folder (``~/.local/share/difybot`` on Linux), so every
    command finds the same conversations from whatever folder it is started."""
    from platformdirs import user_data_path

    return f"sqlite+aiosqlite:///{user_data_path('difybot', appauthor=False) / 'difybot.db'}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A platform's credential set: all or nothing. Setting any of ``required``, ``one_of`` or
    ``optional`` turns the platform on, and then every ``required`` one and at least one of
    ``one_of`` must be set too (Slack's two modes, each with its own secret)."""

    platform: str
    required: tuple[str, ...]
    one_of: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def problem(self, settings: BaseSettings) -> str:
        present = {name for name in self.names if getattr(settings, name) is not None}
        if not present:
            return ""
        missing = [name.upper() for name in self.required if name not in present]
        if self.one_of and not present & set(self.one_of):
            missing.append(" or ".join(name.upper() for name in self.one_of))
        if not missing:
            return ""
        given = ", ".join(name.upper() for name in self.names if name in present)
        verb = "is" if len(present) == 1 else "are"
        return (
            f"{self.platform} is half configured: {given} {verb} set, but not "
            f"{' nor '.join(missing)}; set those too, or unset {given} to leave it off"
        )

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.required, *self.one_of, *self.optional)


CREDENTIALS = (
    Credentials("Slack", ("slack_bot_token",), one_of=("slack_app_token", "slack_signing_secret")),
    Credentials(
        "the WeChat Official Account",
        ("wechat_token", "wechat_app_id"),
        optional=("wechat_app_secret", "wechat_encoding_aes_key"),
    ),
    Credentials(
        "the WeCom app",
        (
            "wecom_corp_id",
            "wecom_agent_id",
            "wecom_secret",
            "wecom_token",
            "wecom_encoding_aes_key",
        ),
    ),
    Credentials("the WeCom AI bot", ("wecom_bot_token", "wecom_bot_encoding_aes_key")),
)


class Settings(BaseSettings):
    """Every setting difybot reads; README documents each one by its environment name."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Dify
    dify_api_base: AnyHttpUrl = AnyHttpUrl("https://api.dify.ai/v1")
    dify_api_key: SecretStr
    dify_app_mode: AppMode = ""  # empty: read from GET /info at startup
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
    database_url: str = Field(default_factory=default_database_url)
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
    # NoDecode: parsed by ``_texts_json``, so that bad JSON names BOT_TEXTS like any other value
    bot_texts: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
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

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """``SLACK_BOT_TOKEN=`` (as a copied .env.example leaves it) means "not set"."""
        field = cls.model_fields[info.field_name or ""]
        if value == "" and field.default is None and field.default_factory is None:
            return None
        return value

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

    @field_validator("bot_texts", mode="before")
    @classmethod
    def _texts_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
            if not isinstance(value, dict):
                raise ValueError('must be a JSON object, e.g. {"error": "Oops, try again."}')
        return value

    @field_validator("bot_texts")
    @classmethod
    def _texts_known(cls, value: dict[str, str]) -> dict[str, str]:
        problems = check_overrides(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _credentials_complete(self) -> Self:
        problems = [found for c in CREDENTIALS if (found := c.problem(self))]
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def notices(self) -> list[str]:
        """What loads but looks like a mistake: one warning each (see ``settings_notices``)."""
        return settings_notices(self, allowed=_routed_variables(self))

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

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def notices(self) -> list[str]:
        return settings_notices(self)


def settings_notices(
    settings: Settings | DatabaseSettings, *, allowed: frozenset[str] = frozenset()
) -> list[str]:
    """Warnings for settings that load but look wrong: a variable in .env that difybot does not
    read but resembles one it does, and a database left at the old default path."""
    notices = [
        f"{ENV_FILE}: {name} is not a difybot setting and is ignored"
        + (f"; did you mean {match}?" if match else "")
        for name, match in unknown_variables(_dotenv(), allowed=allowed)
    ]
    if "database_url" not in settings.model_fields_set and OLD_DEFAULT_DATABASE.is_file():
        notices.append(
            f"./{OLD_DEFAULT_DATABASE} is the database of an earlier difybot, which kept it in "
            f"the working folder; this one uses {settings.database_url}. To keep "
            f"the old conversations, set DATABASE_URL=sqlite+aiosqlite:///./{OLD_DEFAULT_DATABASE}"
        )
    return notices


def unknown_variables(
    variables: Mapping[str, str], *, allowed: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Each variable that starts like a setting (``SLACK_…``, or a near miss like ``SLAK_…``)
    but is none, with the closest setting name ("" if none is close)."""
    known = sorted(name.upper() for name in Settings.model_fields)
    prefixes = {name.split("_")[0] for name in known if "_" in name}
    found = []
    for name in variables:
        upper = name.upper()
        if upper in known or upper in allowed or upper in FOREIGN_VARIABLES:
            continue
        head = upper.split("_")[0]
        near = head in prefixes or difflib.get_close_matches(head, prefixes, n=1, cutoff=0.75)
        if "_" in upper and near:
            match = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
            found.append((name, match[0] if match else ""))
    return found


def _routed_variables(settings: Settings) -> frozenset[str]:
    """The variables ROUTES_FILE names for its apps' keys: settings too, in their way."""
    try:
        return frozenset(spec.api_key_env.upper() for spec in load_routes(settings).extra_apps)
    except ConfigError:
        return frozenset()


def load_database_settings(**overrides: Any) -> DatabaseSettings:
    try:
        return DatabaseSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a missing or malformed value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a source could not be read at all (pydantic-settings' own)
        raise ConfigError(str(exc)) from None


def load_routes(settings: Settings, *, environ: Mapping[str, str] | None = None) -> Routing:
    """The routing table from ROUTES_FILE (one default app when unset). The file names each
    app's key by variable; those are read here, from the environment or ``.env``."""
    from bot.routing import Routing
    from difybot.routes_file import parse_routes

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
    values = dotenv_values(ENV_FILE) if Path(ENV_FILE).is_file() else {}
    return {name: value for name, value in values.items() if value is not None}


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable, by its environment name, never echoing the value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in error["loc"][:1]).upper() or "settings"
        message = "is required" if error["type"] == "missing" else error["msg"]
        message = message.removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "; ".join(lines)
