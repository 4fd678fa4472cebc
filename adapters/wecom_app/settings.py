"""The WeCom app's settings: its environment variables, merged into ``Settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from adapters.tencent.settings import WeComSettings, aes_key_shape


class WeComAppSettings(WeComSettings):
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    wecom_secret: SecretStr | None = None
    wecom_token: SecretStr | None = None
    wecom_encoding_aes_key: SecretStr | None = None
    # Answers as "markdown" (rendered in the WeCom client only) or plain "text" (for members
    # who read in WeChat through the WeCom plugin).
    wecom_reply_format: Literal["markdown", "text"] = "markdown"

    @field_validator("wecom_encoding_aes_key", mode="before")
    @classmethod
    def _aes_key(cls, value: object) -> object:
        return aes_key_shape(value)

    @field_validator("wecom_agent_id")
    @classmethod
    def _agent_id_number(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            raise ValueError("must be the app's numeric AgentId")
        return value
