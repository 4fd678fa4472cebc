"""The Dify client over httpx.MockTransport: wire format, events, errors, retries, staleness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.dify.client import AnswerRequest, DifyClient, build_http
from bot.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyError,
    DifyHTTPError,
    DifyProtocolError,
    DifyQuotaExceeded,
    DifyRateLimited,
    DifyStreamCut,
    DifyStreamError,
    DifyUnavailable,
)
from bot.models import (
    AgentThought,
    AnswerEnd,
    AnswerEvent,
    FileOut,
    Progress,
    TextDelta,
    TextReplace,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dify"
SSE = {"content-type": "text/event-stream; charset=utf-8"}
Handler = Callable[[httpx.Request], Any]


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sse(*payloads: dict[str, Any] | str, spaced: bool = False) -> bytes:
    """Frames as Dify writes them: ``data: {json}`` or a bare ``event: ping``."""
    frames = []
    for item in payloads:
        if isinstance(item, str):
            frames.append(f"event: {item}\n\n")
        else:
            separators = (", ", ": ") if spaced else (",", ":")
            text = json.dumps(item, separators=separators, ensure_ascii=spaced)
            frames.append(f"data: {text}\n\n")
    return "".join(frames).encode()


async def pieces(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    """Deliver a body in small arbitrary chunks so frames are split across reads."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


class Recorder:
    """A MockTransport handler that answers from a script and records each request."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            result = item(request)
            return await result if asyncio.iscoroutine(result) else result
        return item

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.content]


def stream_response(body: bytes | AsyncIterator[bytes], status: int = 200) -> httpx.Response:
    content = pieces(body) if isinstance(body, bytes) else body
    return httpx.Response(status, headers=SSE, content=content)


def error_response(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"code": code, "message": message, "status": status}
    return httpx.Response(status, json=body, headers=headers)


def client_for(recorder: Recorder, *, mode: str = "advanced-chat", **kwargs: Any) -> DifyClient:
    http = build_http("http://dify.test/v1", transport=httpx.MockTransport(recorder))
    sleeps: list[float] = kwargs.pop("sleeps", [])

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return DifyClient(http, api_key="app-secret-key", mode=mode, sleep=fake_sleep, **kwargs)


async def collect(client: DifyClient, request: AnswerRequest | None = None) -> list[AnswerEvent]:
    """The answer's events; then until its response is drained (``settle``), as at shutdown."""
    async with client.stream(request or AnswerRequest(query="hi", user="u1")) as stream:
        events = [event async for event in stream]
    await client.settle()
    return events


# ---- wire format ----------------------------------------------------------------------------


async def test_real_chatflow_capture_becomes_typed_events() -> None:
    recorder = Recorder(stream_response(raw("turn1_streaming.sse.raw")))
    client = client_for(recorder)
    async with client.stream(AnswerRequest(query="hello dify", user="u1")) as stream:
        events = [event async for event in stream]
        assert stream.conversation_id == "54f27086-5324-428d-9dc3-d3bee89d5535"
        assert stream.task_id == "c391f201-6d8a-4afa-8fb8-76eef2f6bf13"
        assert stream.pings == 1
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == "echo: hello dify"
    end = events[-1]
    assert isinstance(end, AnswerEnd)
    assert end.status == "succeeded"
    assert end.message_id == "d9421453-2edd-45b0-bfee-a890db1f2c90"
    assert any(isinstance(e, Progress) and e.kind == "workflow" for e in events)
    await client._http.aclose()


async def test_request_body_and_headers() -> None:
    recorder = Recorder(stream_response(raw("turn1_streaming.sse.raw")))
    client = client_for(recorder)
    request = AnswerRequest(
        query="q", user="slack:T1:U1", conversation_id="c-1", inputs={"a": "b"}, trace_id="t-42"
    )
    await collect(client, request)
    sent = recorder.requests[0]
    assert sent.url.path == "/v1/chat-messages"
    assert sent.headers["authorization"] == "Bearer app-secret-key"
    assert sent.headers["x-trace-id"] == "t-42"
    body = json.loads(sent.content)
    assert body == {
        "inputs": {"a": "b"},
        "user": "slack:T1:U1",
        "response_mode": "streaming",
        "query": "q",
        "auto_generate_name": True,
        "conversation_id": "c-1",
    }
    await client._http.aclose()


