"""Markdown → Slack mrkdwn, table-driven."""

from __future__ import annotations

import pytest

from adapters.slack.mrkdwn import to_mrkdwn

CASES = [
    ("plain", "just text", "just text"),
    ("bold", "a **b** c", "a *b* c"),
    ("bold underscores", "a __b__ c", "a *b* c"),
    ("italic", "a *b* _c_", "a _b_ _c_"),
    ("strike", "~~gone~~", "~gone~"),
    ("bold italic", "***both***", "_*both*_"),
    ("inline code", "use `x < y`", "use `x &lt; y`"),
    ("escaping", "a & b <tag> c > d", "a &amp; b &lt;tag&gt; c &gt; d"),
    ("link", "[Dify](https://dify.ai)", "<https://dify.ai|Dify>"),
    ("bare link", "<https://dify.ai>", "<https://dify.ai>"),
    ("relative link keeps words", "[docs](/guide)", "docs"),
    ("image becomes link", "![chart](https://x.io/c.png)", "<https://x.io/c.png|chart>"),
    ("heading", "# Title\n\ntext", "*Title*\n\ntext"),
    ("heading with bold", "## A **b**", "*A b*"),
    ("bullets", "- a\n- b", "• a\n• b"),
    ("ordered", "3. a\n4. b", "3. a\n4. b"),
    ("nested", "- a\n  - b\n    - c", "• a\n    ◦ b\n        ▪ c"),
    ("quote", "> one\n> two", "> one\n> two"),
    ("fence drops language", "```python\nx = 1\n```", "```\nx = 1\n```"),
    ("fence escapes", "```\na<b\n```", "```\na&lt;b\n```"),
    ("rule", "a\n\n---\n\nb", "a\n\n───────\n\nb"),
    ("hard break", "a  \nb", "a\nb"),
    ("cjk spacing", "見て**注意**ください", "見て *注意* ください"),
    ("punctuation needs no space", "(**x**)", "(*x*)"),
    ("raw html is text", "<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
    (
        "table",
        "| a | bb |\n|---|---|\n| 1 | **2** |\n| 日本 | x |",
        "```\na    | bb\n-----+---\n1    | 2\n日本 | x\n```",
    ),
    (
        "wide table becomes records",
        "| name | description |\n|---|---|\n| x | " + "long " * 15 + "|",
        "• name: x · description: " + ("long " * 15).strip(),
    ),
]


@pytest.mark.parametrize(
    ("markdown", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_to_mrkdwn(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected
