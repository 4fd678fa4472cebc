"""Settings the WeChat Official Account, the WeCom app and the WeCom AI bot share."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr

Locale = Literal["en", "ja", "zh"]
# WeChat and WeCom generate EncodingAESKey as 43 letters and digits (base64 of 32 bytes, "=" cut).
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")


class TencentSettings(BaseModel):
    # Seconds a WeChat delivery waits for the answer before giving up on a passive reply
    # (WeChat hangs up at 5 s). Also bounds the WeCom AI bot's and the opening statement's waits.
    wechat_reply_window: float = Field(4.5, gt=0, lt=5)
    wechat_locale: Locale = "zh"  # language of the bot's own texts on WeChat and WeCom


class WeComSettings(TencentSettings):
    """What the WeCom app and the WeCom AI bot share."""

    wecom_api_base: AnyHttpUrl = AnyHttpUrl("https://qyapi.weixin.qq.com")
    wecom_allowed_users: str = ""  # WeCom user ids who may ask (app and AI bot); empty = all


def aes_key_shape(value: object) -> object:
    """An EncodingAESKey checked at load, so a bad key stops startup naming its variable (an
    empty one means no key)."""
    if value is None or value == "":
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if not _AES_KEY.fullmatch(text):
        raise ValueError("must be the EncodingAESKey the platform generated: 43 letters and digits")
    return value