@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
async def test_compact_and_spaced_json_parse_alike(spaced: bool) -> None:
    body = sse(
        "ping",
        {"event": "message", "conversation_id": "c", "task_id": "t", "answer": "Bonjour é"},
        {"event": "tts_message", "audio": "AAAA"},
        {"event": "something_new", "x": 1},
        {
            "event": "message_end",
            "conversation_id": "c",
            "id": "m",
            "metadata": {"usage": {"total_tokens": 5}},
        },
        spaced=spaced,
    )
    events = await collect(client_for(Recorder(stream_response(body)), mode="chat"))
    assert events[0] == TextDelta("Bonjour é")
    assert isinstance(events[1], AnswerEnd)
    assert events[1].usage == {"total_tokens": 5}
    assert len(events) == 2


async def test_agent_events_and_relative_file_url() -> None:
    body = sse(
        {
            "event": "agent_thought",
            "id": "th1",
            "position": 1,
            "tool": "clock",
            "tool_input": "{}",
            "observation": "",
        },
        {
            "event": "agent_thought",
            "id": "th1",
            "position": 1,
            "tool": "clock",
            "observation": "10:04",
        },
        {"event": "agent_message", "answer": "It is "},
        {"event": "agent_message", "answer": "10:04."},
        {"event": "message_file", "id": "f1", "type": "image", "url": "/files/tools/f1.png?sign=x"},
        {"event": "message_replace", "answer": "Moderated."},
        {"event": "message_end", "id": "m1", "metadata": {}},
    )
    events = await collect(client_for(Recorder(stream_response(body)), mode="agent-chat"))
    assert isinstance(events[0], AgentThought) and events[0].tool == "clock"
    assert events[2:4] == [TextDelta("It is "), TextDelta("10:04.")]
    assert events[4] == FileOut(
        url="http://dify.test/files/tools/f1.png?sign=x", type="image", id="f1"
    )
    assert events[5] == TextReplace("Moderated.")


async def test_new_agent_final_message_replaces() -> None:
    body = sse(
        {"event": "agent_message", "answer": "Part"},
        {"event": "message", "answer": "Partial answer, whole."},
        {"event": "message_end", "id": "m1", "metadata": {}},
    )
    events = await collect(client_for(Recorder(stream_response(body)), mode="agent"))
    assert events[:2] == [TextDelta("Part"), TextReplace("Partial answer, whole.")]


async def test_stopped_chatflow_ends_with_workflow_finished() -> None:
    events = await collect(client_for(Recorder(stream_response(raw("stop_mid_stream.sse.raw")))))
    end = events[-1]
    assert isinstance(end, AnswerEnd)
    assert (end.status, end.error) == ("stopped", "Stopped by user.")
    assert end.outputs["answer"].startswith("working")


async def test_failed_node_ends_with_failed_status() -> None:
    events = await collect(
        client_for(Recorder(stream_response(raw("node_failure_streaming.sse.raw"))))
    )
    end = events[-1]
    assert isinstance(end, AnswerEnd) and end.status == "failed"
    assert "Connection refused" in end.error


async def test_files_in_answer_capture() -> None:
    recorder = Recorder(stream_response(raw("files_answer_sys_files_streaming.sse.raw")))
    events = await collect(client_for(recorder))
    end = events[-1]
    assert isinstance(end, AnswerEnd)
    assert {f.filename for f in end.files} == {"pixel.png", "note.txt"}
    assert all(f.url.startswith("http") for f in end.files)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "![pixel.png](" in text


async def test_in_stream_error_raises_with_status_and_code() -> None:
    body = sse(
        {"event": "message", "answer": "Hal"},
        {
            "event": "error",
            "status": 400,
            "code": "completion_request_error",
            "message": "[openai] 429",
        },
    )
    client = client_for(Recorder(stream_response(body)), mode="chat")
    seen: list[AnswerEvent] = []
    with pytest.raises(DifyStreamError) as caught:
        async with client.stream(AnswerRequest(query="q", user="u")) as stream:
            async for event in stream:
                seen.append(event)
    assert seen == [TextDelta("Hal")]
    assert (caught.value.status, caught.value.code) == (400, "completion_request_error")


async def test_connection_close_ends_the_stream() -> None:
    body = sse({"event": "message", "answer": "half an ans"})
    events = await collect(client_for(Recorder(stream_response(body)), mode="chat"))
    assert events == [TextDelta("half an ans")]


async def test_final_frame_without_blank_line_is_delivered() -> None:
    body = b'data: {"event":"message","answer":"x"}\n\ndata: {"event":"message_end","id":"m"}'
    events = await collect(client_for(Recorder(stream_response(body)), mode="chat"))
    assert isinstance(events[-1], AnswerEnd)


async def test_crlf_lines_are_accepted() -> None:
    body = (
        b'data: {"event":"message","answer":"x"}\r\n\r\n'
        b'data: {"event":"message_end","id":"m"}\r\n\r\n'
    )
    events = await collect(client_for(Recorder(stream_response(body)), mode="chat"))
    assert events[0] == TextDelta("x") and isinstance(events[1], AnswerEnd)


