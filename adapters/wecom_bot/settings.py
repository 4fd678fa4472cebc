"""The WeCom AI bot's settings: its environment variables, merged into ``Settings``."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from adapters.tencent.settings import WeComSettings, aes_key_shape


class WeComBotSettings(WeComSettings):
    wecom_bot_token: SecretStr | None = None
    wecom_bot_encoding_aes_key: SecretStr | None = None

    @field_validator("wecom_bot_encoding_aes_key", mode="before")
    @classmethod
    def _aes_key(cls, value: object) -> object:
        return aes_key_shape(value)
