"""XML in and out, the normalizers over captured payloads, and Markdown to WeChat text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.tencent.formatting import to_plain_text, to_wecom_markdown
from adapters.tencent.messages import to_incoming, to_push
from adapters.tencent.outbound import MAX_TEXT, to_parts
from adapters.tencent.xml import parse_xml, text_reply
from adapters.wecom_bot import messages as aibot_messages
from bot.errors import CallbackRejected
from bot.models import Scope
from bot.text import utf8_length

PAYLOADS = Path(__file__).parent / "payloads" / "wechat"

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<xml><Content>&lol9;</Content></xml>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>"""


@pytest.mark.parametrize(
    ("name", "kind", "text", "msg_id"),
    [
        ("oa_text.xml", "text", "欢迎开启公众号开发者模式", "6272960105994287618"),
        ("oa_image.xml", "image", "", "6272956824639273066"),
        ("oa_voice_recognition.xml", "voice", "腾讯微信团队", "1234567890123456"),
        ("oa_voice.xml", "voice", "", "1234567890123457"),
        (
            "oa_link.xml",
            "link",
            "公众平台官网链接\n公众平台官网链接\nhttps://mp.weixin.qq.com/",
            "1234567890123458",
        ),
        ("oa_location.xml", "location", "广州市天河区 (23.134521, 113.358803)", "1234567890123459"),
        ("oa_video.xml", "video", "", "1234567890123460"),
        ("oa_subscribe.xml", "event", "", "o9AgO5Kd5ggOC-bXrbNODIiE3bGY:123456789"),
        ("wecom_text.xml", "text", "test", "4363689963896700987"),
    ],
)
def test_pushes_normalize(name: str, kind: str, text: str, msg_id: str) -> None:
    push = to_push(parse_xml((PAYLOADS / name).read_bytes()))
    assert (push.kind, push.text, push.msg_id) == (kind, text, msg_id)


def test_an_image_push_becomes_an_attachment_in_a_per_user_conversation() -> None:
    push = to_push(parse_xml((PAYLOADS / "oa_image.xml").read_bytes()))
    message = to_incoming(push, platform="wechat", workspace="wxapp", locale="zh")
    (image,) = message.attachments
    assert image.url == "http://mmbiz.qpic.cn/mmbiz/u_example/0"
    assert image.platform_id and image.mime_type == "image/jpeg"
    assert message.key.scope is Scope.USER
    assert message.dify_user == "wechat:wxapp:o9AgO5Kd5ggOC-bXrbNODIiE3bGY"


@pytest.mark.parametrize(
    "body", [BOMB, EXTERNAL, b"<xml><a>", b"", b"\xff\xfe<xml/>", b"not xml at all"]
)
def test_hostile_or_malformed_xml_is_refused_fast(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(CallbackRejected) as refused:
        parse_xml(body)
    assert refused.value.status == 400
    assert time.perf_counter() - started < 0.1


def test_a_push_without_sender_is_a_400() -> None:
    with pytest.raises(CallbackRejected):
        to_push(parse_xml(b"<xml><MsgType>text</MsgType></xml>"))


@given(st.text())
def test_any_reply_text_renders_xml_that_parses_back(content: str) -> None:
    xml = text_reply(to_user="u", from_user="gh", content=content, create_time=1)
    parsed = parse_xml(xml)["Content"]
    legal = "".join(c for c in content if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff"))
    assert (
        parsed == legal.strip() or parsed == legal.replace("\r\n", "\n").replace("\r", "\n").strip()
    )


@pytest.mark.parametrize(
    ("name", "kind", "text", "images"),
    [
        ("aibot_text_group.json", "text", "hello robot", ()),
        ("aibot_mixed.json", "mixed", "what is this?", ("https://example.invalid/img",)),
        ("aibot_stream_refresh.json", "stream", "", ()),
        ("aibot_enter_chat.json", "event", "", ()),
    ],
)
def test_ai_bot_callbacks_normalize(
    name: str, kind: str, text: str, images: tuple[str, ...]
) -> None:
    push = aibot_messages.to_bot_push(json.loads((PAYLOADS / name).read_text()))
    assert (push.kind, push.text, push.images) == (kind, text, images)


def test_ai_bot_group_conversations_are_per_member_unless_per_chat() -> None:
    push = aibot_messages.to_bot_push(json.loads((PAYLOADS / "aibot_text_group.json").read_text()))
    mine = aibot_messages.to_incoming(push, text=push.text, per_chat=False, locale="zh")
    ours = aibot_messages.to_incoming(push, text=push.text, per_chat=True, locale="zh")
    assert mine.key.scope_id == "USERID@CHATID"
    assert (ours.key.scope, ours.key.scope_id) == (Scope.CHANNEL, "CHATID")


def test_ai_bot_body_that_is_not_a_callback_is_a_400() -> None:
    with pytest.raises(CallbackRejected):
        aibot_messages.to_bot_push(["not", "an", "object"])


MARKDOWN = """# 标题
Some **bold**, *italic* and `code`, a [link](https://example.com) and <https://auto.example>.

- one
- two
  1. nested

> quoted

```python
print("x")
```

| a | b |
|---|---|
| 1 | **2** |
"""


def test_markdown_becomes_readable_plain_text() -> None:
    assert to_plain_text(MARKDOWN) == (
        "【标题】\n\n"
        "Some bold, italic and code, a link (https://example.com) and https://auto.example.\n\n"
        "• one\n• two\n  1. nested\n\n"
        "> quoted\n\n"
        'print("x")\n\n'
        "a | b\n1 | 2"
    )


def test_markdown_keeps_what_wecom_renders() -> None:
    rendered = to_wecom_markdown(MARKDOWN)
    assert rendered.startswith(
        "# 标题\n\nSome **bold**, italic and `code`, a [link](https://example.com)"
    )
    assert "```" not in rendered and "1 | **2**" in rendered


@given(st.text(alphabet=st.sampled_from("ab *_`#>-[]()\n。！中文😀"), max_size=400))
def test_plain_text_never_leaves_bold_markers(markdown: str) -> None:
    assert "**" not in to_plain_text(f"**{markdown.replace('*', '')}**")


def test_long_answers_split_on_sentences_within_2048_bytes() -> None:
    sentence = "这是一个用来测试分段的句子，里面有足够多的汉字。"
    parts = to_parts(sentence * 200, "（未完待续）")
    assert len(parts) > 1
    assert all(utf8_length(p) <= MAX_TEXT - utf8_length("（未完待续）") - 2 for p in parts)
    assert all(p.endswith("。") for p in parts)
    assert "".join(parts) == sentence * 200


def test_bold_around_cjk_quotes_loses_its_markers_too() -> None:
    # CommonMark keeps these ``**`` literal (not right-flanking); WeChat must not show them.
    assert to_plain_text("这是**“引用”**文字，`2**3` 不变") == "这是“引用”文字，2**3 不变"
