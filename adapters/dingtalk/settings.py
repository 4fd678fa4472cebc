"""DingTalk's settings: its environment variables, merged into difybot's one ``Settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr


class DingTalkSettings(BaseModel):
    dingtalk_client_id: str | None = None  # the app's AppKey (also the robot's robotCode)
    dingtalk_client_secret: SecretStr | None = None  # AppSecret: signs callbacks, gets tokens
    dingtalk_event_mode: Literal["stream", "webhook"] = "stream"  # webhook: POST /dingtalk
    dingtalk_api_base: AnyHttpUrl = AnyHttpUrl("https://api.dingtalk.com")
    dingtalk_oapi_base: AnyHttpUrl = AnyHttpUrl("https://oapi.dingtalk.com")
    dingtalk_card_template_id: str = ""  # an AI card template: answers stream into it
    dingtalk_card_content_key: str = "content"  # the template's streaming variable
    # the template has buttons (Stream mode): suggestions, 👍/👎, form actions in the card (README)
    dingtalk_card_buttons: bool = False
    dingtalk_group_scope: Literal["group", "user"] = "group"  # one conversation per group/member
    dingtalk_feedback: bool = False  # ask "👍 or 👎?" after each answer (Dify message feedback)
    dingtalk_locale: Literal["en", "ja", "zh"] = "zh"  # language of the bot's own texts
    dingtalk_request_timeout: float = Field(10.0, gt=0)  # seconds, every call to DingTalk
    # who may ask: comma-separated ids (staff ids, openConversationIds); empty = everyone
    dingtalk_allowed_users: str = ""
    dingtalk_allowed_groups: str = ""

    @property
    def dingtalk_api_url(self) -> str:
        return str(self.dingtalk_api_base).rstrip("/")

    @property
    def dingtalk_oapi_url(self) -> str:
        return str(self.dingtalk_oapi_base).rstrip("/")
