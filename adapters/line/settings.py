"""LINE's settings: its environment variables, merged into difybot's one ``Settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr


class LineSettings(BaseModel):
    line_channel_secret: SecretStr | None = None  # signs every webhook (X-Line-Signature)
    line_channel_access_token: SecretStr | None = None  # long-lived channel access token
    line_api_base: AnyHttpUrl = AnyHttpUrl("https://api.line.me")
    line_data_api_base: AnyHttpUrl = AnyHttpUrl("https://api-data.line.me")  # content downloads
    line_locale: Literal["en", "ja", "zh"] = "ja"  # language of the bot's own texts on LINE
    # A reply token works once, for about a minute: past this many seconds after the event the
    # answer goes by push (billed) without trying the reply.
    line_reply_window: float = Field(50.0, gt=0, le=60)
    # Push messages one answer may spend (the reply API is free, push is billed per message);
    # an answer needing more is cut with a note. 0: never push (answers only by reply).
    line_push_limit: int = Field(10, ge=0)
    # The loading animation in 1:1 chats: seconds it is asked for (5..60, a multiple of 5),
    # asked again before it runs out while the answer is being written.
    line_loading_seconds: int = Field(20, ge=5, le=60, multiple_of=5)
    # Groups and rooms: one conversation for the whole group, or one per member of it.
    line_group_conversation: Literal["group", "user"] = "group"
    line_feedback_buttons: bool = True  # 👍/👎 quick replies under answers (Dify feedback)
    # Seconds the answer waits for Dify's suggested questions (quick replies); 0: never asks.
    line_suggestions_wait: float = Field(3.0, ge=0, le=30)
    line_allowed_users: str = ""  # LINE user ids who may ask; empty = everyone