async def test_oversize_line_is_refused() -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b"data: "
        for _ in range(100):
            yield b"x" * 100_000

    client = client_for(Recorder(stream_response(endless())), mode="chat")
    with pytest.raises(DifyProtocolError):
        await collect(client)


async def test_broken_stream_is_a_cut_and_never_retried() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield sse({"event": "message", "answer": "so far"})
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    recorder = Recorder(stream_response(broken()))
    client = client_for(recorder, mode="chat")
    with pytest.raises(DifyStreamCut) as caught:
        await collect(client)
    assert caught.value.code == "stream_cut"
    assert len(recorder.requests) == 1


async def test_non_json_frame_is_a_protocol_error() -> None:
    client = client_for(Recorder(stream_response(b"data: <html>\n\n")), mode="chat")
    with pytest.raises(DifyProtocolError):
        await collect(client)


# ---- errors before the stream, retries --------------------------------------------------------


def capture_response(name: str) -> httpx.Response:
    """A captured ``.http`` file (status line, headers, body) as an httpx response."""
    head, _, body = raw(name).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return httpx.Response(status, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("err_bad_key.http", DifyAuthError),
        ("err_missing_query.http", DifyHTTPError),
        ("err_unknown_conversation_blocking.http", ConversationNotFound),
        ("err_workflow_key_on_chat_messages_streaming.http", DifyHTTPError),
    ],
)
async def test_captured_errors_map_onto_the_tree(capture: str, expected: type[DifyError]) -> None:
    recorder = Recorder(capture_response(capture))
    with pytest.raises(expected) as caught:
        await collect(client_for(recorder))
    assert type(caught.value) is expected
    assert caught.value.status == capture_response(capture).status_code
    assert len(recorder.requests) == 1  # not retryable


async def test_concurrency_rejection_is_retried_then_succeeds() -> None:
    busy = capture_response("err_rate_limit_streaming_while_busy.http")
    sleeps: list[float] = []
    recorder = Recorder(busy, busy, stream_response(raw("turn1_streaming.sse.raw")))
    events = await collect(client_for(recorder, sleeps=sleeps))
    assert isinstance(events[-1], AnswerEnd)
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2


async def test_concurrency_rejection_that_persists_is_rate_limited() -> None:
    recorder = Recorder(capture_response("err_rate_limit_streaming_while_busy.http"))
    with pytest.raises(DifyRateLimited):
        await collect(client_for(recorder, max_retries=2))
    assert len(recorder.requests) == 3


async def test_429_retry_after_is_honoured() -> None:
    sleeps: list[float] = []
    recorder = Recorder(
        error_response(429, "too_many_requests", "Too many requests.", **{"Retry-After": "7"}),
        stream_response(raw("turn1_streaming.sse.raw")),
    )
    await collect(client_for(recorder, sleeps=sleeps))
    assert sleeps == [7.0]


async def test_quota_429_is_not_retried() -> None:
    recorder = Recorder(error_response(429, "rate_limit_error", "Rate Limit Error"))
    with pytest.raises(DifyQuotaExceeded):
        await collect(client_for(recorder))
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_retry_with_growing_backoff(status: int) -> None:
    sleeps: list[float] = []
    recorder = Recorder(httpx.Response(status, text="<html>bad gateway</html>"))
    with pytest.raises(DifyUnavailable):
        await collect(client_for(recorder, sleeps=sleeps, max_retries=3))
    assert len(recorder.requests) == 4
    assert len(sleeps) == 3 and all(0 <= s <= 8 for s in sleeps)


async def test_500_is_not_retried() -> None:
    recorder = Recorder(error_response(500, "internal_server_error", "Internal Server Error"))
    with pytest.raises(DifyHTTPError):
        await collect(client_for(recorder))
    assert len(recorder.requests) == 1


async def test_connect_error_retried_read_timeout_not() -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"), stream_response(raw("turn1_streaming.sse.raw"))
    )
    events = await collect(client_for(recorder))
    assert isinstance(events[-1], AnswerEnd) and len(recorder.requests) == 2

    recorder = Recorder(httpx.ReadTimeout("no headers"))
    with pytest.raises(DifyError) as caught:
        await collect(client_for(recorder))
    assert not caught.value.retryable
    assert len(recorder.requests) == 1


# ---- stale conversations ---------------------------------------------------------------------


def silent_then(
    stop: asyncio.Event, after: Iterable[bytes] = ()
) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        yield b"event: ping\n\n"
        await stop.wait()
        for chunk in after:
            yield chunk

    return body


