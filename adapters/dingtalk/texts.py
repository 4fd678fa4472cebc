"""DingTalk's own bot texts in en/ja/zh, added to the core's table when the adapter is built."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "dingtalk_thinking": "Thinking…",
        "dingtalk_title": "Answer",
        "dingtalk_unsupported": (
            "I can read text, pictures and files; this kind of message I cannot."
        ),
        "dingtalk_suggested": "You could also ask (reply with the number):",
        "dingtalk_feedback": "Was this helpful? Reply 👍 or 👎.",
        "dingtalk_feedback_thanks": "Thanks for the feedback!",
    },
    "ja": {
        "dingtalk_thinking": "考え中…",
        "dingtalk_title": "回答",
        "dingtalk_unsupported": (
            "テキスト、画像、ファイルは読めますが、この種類のメッセージは読めません。"
        ),
        "dingtalk_suggested": "こんな質問もできます（番号で返信）:",
        "dingtalk_feedback": "役に立ちましたか？ 👍 か 👎 で返信してください。",
        "dingtalk_feedback_thanks": "フィードバックありがとうございます！",
    },
    "zh": {
        "dingtalk_thinking": "思考中…",
        "dingtalk_title": "回答",
        "dingtalk_unsupported": "我能读文字、图片和文件，暂时读不了这类消息。",
        "dingtalk_suggested": "你还可以问（回复序号即可）：",
        "dingtalk_feedback": "这个回答有帮助吗？回复 👍 或 👎。",
        "dingtalk_feedback_thanks": "感谢你的反馈！",
    },
}
