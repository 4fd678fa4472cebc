"""Feishu / Lark settings: its environment variables, merged into difybot's one ``Settings``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, model_validator

Locale = Literal["en", "ja", "zh"]


class FeishuSettings(BaseModel):
    feishu_app_id: str | None = None  # cli_…
    feishu_app_secret: SecretStr | None = None
    feishu_verification_token: SecretStr | None = None  # checked on every callback
    feishu_encrypt_key: SecretStr | None = None  # callbacks arrive encrypted and signed
    # Every OpenAPI call's origin; Lark (outside China): https://open.larksuite.com
    feishu_api_base: AnyHttpUrl = AnyHttpUrl("https://open.feishu.cn")
    # websocket: the long connection (no public URL); webhook: POST /feishu/events
    feishu_event_mode: Literal["websocket", "webhook"] = "websocket"
    feishu_streaming_cards: bool = True  # CardKit streaming cards; False: PATCHed cards only
    feishu_feedback_buttons: bool = True  # 👍/👎 under answers (Dify message feedback)
    feishu_locale: Locale = "zh"  # language of the bot's own texts on Feishu
    feishu_thread_memory_hours: float = Field(72.0, gt=0)  # how long a followed thread is kept
    # who may ask: comma-separated ids; empty = everyone
    feishu_allowed_chats: str = ""  # chat ids (oc_…)
    feishu_allowed_users: str = ""  # open ids (ou_…)

    @model_validator(mode="after")
    def _webhook_needs_the_token(self) -> Self:
        webhook = self.feishu_app_id and self.feishu_event_mode == "webhook"
        if webhook and self.feishu_verification_token is None:
            raise ValueError(
                "FEISHU_EVENT_MODE=webhook needs FEISHU_VERIFICATION_TOKEN (the app's Events "
                "& Callbacks > Encryption Strategy page shows it)"
            )
        return self

    @property
    def feishu_origin(self) -> str:
        return str(self.feishu_api_base).rstrip("/")
