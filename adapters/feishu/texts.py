"""Feishu's own bot texts in en/ja/zh, added to the core's table when the platform is built."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "feishu_thinking": "Thinking…",
        "feishu_stop": "Stop",
        "feishu_like": "Helpful",
        "feishu_dislike": "Not helpful",
        "feishu_suggested": "You could also ask:",
        "feishu_feedback_thanks": "Thanks for the feedback!",
        "feishu_stopping": "Stopping the answer.",
        "feishu_nothing_to_stop": "There is no answer running to stop.",
        "feishu_asking": "Asking…",
        "feishu_form_sending": "Sending your answer…",
    },
    "ja": {
        "feishu_thinking": "考え中…",
        "feishu_stop": "停止",
        "feishu_like": "役に立った",
        "feishu_dislike": "役に立たなかった",
        "feishu_suggested": "こんな質問もできます:",
        "feishu_feedback_thanks": "フィードバックありがとうございます！",
        "feishu_stopping": "回答を停止します。",
        "feishu_nothing_to_stop": "停止できる回答はありません。",
        "feishu_asking": "質問しています…",
        "feishu_form_sending": "回答を送信しています…",
    },
    "zh": {
        "feishu_thinking": "思考中…",
        "feishu_stop": "停止",
        "feishu_like": "有帮助",
        "feishu_dislike": "没帮助",
        "feishu_suggested": "你还可以问：",
        "feishu_feedback_thanks": "感谢反馈！",
        "feishu_stopping": "正在停止回答。",
        "feishu_nothing_to_stop": "没有正在生成的回答。",
        "feishu_asking": "正在提问…",
        "feishu_form_sending": "正在提交你的回答…",
    },
}
