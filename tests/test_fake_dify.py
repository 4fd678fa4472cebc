"""The fake Dify is faithful to the real 1.13.2 captures, byte for byte where it matters."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.dify import (
    Answer,
    Cut,
    FailedRun,
    FakeDify,
    HttpError,
    Replay,
    ReplayHTTP,
    SilentPing,
    Stall,
    StreamError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dify"
KEY = "app-test-key"
Event = dict[str, Any] | str  # a parsed data frame, or "ping"


# ---- helpers ---------------------------------------------------------------------------------


def client(dify: FakeDify, *, read: float = 5.0, key: str = KEY) -> httpx.AsyncClient:
    timeout = httpx.Timeout(5.0, read=read)
    headers = {"Authorization": f"Bearer {key}"}
    # verify=False: loopback HTTP, and loading the CA bundle costs ~60 ms per client.
    return httpx.AsyncClient(
        base_url=dify.base_url + "/", headers=headers, timeout=timeout, verify=False
    )


def chat(
    query: str = "hello dify", *, user: str = "u", streaming: bool = True, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": {}, "query": query, "user": user}
    body["response_mode"] = "streaming" if streaming else "blocking"
    return body | extra


def parse(body: bytes) -> list[Event]:
    """Split an SSE body the strict way: every frame is one line, ends with a blank line."""
    assert body.endswith(b"\n\n"), body[-40:]
    events: list[Event] = []
    for frame in body[:-2].split(b"\n\n"):
        if frame == b"event: ping":
            events.append("ping")
        else:
            assert frame.startswith(b"data: ") and b"\n" not in frame, frame[:80]
            events.append(json.loads(frame[len(b"data: ") :]))
    return events


def names(events: list[Event]) -> list[str]:
    return [e if isinstance(e, str) else str(e["event"]) for e in events]


def data(events: list[Event]) -> list[dict[str, Any]]:
    return [e for e in events if isinstance(e, dict)]


async def frames(response: httpx.Response) -> AsyncIterator[Event]:
    """Events as they arrive on an open stream."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            yield "ping" if frame == b"event: ping" else json.loads(frame[len(b"data: ") :])


def captured_events(name: str) -> list[Event]:
    return parse((FIXTURES / f"{name}.sse.raw").read_bytes())


def captured_http(name: str) -> tuple[int, dict[str, str], bytes]:
    head, _, body = (FIXTURES / f"{name}.http").read_bytes().partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_like_capture(response: httpx.Response, name: str) -> None:
    status, headers, body = captured_http(name)
    assert (response.status_code, response.content) == (status, body)
    for header in ("content-type", "x-version", "x-env", "access-control-expose-headers", "server"):
        assert response.headers.get(header) == headers.get(header), header


def key_sets(events: list[Event]) -> dict[str, set[frozenset[str]]]:
    """Per event type, the distinct top-level key sets and ``data`` key sets."""
    found: dict[str, set[frozenset[str]]] = {}
    for event in data(events):
        shapes = found.setdefault(str(event["event"]), set())
        shapes.add(frozenset(event))
        if isinstance(event.get("data"), dict):
            shapes.add(frozenset("data." + k for k in event["data"]))
    return found


# ---- streams faithful to the captures ------------------------------------------------------


async def test_replay_sends_the_capture_byte_for_byte(dify: FakeDify) -> None:
    meta = json.loads((FIXTURES / "turn1_streaming.meta.json").read_text())
    content_type = dict(meta["headers"])["Content-Type"]
    dify.enqueue(
        "/chat-messages",
        Replay("turn1_streaming"),
        Replay("turn1_streaming", timing=True, speed=50),
    )
    async with client(dify) as c:
        for _ in range(2):
            response = await c.post("chat-messages", json=chat())
            assert response.content == (FIXTURES / "turn1_streaming.sse.raw").read_bytes()
            assert (
                response.headers["content-type"]
                == content_type
                == "text/event-stream; charset=utf-8"
            )
            assert response.headers["transfer-encoding"] == "chunked"


