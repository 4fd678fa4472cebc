"""Property tests: the SSE parser and every normalizer take any input without crashing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.slack.events import RouteOptions, Router, TtlMap, clean_text
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.tencent.formatting import to_plain_text, to_wecom_markdown
from adapters.tencent.messages import to_push
from adapters.tencent.xml import parse_xml
from bot.dify.events import to_event
from bot.dify.sse import iter_frames
from bot.errors import CallbackRejected, DifyProtocolError, DifyStreamError

FAST = settings(max_examples=150, deadline=None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


async def chunks_of(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        if cut > start:
            yield data[start:cut]
            start = cut
    if start < len(data):
        yield data[start:]


async def frames_of(data: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    return [frame async for batch in iter_frames(chunks_of(data, cuts)) for frame in batch]


# ---- SSE -----------------------------------------------------------------------------------------

payloads = st.dictionaries(st.sampled_from(["event", "answer", "id"]), json_values, max_size=3)


@FAST
@given(
    st.lists(st.one_of(st.just("ping"), payloads), max_size=12), st.lists(st.integers(0, 10_000))
)
def test_any_chunking_of_a_dify_stream_gives_the_same_frames(
    items: list[Any], cuts: list[int]
) -> None:
    wire, expected = b"", []
    for item in items:
        if item == "ping":
            wire += b"event: ping\n\n"
            expected.append(("ping", b""))
        else:
            data = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
            wire += b"data: " + data + b"\n\n"
            expected.append(("message", data))
    assert asyncio.run(frames_of(wire, cuts)) == expected


@FAST
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_arbitrary_bytes_never_crash_the_frame_parser(data: bytes, cuts: list[int]) -> None:
    async def parse() -> None:
        async for batch in iter_frames(chunks_of(data, cuts), max_frame=256):
            for event, body in batch:
                assert isinstance(event, str) and isinstance(body, bytes)

    with contextlib.suppress(DifyProtocolError):  # an oversize frame: refused, as it should be
        asyncio.run(parse())


@FAST
@given(st.dictionaries(st.sampled_from(["event", "answer", "data", "metadata", "files", "id",
                                        "status", "code", "message", "conversation_id"]),
                       json_values, max_size=6),
       st.sampled_from(["chat", "agent", "advanced-chat", "workflow"]))  # fmt: skip
def test_any_dify_payload_becomes_an_event_none_or_a_stream_error(
    payload: dict[str, Any], mode: str
) -> None:
    try:
        to_event(payload, mode=mode, origin="https://dify.example")
    except DifyStreamError:
        assert payload.get("event") == "error"


# ---- Slack ---------------------------------------------------------------------------------------

slack_keys = ["type", "subtype", "channel", "channel_type", "ts", "thread_ts", "user", "bot_id",
              "text", "parent_user_id", "files"]  # fmt: skip


@FAST
@given(st.dictionaries(st.sampled_from(slack_keys), json_values, max_size=8))
@example({"ts": 1, "files": True, "channel": True})  # found by this test: files not a list
def test_any_slack_event_is_routed_or_ignored(event: dict[str, Any]) -> None:
    router = Router(TtlMap(60.0), TtlMap(60.0), RouteOptions())
    ask = router.route(event, team="T1", bot_user_id="UBOT", event_id="Ev1")
    if ask is not None:
        assert ask.message.text and ask.message.platform == "slack"


@FAST
@given(st.text(max_size=300))
def test_any_text_renders_for_slack_and_wechat(text: str) -> None:
    assert isinstance(clean_text(text, "UBOT"), str)
    assert isinstance(to_mrkdwn(text), str)
    assert "**" not in to_plain_text(f"**{text.replace('*', '').replace('`', '')}**x")
    assert isinstance(to_wecom_markdown(text), str)


# ---- WeChat --------------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda t: f"<xml>{t}</xml>".encode()))
def test_any_body_parses_or_is_rejected_as_bad_xml(body: bytes) -> None:
    try:
        fields = parse_xml(body)
    except CallbackRejected as exc:
        assert exc.status == 400
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@FAST
@given(st.dictionaries(st.sampled_from(["MsgType", "FromUserName", "ToUserName", "CreateTime",
                                        "MsgId", "Content", "Recognition", "MediaId", "Event"]),
                       st.text(max_size=12), max_size=9))  # fmt: skip
@example({"MsgType": "0", "FromUserName": "0", "CreateTime": "²"})  # a digit int() refuses
def test_any_push_fields_normalize_or_are_rejected(fields: dict[str, str]) -> None:
    try:
        push = to_push(fields)
    except CallbackRejected as exc:
        assert exc.status == 400
        return
    assert push.user_id and push.kind and push.msg_id
