"""LINE's own bot texts in en/ja/zh, added to the core's table when the adapter is built."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "line_like": "👍 Helpful",
        "line_dislike": "👎 Not helpful",
        "line_feedback_thanks": "Thanks for the feedback!",
        "line_cut": "(The answer was too long to send in full on LINE.)",
    },
    "ja": {
        "line_like": "👍 役に立った",
        "line_dislike": "👎 役に立たなかった",
        "line_feedback_thanks": "フィードバックありがとうございます！",
        "line_cut": "（回答が長すぎるため、LINEでは一部のみ表示しています）",
    },
    "zh": {
        "line_like": "👍 有帮助",
        "line_dislike": "👎 没帮助",
        "line_feedback_thanks": "感谢反馈！",
        "line_cut": "（回答过长，LINE 上只显示了一部分。）",
    },
}