async def test_default_chatflow_answer_has_the_captured_sequence_and_keys(dify: FakeDify) -> None:
    async with client(dify) as c:
        response = await c.post(
            "chat-messages", json=chat("hello dify", user="connector-test-user")
        )
    events, real = parse(response.content), captured_events("turn1_streaming")
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b'"event":"message"' in response.content and b'", "' not in response.content
    assert names(events) == names(real)
    assert key_sets(events) == key_sets(real)
    assert [e["answer"] for e in data(events) if e["event"] == "message"] == [
        "echo: ",
        "hello dify",
    ]
    finished = data(events)[-1]["data"]
    assert finished["outputs"] == {"answer": "echo: hello dify", "files": []}
    assert finished["created_by"]["user"] == "connector-test-user"
    # One task, one message, one run: every event repeats the same ids.
    assert len({(e["task_id"], e["message_id"], e["conversation_id"]) for e in data(events)}) == 1


async def test_scripted_answer_keeps_the_chatflow_shape(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", Answer())
    async with client(dify) as c:
        events = parse((await c.post("chat-messages", json=chat())).content)
    collapse = [n for i, n in enumerate(names(events)) if i == 0 or n != names(events)[i - 1]]
    real = names(captured_events("turn1_streaming"))
    assert collapse == [n for i, n in enumerate(real) if i == 0 or n != real[i - 1]]
    assert "".join(e["answer"] for e in data(events) if e["event"] == "message") == "Hello, world!"
    usage = data(events)[-2]["metadata"]["usage"]
    real_usage = data(captured_events("turn1_streaming"))[-2]["metadata"]["usage"]
    assert usage.keys() == real_usage.keys()
    assert isinstance(usage["total_price"], str)


@pytest.mark.parametrize(
    ("end", "tail"),
    [
        ("auto", ["message", "message_replace", "message_end", "workflow_finished"]),
        ("none", ["workflow_started", "message"]),
        ("message_end", ["message", "message_replace", "message_end"]),
        ("workflow_finished", ["message", "message_replace", "workflow_finished"]),
        ("workflow_first", ["message", "message_replace", "workflow_finished", "message_end"]),
    ],
)
async def test_answer_endings(dify: FakeDify, end: Any, tail: list[str]) -> None:
    source = {"position": 1, "document_name": "faq.md", "content": "..."}
    answer = Answer(chunks=["x"], end=end, replace="[redacted]", progress=False)
    dify.enqueue(
        "/chat-messages", answer, Answer(retriever_resources=[source], usage={"total_tokens": 7})
    )
    async with client(dify) as c:
        events = parse((await c.post("chat-messages", json=chat())).content)
        cited = parse((await c.post("chat-messages", json=chat())).content)
    assert names(events)[-len(tail) :] == tail and "node_started" not in names(events)
    if end == "auto":
        assert data(events)[-1]["data"]["outputs"]["answer"] == "[redacted]"
    metadata = data(cited)[-2]["metadata"]
    assert metadata["retriever_resources"] == [source]
    assert metadata["usage"]["total_tokens"] == 7 and metadata["usage"]["currency"] == "USD"


async def test_spaced_json_flavour_for_older_servers() -> None:
    async with FakeDify(spaced_json=True) as dify:
        dify.enqueue("/chat-messages", Answer(chunks=["héllo"]))
        async with client(dify) as c:
            body = (await c.post("chat-messages", json=chat())).content
    assert b'"answer": "h\\u00e9llo"' in body
    assert names(parse(body))[-2:] == ["message_end", "workflow_finished"]


async def test_workflow_app_matches_the_workflow_captures() -> None:
    async with FakeDify(mode="workflow") as dify, client(dify) as c:
        body = {"inputs": {"query": "hello workflow"}, "response_mode": "streaming", "user": "wf"}
        events = parse((await c.post("workflows/run", json=body)).content)
        blocking = await c.post("workflows/run", json=body | {"response_mode": "blocking"})
        missing = await c.post("workflows/run", json=body | {"inputs": {}})
        wrong_route = await c.post("chat-messages", json=chat(streaming=False))
        info = (await c.get("info")).json()
    real = captured_events("workflow_run_streaming")
    assert names(events) == names(real)
    assert key_sets(events) == key_sets(real)
    assert data(events)[-1]["data"]["outputs"] == {"text": "hello workflow"}
    _, _, real_blocking = captured_http("workflow_run_blocking")
    assert blocking.headers["content-type"] == "application/json; charset=utf-8"
    assert b'", "' in blocking.content  # json.dumps separators, like the capture
    assert key_sets([blocking.json() | {"event": "run"}]) == key_sets(
        [json.loads(real_blocking) | {"event": "run"}]
    )
    assert_like_capture(missing, "err_workflow_missing_required_input")
    assert_like_capture(wrong_route, "err_workflow_key_on_chat_messages_blocking")
    assert info["mode"] == "workflow"


async def test_blocking_answer_has_the_captured_shape(dify: FakeDify) -> None:
    async with client(dify) as c:
        response = await c.post("chat-messages", json=chat("blocking turn", streaming=False))
    real = json.loads((FIXTURES / "turn3_blocking.response.json").read_bytes())
    body = response.json()
    assert list(body) == list(real)
    assert list(body["metadata"]["usage"]) == list(real["metadata"]["usage"])
    assert (body["answer"], body["mode"]) == ("echo: blocking turn", "advanced-chat")
    assert response.headers["content-type"] == "application/json; charset=utf-8"


# ---- errors faithful to the captures ---------------------------------------------------------


async def test_error_bodies_equal_the_captures(dify: FakeDify) -> None:
    async with client(dify, key="app-wrong") as bad, client(dify) as c:
        bad_key = await bad.post("chat-messages", json=chat())
        missing_query = await c.post(
            "chat-messages", json={"inputs": {}, "response_mode": "streaming", "user": "u"}
        )
        unknown = await c.post(
            "chat-messages", json=chat(streaming=False, conversation_id=str(uuid.uuid4()))
        )
        suggested = await c.get(f"messages/{uuid.uuid4()}/suggested", params={"user": "u"})
        stop = await c.post(f"chat-messages/{uuid.uuid4()}/stop", json={"user": "u"})
    assert_like_capture(bad_key, "err_bad_key")
    assert bad_key.reason_phrase == "UNAUTHORIZED"
    assert bad_key.headers["www-authenticate"] == 'Bearer realm="api"'
    assert_like_capture(missing_query, "err_missing_query")
    assert_like_capture(unknown, "err_unknown_conversation_blocking")
    assert_like_capture(suggested, "err_suggested_disabled")
    assert_like_capture(stop, "stop_unknown_task")


async def test_too_many_requests_is_the_real_400() -> None:
    app_id = "4a8334b3-07ed-4a33-88c7-54d48bccecd7"  # the app of the capture
    async with FakeDify(max_active=1, app_id=app_id) as dify, client(dify) as c:
        dify.enqueue("/chat-messages", SilentPing())
        async with c.stream("POST", "chat-messages", json=chat()):
            await dify.wait_streams(1)
            busy = await c.post("chat-messages", json=chat(streaming=False))
        await dify.wait_streams(0)
        free = await c.post("chat-messages", json=chat(streaming=False))
    assert_like_capture(busy, "err_rate_limit_blocking_while_busy")
    assert free.status_code == 200


@pytest.mark.parametrize("streaming", [False, True])
async def test_workflow_key_on_chat_messages(streaming: bool) -> None:
    async with FakeDify(mode="workflow") as dify, client(dify) as c:
        response = await c.post("chat-messages", json=chat(streaming=streaming))
    suffix = "streaming" if streaming else "blocking"
    assert_like_capture(response, f"err_workflow_key_on_chat_messages_{suffix}")


async def test_scripted_http_errors_then_the_default(dify: FakeDify) -> None:
    dify.enqueue(
        "/chat-messages",
        HttpError(429, "too_many_requests", "Too many requests.", headers={"Retry-After": "2"}),
        ReplayHTTP("err_bad_key"),
    )
    async with client(dify) as c:
        limited = await c.post("chat-messages", json=chat())
        replayed = await c.post("chat-messages", json=chat())
        normal = await c.post("chat-messages", json=chat())
        unknown_route = await c.get("nowhere")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json() == {
        "code": "too_many_requests",
        "message": "Too many requests.",
        "status": 429,
    }
    assert_like_capture(replayed, "err_bad_key")
    assert names(parse(normal.content))[-1] == "workflow_finished"
    assert (unknown_route.status_code, unknown_route.json()["code"]) == (404, "not_found")
    with pytest.raises(ValueError, match="generate route"):
        dify.enqueue("/parameters", Answer())


# ---- silence, stop, cuts ----------------------------------------------------------------------


@pytest.mark.parametrize("script", [None, SilentPing(), ReplayHTTP("err_unknown_conversation")])
async def test_unknown_conversation_stream_is_one_ping_then_silence(
    dify: FakeDify, script: SilentPing | ReplayHTTP | None
) -> None:
    if script is not None:
        dify.enqueue("/chat-messages", script)
    body = chat(conversation_id=str(uuid.uuid4()))
    async with (
        client(dify, read=0.05) as c,
        c.stream("POST", "chat-messages", json=body) as response,
    ):
        raw = response.aiter_raw()
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert await anext(raw) == b"event: ping\n\n"
        with pytest.raises(httpx.ReadTimeout):
            await anext(raw)
        assert dify.active_streams == 1
    await dify.wait_streams(0)  # the client hung up: the fake noticed and stopped the stream


async def test_stop_mid_stream_ends_with_stopped_workflow_finished(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["working… ", "please stop me", "\n"], delay=5.0))
    body = chat("please stop me", user="stop-user")
    seen: list[Event] = []
    async with client(dify) as c:
        async with c.stream("POST", "chat-messages", json=body) as response:
            async for event in frames(response):
                seen.append(event)
                if isinstance(event, dict) and event["event"] == "message":
                    stop = await c.post(
                        f"chat-messages/{event['task_id']}/stop", json={"user": "stop-user"}
                    )
        history = await c.get(
            "messages",
            params={"conversation_id": data(seen)[0]["conversation_id"], "user": "stop-user"},
        )
    assert stop.json() == {"result": "success"}
    assert names(seen) == [
        "ping",
        "workflow_started",
        "node_started",
        "message",
        "workflow_finished",
    ]
    finished = data(seen)[-1]
    real = data(captured_events("stop_mid_stream"))[-1]
    assert key_sets([finished]) == key_sets([real])
    assert (finished["data"]["status"], finished["data"]["error"]) == (
        "stopped",
        "Stopped by user.",
    )
    assert finished["data"]["outputs"]["answer"] == "working… "
    assert dify.stops == [finished["task_id"]]
    assert history.json()["data"][0]["answer"] == "working… "