async def test_silent_ping_stream_for_a_stale_conversation_is_detected() -> None:
    forever = asyncio.Event()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return capture_response("err_deleted_conversation_messages.http")
        return stream_response(silent_then(forever)())

    recorder = Recorder(route)
    client = client_for(recorder, first_event_timeout=0.05)
    with pytest.raises(ConversationNotFound):
        await collect(client, AnswerRequest(query="q", user="u", conversation_id="gone"))
    check = recorder.requests[-1]
    assert check.url.path == "/v1/messages"
    assert check.url.params["conversation_id"] == "gone" and check.url.params["user"] == "u"


async def test_slow_app_with_a_live_conversation_keeps_waiting() -> None:
    go = asyncio.Event()
    late = sse({"event": "message", "answer": "late"}, {"event": "message_end", "id": "m"})

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            go.set()  # the check ran; now let the answer arrive
            return httpx.Response(200, json={"limit": 1, "has_more": False, "data": []})
        return stream_response(silent_then(go, [late])())

    client = client_for(Recorder(route), first_event_timeout=0.05)
    events = await collect(client, AnswerRequest(query="q", user="u", conversation_id="live"))
    assert events[0] == TextDelta("late")


async def test_synthetic_failed_run_for_stale_conversation() -> None:
    body = sse(
        "ping",
        {
            "event": "workflow_started",
            "task_id": "r1",
            "workflow_run_id": "r1",
            "data": {"id": "r1"},
        },
        {
            "event": "workflow_finished",
            "task_id": "r1",
            "workflow_run_id": "r1",
            "data": {"status": "failed", "error": ""},
        },
    )
    client = client_for(Recorder(stream_response(body)))
    with pytest.raises(ConversationNotFound):
        await collect(client, AnswerRequest(query="q", user="u", conversation_id="gone"))
    # Without a stored conversation the same run is an ordinary failure.
    client = client_for(Recorder(stream_response(body)))
    events = await collect(client)
    assert isinstance(events[-1], AnswerEnd) and events[-1].status == "failed"


# ---- modes and other endpoints ------------------------------------------------------------------


async def test_workflow_app_routes_query_into_inputs() -> None:
    recorder = Recorder(stream_response(raw("workflow_run_streaming.sse.raw")))
    client = client_for(recorder, mode="workflow", query_variable="question")
    events = await collect(
        client, AnswerRequest(query="hello workflow", user="u", conversation_id="x")
    )
    body = json.loads(recorder.requests[0].content)
    assert recorder.requests[0].url.path == "/v1/workflows/run"
    assert body["inputs"] == {"question": "hello workflow"}
    assert "conversation_id" not in body and "query" not in body
    assert TextDelta("hello workflow") in events
    assert isinstance(events[-1], AnswerEnd) and events[-1].outputs == {"text": "hello workflow"}


async def test_completion_app_route() -> None:
    body = sse({"event": "message", "answer": "done"}, {"event": "message_end", "id": "m"})
    recorder = Recorder(stream_response(body))
    await collect(client_for(recorder, mode="completion"))
    sent = recorder.requests[0]
    assert sent.url.path == "/v1/completion-messages"
    assert json.loads(sent.content)["inputs"] == {"query": "hi"}


@pytest.mark.parametrize(
    ("mode", "path"),
    [
        ("advanced-chat", "/v1/chat-messages/t1/stop"),
        ("workflow", "/v1/workflows/tasks/t1/stop"),
        ("completion", "/v1/completion-messages/t1/stop"),
    ],
)
async def test_stop_route_per_mode(mode: str, path: str) -> None:
    recorder = Recorder(httpx.Response(200, json={"result": "success"}))
    await client_for(recorder, mode=mode).stop("t1", user="u")
    assert recorder.requests[0].url.path == path
    assert json.loads(recorder.requests[0].content) == {"user": "u"}


async def test_other_endpoints() -> None:
    recorder = Recorder(
        httpx.Response(200, content=raw("info.response.json")),
        httpx.Response(200, content=raw("parameters.response.json")),
        httpx.Response(200, json={"result": "success"}),
        httpx.Response(200, json={"result": "success", "data": ["a", "b"]}),
        httpx.Response(200, json={"text": "spoken"}),
    )
    client = client_for(recorder, mode="")
    assert await client.detect_mode() == "advanced-chat"
    assert (await client.parameters())["file_upload"]["enabled"] is True
    await client.feedback("m1", rating="like", user="u")
    assert await client.suggested("m1", user="u") == ["a", "b"]
    assert (
        await client.audio_to_text(b"RIFF", filename="v.wav", mime_type="audio/wav", user="u")
        == "spoken"
    )
    assert json.loads(recorder.requests[2].content) == {"rating": "like", "user": "u"}
    speech = recorder.requests[4]
    assert b'name="user"' in speech.content and b"RIFF" in speech.content
