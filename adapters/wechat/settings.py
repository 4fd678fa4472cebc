"""The Official Account's settings: its environment variables, merged into ``Settings``."""

from __future__ import annotations

from pydantic import AnyHttpUrl, SecretStr, field_validator

from adapters.tencent.settings import TencentSettings, aes_key_shape


class OfficialAccountSettings(TencentSettings):
    wechat_token: SecretStr | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None  # without it: passive replies only
    wechat_encoding_aes_key: SecretStr | None = None  # safe mode (or compatible mode, below)
    # With an AES key set, also take plain (unencrypted) pushes, still checking their signature,
    # timestamp and nonce: for the switch between WeChat's plain and safe modes.
    wechat_compatible_mode: bool = False
    wechat_api_base: AnyHttpUrl = AnyHttpUrl("https://api.weixin.qq.com")
    # Verified service account with the customer-service API: slow answers are pushed; otherwise
    # the user gets "answer coming, send any message" and the next message fetches the answer.
    wechat_account_verified: bool = False
    wechat_allowed_users: str = ""  # OpenIDs who may ask; empty = everyone

    @field_validator("wechat_encoding_aes_key", mode="before")
    @classmethod
    def _aes_key(cls, value: object) -> object:
        return aes_key_shape(value)