async def test_stop_by_another_user_does_not_interrupt(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["a", "b"], delay=0.05))
    seen: list[Event] = []
    async with (
        client(dify) as c,
        c.stream("POST", "chat-messages", json=chat(user="owner")) as response,
    ):
        async for event in frames(response):
            seen.append(event)
            if isinstance(event, dict) and event["event"] == "workflow_started":
                await c.post(
                    f"chat-messages/{event['task_id']}/stop", json={"user": "someone-else"}
                )
    # 1.13.2 streams the whole answer, then fails the run and skips message_end.
    assert "message_end" not in names(seen)
    assert [e.get("answer") for e in data(seen) if e["event"] == "message"] == ["a", "b"]
    finished, real = data(seen)[-1], data(captured_events("stop_by_other_user_stream"))[-1]
    assert key_sets([finished]) == key_sets([real])
    assert (finished["data"]["status"], finished["data"]["error"]) == (
        real["data"]["status"],
        real["data"]["error"],
    )
    assert len(dify.stops) == 1


async def test_abrupt_cut_is_an_incomplete_chunked_body(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", Cut(after=2), Cut(after=1, abrupt=False))
    seen: list[Event] = []
    async with client(dify) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            async with c.stream("POST", "chat-messages", json=chat()) as response:
                async for event in frames(response):
                    seen.append(event)
        clean = await c.post("chat-messages", json=chat())
    assert names(seen) == ["ping", "workflow_started", "node_started", "message", "message"]
    assert names(parse(clean.content))[-1] == "message"
    await dify.wait_streams(0)


async def test_in_stream_error_and_synthetic_failed_run(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", StreamError(after=1), FailedRun(), FailedRun(error="boom"))
    async with client(dify) as c:
        errored = parse((await c.post("chat-messages", json=chat())).content)
        failed = parse((await c.post("chat-messages", json=chat())).content)
        blocking = await c.post("chat-messages", json=chat(streaming=False))
    error = data(errored)[-1]
    assert names(errored)[-2:] == ["message", "error"]
    assert "task_id" not in error
    assert (error["status"], error["code"], error["message"]) == (
        400,
        "completion_request_error",
        "[openai] Rate Limit Error",
    )
    assert names(failed) == ["ping", "workflow_started", "workflow_finished"]
    for event in data(failed):
        assert "conversation_id" not in event and "message_id" not in event
        assert event["task_id"] == event["workflow_run_id"]
    assert (data(failed)[-1]["data"]["status"], data(failed)[-1]["data"]["error"]) == ("failed", "")
    assert blocking.json() == {
        "code": "invalid_param",
        "message": "Run failed: boom",
        "status": 400,
    }


async def test_stall_sends_nothing_until_it_ends(dify: FakeDify) -> None:
    dify.enqueue("/parameters", Stall(5.0))
    async with client(dify, read=0.05) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("parameters")
        parameters = await c.get("parameters")
    assert parameters.json() == json.loads((FIXTURES / "parameters.response.json").read_bytes())


# ---- other app modes ----------------------------------------------------------------------------


async def test_chatbot_pings_through_silence_and_sends_files() -> None:
    async with FakeDify(mode="chat", ping_interval=0.02) as dify, client(dify) as c:
        dify.enqueue(
            "/chat-messages", Answer(chunks=["a", "b"], delay=0.05, files=[{"type": "image"}])
        )
        events = parse((await c.post("chat-messages", json=chat())).content)
        unknown = await c.post("chat-messages", json=chat(conversation_id=str(uuid.uuid4())))
    assert names(events)[0] == "message" and "ping" in names(events)
    assert [n for n in names(events) if n != "ping"] == [
        "message",
        "message",
        "message_file",
        "message_end",
    ]
    assert data(events)[-1]["files"] is None
    assert data(events)[-2]["belongs_to"] == "assistant"
    assert unknown.status_code == 404  # only Chatflow streams go silent


async def test_agent_app_streams_thoughts_and_rejects_blocking() -> None:
    async with FakeDify(mode="agent-chat") as dify, client(dify) as c:
        thought = {"tool": "current_time", "tool_input": '{"current_time": {}}'}
        dify.enqueue(
            "/chat-messages",
            Answer(chunks=["It is ", "10:04"], agent_thoughts=[thought], files=[{}]),
        )
        events = parse((await c.post("chat-messages", json=chat())).content)
        blocking = await c.post("chat-messages", json=chat(streaming=False))
    assert names(events) == [
        "agent_thought",
        "agent_message",
        "agent_message",
        "message_file",
        "message_end",
    ]
    assert data(events)[0]["position"] == 1 and data(events)[0]["tool"] == "current_time"
    assert blocking.json()["code"] == "invalid_param"


async def test_completion_events_have_no_conversation() -> None:
    async with FakeDify(mode="completion") as dify, client(dify) as c:
        body = {"inputs": {"query": "hi"}, "response_mode": "streaming", "user": "u"}
        events = parse((await c.post("completion-messages", json=body)).content)
    assert names(events) == ["message", "message", "message_end"]
    assert all("conversation_id" not in e for e in data(events))
    assert dify.conversations == {}


# ---- state: conversations, uploads, waiting ---------------------------------------------


async def test_conversation_state_like_a_real_server(dify: FakeDify) -> None:
    async with client(dify) as c:
        first = (await c.post("chat-messages", json=chat("hello dify", streaming=False))).json()
        cid = first["conversation_id"]
        second = parse(
            (await c.post("chat-messages", json=chat("second turn", conversation_id=cid))).content
        )
        foreign = await c.post(
            "chat-messages", json=chat(streaming=False, user="mallory", conversation_id=cid)
        )
        listed = (await c.get("conversations", params={"user": "u"})).json()
        liked = await c.post(
            f"messages/{first['message_id']}/feedbacks", json={"rating": "like", "user": "u"}
        )
        history = (await c.get("messages", params={"conversation_id": cid, "user": "u"})).json()
        renamed = await c.post(f"conversations/{cid}/name", json={"name": "x", "user": "u"})
        deleted = await c.request("DELETE", f"conversations/{cid}", json={"user": "u"})
        again = await c.request("DELETE", f"conversations/{cid}", json={"user": "u"})
        gone = await c.get("messages", params={"conversation_id": cid, "user": "u"})
    assert data(second)[0]["conversation_id"] == cid
    assert data(second)[0]["data"]["inputs"]["sys.dialogue_count"] == 2
    assert_like_capture(foreign, "err_other_user_conversation_blocking")
    real_listing = json.loads((FIXTURES / "conversations.response.json").read_bytes())
    assert list(listed["data"][0]) == list(real_listing["data"][0])
    assert listed["data"][0]["name"] == "hello dify"
    assert liked.json() == {"result": "success"}
    real_history = json.loads((FIXTURES / "messages.response.json").read_bytes())
    assert list(history) == list(real_history)
    assert list(history["data"][0]) == list(real_history["data"][0])
    assert [m["answer"] for m in history["data"]] == ["echo: hello dify", "echo: second turn"]
    assert history["data"][0]["feedback"] == {"rating": "like"}
    _, _, real_renamed = captured_http("conversation_rename")
    assert list(renamed.json()) == list(json.loads(real_renamed)) and renamed.json()["name"] == "x"
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert_like_capture(again, "err_conversation_delete_again")
    assert_like_capture(gone, "err_deleted_conversation_messages")
    assert dify.conversations == {}


async def test_upload_round_trip(dify: FakeDify) -> None:
    async with client(dify) as c:
        files = {"file": ("note.txt", b"twenty-three bytes here", "text/plain")}
        uploaded = await c.post("files/upload", files=files, data={"user": "u"})
        file_id = uploaded.json()["id"]
        ref = {"type": "document", "transfer_method": "local_file", "upload_file_id": file_id}
        turn = (await c.post("chat-messages", json=chat(streaming=False, files=[ref]))).json()
        stranger = {**ref, "upload_file_id": str(uuid.uuid4())}
        rejected = await c.post("chat-messages", json=chat(streaming=False, files=[stranger]))
        history = await c.get(
            "messages", params={"conversation_id": turn["conversation_id"], "user": "u"}
        )
        preview = await c.get(uploaded.json()["source_url"])
        no_file = await c.post("files/upload", data={"user": "u"}, files={"other": ("x", b"x")})
    real = json.loads((FIXTURES / "files_upload.response.json").read_bytes())
    assert uploaded.status_code == 201 and uploaded.reason_phrase == "CREATED"
    assert list(uploaded.json()) == list(real)
    assert uploaded.json()["extension"] == "txt" and uploaded.json()["size"] == 23
    assert b"\\/" in uploaded.content  # Flask escapes "/" in regular JSON bodies
    assert dify.uploads[file_id] == ("note.txt", "text/plain", b"twenty-three bytes here", "u")
    assert history.json()["data"][0]["message_files"][0]["upload_file_id"] == file_id
    assert rejected.json()["message"] == "Invalid upload file"
    assert preview.content == b"twenty-three bytes here"
    assert no_file.json()["code"] == "no_file_uploaded"


async def test_upload_limit_and_audio() -> None:
    async with FakeDify(upload_limit_mb=0.001) as dify, client(dify) as c:
        too_big = await c.post(
            "files/upload", files={"file": ("a.bin", b"x" * 2000, "application/zip")}
        )
        mp3 = await c.post(
            "audio-to-text", files={"file": ("v.mp3", b"id3", "audio/mp3")}, data={"user": "u"}
        )
        mpeg = await c.post(
            "audio-to-text", files={"file": ("v.mp3", b"id3", "audio/mpeg")}, data={"user": "u"}
        )
    assert (too_big.status_code, too_big.json()) == (
        413,
        {"code": "file_too_large", "message": "", "status": 413},
    )
    assert mp3.json() == {"text": "transcribed: v.mp3"}
    assert (mpeg.status_code, mpeg.json()["code"]) == (415, "unsupported_audio_type")


async def test_wait_for_is_event_driven(dify: FakeDify) -> None:
    async with client(dify) as c:
        posting = asyncio.create_task(c.post("chat-messages", json=chat(streaming=False)))
        recorded = await dify.wait_for("/chat-messages")
        await posting
    assert recorded[0].method == "POST" and recorded[0].path == "/chat-messages"
    assert recorded[0].json == chat(streaming=False)
    assert recorded[0].headers["authorization"] == f"Bearer {KEY}"
    with pytest.raises(TimeoutError):
        await dify.wait_for("/chat-messages", count=2, timeout=0.01)
