"""Telegram's own bot texts in en/ja/zh (HTML: Telegram's parse_mode), added to the core's table."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "telegram_help": (
            "Ask me anything: I answer with the assistant.\n"
            "/new starts a new conversation, /help shows this.\n"
            "In a group, mention me, reply to one of my messages, or write /ask followed by "
            "your question."
        ),
        "telegram_welcome": "Hello! Ask me anything.",
        "telegram_like": "👍",
        "telegram_dislike": "👎",
        "telegram_thanks": "Thanks for the feedback!",
        "telegram_gone": "This button no longer works.",
        "telegram_new_command": "Start a new conversation",
        "telegram_help_command": "How to use this bot",
        "telegram_ask_command": "Ask a question (in groups)",
    },
    "ja": {
        "telegram_help": (
            "何でも聞いてください。アシスタントが回答します。\n"
            "/new で新しい会話を始め、/help でこの説明を表示します。\n"
            "グループでは、メンションするか、私のメッセージに返信するか、/ask に続けて質問を"
            "書いてください。"
        ),
        "telegram_welcome": "こんにちは！何でも聞いてください。",
        "telegram_like": "👍",
        "telegram_dislike": "👎",
        "telegram_thanks": "フィードバックありがとうございます！",
        "telegram_gone": "このボタンはもう使えません。",
        "telegram_new_command": "新しい会話を始める",
        "telegram_help_command": "使い方",
        "telegram_ask_command": "質問する（グループ）",
    },
    "zh": {
        "telegram_help": (
            "有什么问题都可以问我，助手会回答。\n"
            "/new 开始新的对话，/help 显示本说明。\n"
            "在群组中，请 @提及 我、回复我的消息，或发送 /ask 加上你的问题。"
        ),
        "telegram_welcome": "你好！有什么可以帮你？",
        "telegram_like": "👍",
        "telegram_dislike": "👎",
        "telegram_thanks": "感谢你的反馈！",
        "telegram_gone": "此按钮已失效。",
        "telegram_new_command": "开始新的对话",
        "telegram_help_command": "使用说明",
        "telegram_ask_command": "提问（群组）",
    },
}
