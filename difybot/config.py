"""Settings from the environment and ``.env``: the only module that reads them."""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from dotenv import dotenv_values
from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.errors import ConfigError
from bot.texts import BUILT_IN, check_overrides, merged
from difybot.platforms import PLATFORMS

if TYPE_CHECKING:
    from bot.routing import Routing

Locale = Literal["en", "ja", "zh"]
# Dify's app modes (``bot.dify.client.MODES``); empty: read from GET /info at startup.
AppMode = Literal["", "chat", "agent-chat", "advanced-chat", "agent", "workflow", "completion"]
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


class CoreSettings(BaseSettings):
    """The core's settings; ``Settings`` adds every platform's (README documents each one by its
    environment name)."""

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

    # access
    access_denied_reply: Literal["refuse", "silent"] = "refuse"
    # Human Input forms: anyone in the place may answer (approval flows); else the asker and
    # the app's ``approvers`` (routes file). SHOW_REASONING: the model's reasoning as status.
    forms_anyone_may_answer: bool = False
    show_reasoning: bool = False
    rate_limit_per_minute: float = Field(20.0, ge=0)  # 0 = no limit
    rate_limit_burst: int = Field(10, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for collectors

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
        problems = check_overrides(value, merged(BUILT_IN, *(p.texts for p in PLATFORMS)))
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _credentials_complete(self) -> Self:
        problems = [
            found for spec in PLATFORMS if (found := spec.credentials.problem(spec.title, self))
        ]
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


# Every setting: the core's and each platform's (their models merge into one, so each variable
# keeps its plain name, SLACK_BOT_TOKEN, and one .env serves all). Typed as ``CoreSettings``:
# the root reads only the core's fields; each platform's ``build`` reads its own.
Settings: type[CoreSettings] = create_model(
    "Settings",
    __base__=(CoreSettings, *(spec.settings for spec in PLATFORMS)),
    __doc__="Every setting difybot reads: the core's and each platform's.",
)


class DatabaseSettings(BaseSettings):
    """The settings ``difybot db …`` needs: no Dify key required to migrate a database."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def notices(self) -> list[str]:
        return settings_notices(self)


def settings_notices(
    settings: CoreSettings | DatabaseSettings, *, allowed: frozenset[str] = frozenset()
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


def _routed_variables(settings: CoreSettings) -> frozenset[str]:
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


def load_settings(**overrides: Any) -> CoreSettings:
    """Read the settings; a missing or malformed value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a source could not be read at all (pydantic-settings' own)
        raise ConfigError(str(exc)) from None


def load_routes(settings: CoreSettings, *, environ: Mapping[str, str] | None = None) -> Routing:
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
