"""Slack's own bot texts in en/ja/zh, added to the core's table when the adapter is built."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "slack_thinking": "Thinking…",
        "slack_stop": "Stop",
        "slack_sources": "Sources",
        "slack_like": "Helpful",
        "slack_dislike": "Not helpful",
        "slack_suggested": "You could also ask:",
        "slack_feedback_thanks": "Thanks for the feedback!",
        "slack_nothing_to_stop": "There is no answer running to stop.",
        "slack_help": (
            "`/dify &lt;question&gt;` asks the assistant right here. `/dify new` starts a new"
            " conversation. You can also message me directly, or @mention me in a channel:"
            " I answer in a thread and keep following it, no mention needed."
        ),
    },
    "ja": {
        "slack_thinking": "考え中…",
        "slack_stop": "停止",
        "slack_sources": "出典",
        "slack_like": "役に立った",
        "slack_dislike": "役に立たなかった",
        "slack_suggested": "こんな質問もできます:",
        "slack_feedback_thanks": "フィードバックありがとうございます！",
        "slack_nothing_to_stop": "停止できる回答はありません。",
        "slack_help": (
            "`/dify &lt;質問&gt;` でこの場所でアシスタントに質問できます。"
            "`/dify new` で新しい会話を始めます。"
            "DM で直接話しかけるか、チャンネルで @メンション してください。"
            "スレッドで回答し、以後はメンションなしでそのスレッドに答えます。"
        ),
    },
    "zh": {
        "slack_thinking": "思考中…",
        "slack_stop": "停止",
        "slack_sources": "来源",
        "slack_like": "有帮助",
        "slack_dislike": "没帮助",
        "slack_suggested": "你还可以问：",
        "slack_feedback_thanks": "感谢你的反馈！",
        "slack_nothing_to_stop": "当前没有正在进行的回答。",
        "slack_help": (
            "`/dify &lt;问题&gt;` 在这里向助手提问。`/dify new` 开始新的对话。"
            "也可以直接私信我，或在频道中 @提及 我：我会在话题中回答，之后无需再提及。"
        ),
    },
}
