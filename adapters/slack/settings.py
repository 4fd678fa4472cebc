"""Slack's settings: its environment variables, merged into difybot's one ``Settings``."""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr


class SlackSettings(BaseModel):
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # Socket Mode
    slack_signing_secret: SecretStr | None = None  # HTTP mode at POST /slack/events
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
    # who may ask: comma-separated ids; empty = everyone
    slack_allowed_teams: str = ""
    slack_allowed_channels: str = ""
    slack_allowed_users: str = ""

    @property
    def slack_api_base(self) -> str:
        """``SLACK_API_URL`` ending in "/" (slack-sdk joins method names onto it)."""
        base = str(self.slack_api_url)
        return base if base.endswith("/") else base + "/"
