"""WeChat's and WeCom's own bot texts in en/ja/zh, added to the core's table by their adapters."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "wechat_pending": "Your answer is on its way. Send any message to get it.",
        "wechat_more": "(More to come: send any message for the rest.)",
        "wechat_unsupported": "Sorry, this kind of message isn't supported yet. Please send text.",
    },
    "ja": {
        "wechat_pending": "回答を作成中です。何かメッセージを送ると受け取れます。",
        "wechat_more": "(続きがあります。何かメッセージを送ると続きを表示します)",
        "wechat_unsupported": "この種類のメッセージには未対応です。テキストで送ってください。",
    },
    "zh": {
        "wechat_pending": "回答正在生成中，发送任意消息即可获取。",
        "wechat_more": "（未完待续，发送任意消息查看后续内容）",
        "wechat_unsupported": "暂不支持这种消息类型，请发送文字。",
    },
}
