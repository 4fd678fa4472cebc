"""What the bot itself says (errors, notices) in English, Japanese and Chinese; overridable."""

from __future__ import annotations

from collections.abc import Mapping

BUILT_IN: dict[str, dict[str, str]] = {
    "en": {
        "error": "Sorry, something went wrong while answering. Please try again.",
        "busy": "The assistant is busy right now. Please try again in a moment.",
        "unavailable": "The assistant can't be reached right now. Please try again later.",
        "quota": "The assistant has reached its usage limit. Please try again later.",
        "interrupted": "(The answer was interrupted.)",
        "stopped": "(Stopped.)",
        "paused": "(This step needs input that can't be given here.)",
        "empty": "(No answer.)",
        "reset": "Started a new conversation.",
    },
    "ja": {
        "error": "申し訳ありません。回答中にエラーが発生しました。もう一度お試しください。",
        "busy": "ただいま混み合っています。少し時間をおいてお試しください。",
        "unavailable": "現在アシスタントに接続できません。しばらくしてからお試しください。",
        "quota": "アシスタントの利用上限に達しました。しばらくしてからお試しください。",
        "interrupted": "(回答が途中で中断されました)",
        "stopped": "(停止しました)",
        "paused": "(この手順にはここでは入力できない情報が必要です)",
        "empty": "(回答がありません)",
        "reset": "新しい会話を始めました。",
    },
    "zh": {
        "error": "抱歉，回答时出错了，请重试。",
        "busy": "助手正忙，请稍后再试。",
        "unavailable": "暂时无法连接助手，请稍后再试。",
        "quota": "助手已达到使用上限，请稍后再试。",
        "interrupted": "（回答被中断。）",
        "stopped": "（已停止。）",
        "paused": "（此步骤需要在这里无法提供的输入。）",
        "empty": "（没有回答。）",
        "reset": "已开始新的对话。",
    },
}


class Texts:
    """Looks up a text by key for a locale: override, then the locale, then English."""

    def __init__(self, default_locale: str = "en", overrides: Mapping[str, str] | None = None):
        self.default_locale = default_locale if default_locale in BUILT_IN else "en"
        self._overrides = dict(overrides or {})

    def get(self, key: str, locale: str | None = None) -> str:
        if key in self._overrides:
            return self._overrides[key]
        lang = (locale or self.default_locale).split("-")[0].split("_")[0].lower()
        table = BUILT_IN.get(lang) or BUILT_IN[self.default_locale]
        return table.get(key) or BUILT_IN["en"][key]
