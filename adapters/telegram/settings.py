"""Telegram's settings: its environment variables, merged into difybot's one ``Settings``."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator, model_validator

# setWebhook's secret_token: 1-256 characters, A-Z, a-z, 0-9, _ and - (Bot API docs).
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
GroupScope = Literal["thread", "user", "chat"]


class TelegramSettings(BaseModel):
    telegram_bot_token: SecretStr | None = None  # from @BotFather: "123456:ABC-..."
    telegram_api_base: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    telegram_webhook_url: AnyHttpUrl | None = None  # set: webhook mode at POST /telegram
    telegram_webhook_secret: SecretStr | None = None  # required in webhook mode
    telegram_drafts: bool = True  # stream private answers with sendMessageDraft (Bot API 9.3+)
    # One conversation per reply chain or forum topic (thread), per member (user) or per group
    # (chat); TELEGRAM_GROUP_SCOPES overrides it for some chats: "-100123:chat,-100456:user".
    telegram_group_scope: GroupScope = "thread"
    telegram_group_scopes: str = ""
    telegram_feedback_buttons: bool = True  # 👍/👎 under answers (Dify message feedback)
    telegram_poll_timeout: int = Field(25, ge=1, le=50)  # seconds a getUpdates is held open
    # who may ask: comma-separated chat ids / user ids; empty = everyone
    telegram_allowed_chats: str = ""
    telegram_allowed_users: str = ""

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("telegram_group_scopes")
    @classmethod
    def _scopes_shape(cls, value: str) -> str:
        parse_group_scopes(value)
        return value

    @model_validator(mode="after")
    def _webhook_has_secret(self) -> Self:
        if self.telegram_webhook_url is not None and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not: webhook mode "
                "needs a secret (1-256 of A-Z, a-z, 0-9, _ and -)"
            )
        return self

    @property
    def telegram_base(self) -> str:
        return str(self.telegram_api_base).rstrip("/")


def parse_group_scopes(value: str) -> dict[int, str]:
    """``"-100123:chat,-100456:user"`` → {chat id: scope}; ValueError naming the bad item."""
    scopes: dict[int, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        chat, _, scope = item.rpartition(":")
        if not re.fullmatch(r"-?\d+", chat.strip()) or scope.strip() not in (
            "thread",
            "user",
            "chat",
        ):
            raise ValueError(f"{item!r} is not <chat id>:thread|user|chat")
        scopes[int(chat)] = scope
    return scopes
