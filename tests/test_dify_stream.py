"""AnswerStream, table-driven: frames per network read, ids spread over frames, what makes a
failed run a stale conversation, and how many conversation checks a resumed answer costs.

Each row is a stream as Dify writes it, read through the real client over httpx.MockTransport;
the assertions are on the typed events, the ids the stream exposes while it runs, and the
requests the transport recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot.dify.client import AnswerRequest
from bot.errors import ConversationNotFound, DifyProtocolError
from bot.models import AgentThought, AnswerEnd, AnswerEvent, TextDelta, TextReplace
from tests.test_dify_client import (
    SSE,
    Recorder,
    capture_response,
    client_for,
    collect,
    raw,
    sse,
    stream_response,
)

# Wall-clock bound on one stream in these tests: a broken deadline fails here, fast and clearly,
# instead of hanging until the suite's per-test limit.
BOUND = 10.0


def resumed(conversation_id: str = "c-live") -> AnswerRequest:
    return AnswerRequest(query="q", user="u", conversation_id=conversation_id)


async def reads(*chunks: bytes) -> AsyncIterator[bytes]:
    """A body arriving in exactly these network reads."""
    for chunk in chunks:
        yield chunk


def one_read(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers=SSE, content=reads(body))


def end(**fields: Any) -> dict[str, Any]:
    return {"event": "message_end", "id": "m", "metadata": {}, **fields}


def text(answer: str, **fields: Any) -> dict[str, Any]:
    return {"event": "message", "answer": answer, **fields}


# ---- several events in one network read -------------------------------------------------------

BATCHES: list[tuple[str, bytes, list[AnswerEvent]]] = [
    (
        "an ignored event between texts",
        sse(text("a"), {"event": "tts_message", "audio": "AA"}, text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "an unknown event between texts",
        sse(text("a"), {"event": "something_new", "x": 1}, text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "a ping between texts",
        sse(text("a"), "ping", text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "an empty data frame between texts",
        sse(text("a")) + b"data: \n\n" + sse(text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "a frame with no event name between texts",
        sse(text("a"), {"answer": "nameless"}, text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "a replace and a thought between texts",
        sse(
            text("raw"),
            {"event": "message_replace", "answer": "moderated"},
            {"event": "agent_thought", "id": "t", "position": 1, "tool": "clock"},
            text("!"),
            end(),
        ),
        [
            TextDelta("raw"),
            TextReplace("moderated"),
            AgentThought("t", 1, thought="", tool="clock", tool_input="", observation=""),
            TextDelta("!"),
        ],
    ),
    (
        "a ping carrying data",
        sse(text("a")) + b"event: ping\ndata: keep-alive\n\n" + sse(text("b"), end()),
        [TextDelta("a"), TextDelta("b")],
    ),
    (
        "frames after the closing event",
        sse(text("a"), end(), {"event": "tts_message_end"}, text("late")),
        [TextDelta("a")],
    ),
]


@pytest.mark.parametrize("conversation", [None, "c-live"], ids=["new", "resumed"])
@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in BATCHES], ids=[c[0] for c in BATCHES]
)
async def test_every_event_of_a_read_is_delivered(
    body: bytes, expected: list[AnswerEvent], conversation: str | None
) -> None:
    recorder = Recorder(one_read(body))
    request = AnswerRequest(query="q", user="u", conversation_id=conversation)
    async with asyncio.timeout(BOUND):
        events = await collect(client_for(recorder, mode="chat"), request)
    assert events[:-1] == expected
    assert isinstance(events[-1], AnswerEnd)
    assert [r.url.path for r in recorder.requests] == ["/v1/chat-messages"]


@pytest.mark.parametrize("conversation", [None, "c-live"], ids=["new", "resumed"])
async def test_reads_split_anywhere_give_the_same_events(conversation: str | None) -> None:
    body = sse("ping", text("Hel"), {"event": "tts_message"}, text("lo"), end())
    request = AnswerRequest(query="q", user="u", conversation_id=conversation)
    for size in (1, 5, 17, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        recorder = Recorder(httpx.Response(200, headers=SSE, content=reads(*chunks)))
        async with client_for(recorder, mode="chat").stream(request) as stream:
            events = [event async for event in stream]
            assert stream.pings == 1
            assert stream.texts == 2
        assert events[:2] == [TextDelta("Hel"), TextDelta("lo")], size
        assert isinstance(events[2], AnswerEnd)


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (b"data: [1, 2]\n\n", "stream frame is not a JSON object"),
        (b'data: "text"\n\n', "stream frame is not a JSON object"),
        (b"data: {oops\n\n", "stream frame is not JSON"),
    ],
    ids=["array", "string", "broken"],
)
async def test_a_frame_that_is_not_a_json_object_is_a_protocol_error(
    frame: bytes, says: str
) -> None:
    """The error says which, for whoever reads the log line about it."""
    recorder = Recorder(one_read(sse(text("a")) + frame + sse(end())))
    with pytest.raises(DifyProtocolError) as caught:
        await collect(client_for(recorder, mode="chat"))
    assert caught.value.message == says


async def test_nothing_after_the_closing_event_is_read_as_an_answer_or_an_error() -> None:
    """Dify may send tts_message_end or workflow_finished after message_end; the stream reads
    them (so the connection can be reused) and a cut there is no error."""

    async def body() -> AsyncIterator[bytes]:
        yield sse(text("done"), end())
        yield sse({"event": "tts_message_end"}, {"event": "error", "message": "late"})
        raise httpx.RemoteProtocolError("peer closed connection")

    recorder = Recorder(httpx.Response(200, headers=SSE, content=body()))
    async with asyncio.timeout(BOUND):
        events = await collect(client_for(recorder, mode="chat"))
    assert events[0] == TextDelta("done") and isinstance(events[1], AnswerEnd)
    assert len(events) == 2


async def test_the_rest_of_the_response_is_read_after_the_closing_event() -> None:
    """Chatflow sends workflow_finished (and TTS apps tts_message_end) after message_end: the
    stream reads them to the end of the response, so its connection can be reused."""
    read_to_the_end = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield sse(text("done"), end())
        yield sse({"event": "workflow_finished", "data": {"status": "succeeded"}})
        yield sse({"event": "tts_message_end", "audio": ""})
        read_to_the_end.set()

    recorder = Recorder(httpx.Response(200, headers=SSE, content=body()))
    async with asyncio.timeout(BOUND):
        events = await collect(client_for(recorder, mode="advanced-chat"))
    assert len(events) == 2 and isinstance(events[1], AnswerEnd)
    assert read_to_the_end.is_set()


async def test_a_connection_dify_keeps_open_after_the_end_is_let_go() -> None:
    """After the closing event the rest is read so the connection can be reused, but never for
    longer than DRAIN_SECONDS: a server that keeps it open must not hold the answer."""
    forever = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield sse(text("done"), end())
        await forever.wait()

    recorder = Recorder(httpx.Response(200, headers=SSE, content=body()))
    async with asyncio.timeout(BOUND):
        events = await collect(client_for(recorder, mode="chat"))
    assert events[0] == TextDelta("done") and isinstance(events[1], AnswerEnd)


async def test_a_stream_without_ids_leaves_them_empty() -> None:
    recorder = Recorder(one_read(sse(text("anonymous"), {"event": "message_end"})))
    async with client_for(recorder, mode="chat").stream(resumed()) as stream:
        events = [event async for event in stream]
        assert events[0] == TextDelta("anonymous")
        assert (stream.task_id, stream.conversation_id, stream.message_id) == ("", "", "")


# ---- ids spread over frames -------------------------------------------------------------------


@dataclass
class Ids:
    task_id: str = ""
    conversation_id: str = ""
    message_id: str = ""


IDS: list[tuple[str, list[dict[str, Any]], Ids]] = [
    (
        "one id per frame",
        [
            {"event": "workflow_started", "task_id": "t1", "data": {}},
            {"event": "node_started", "conversation_id": "c1", "data": {}},
            text("x", message_id="m1"),
        ],
        Ids("t1", "c1", "m1"),
    ),
    (
        "the last id first",
        [
            {"event": "node_started", "message_id": "m1", "data": {}},
            {"event": "node_started", "task_id": "t1", "data": {}},
            text("x", conversation_id="c1"),
        ],
        Ids("t1", "c1", "m1"),
    ),
    (
        "the first value of each id wins",
        [
            text("x", task_id="t1", conversation_id="c1", message_id="m1"),
            text("y", task_id="t2", conversation_id="c2", message_id="m2"),
        ],
        Ids("t1", "c1", "m1"),
    ),
    (
        "empty and non-string values wait for a real one",
        [
            text("w", task_id="", conversation_id=None, message_id=7),
            text("x", task_id="t1", conversation_id="c1", message_id="m1"),
        ],
        Ids("t1", "c1", "m1"),
    ),
    (
        "an id that changes before all are known keeps its first value",
        [
            {"event": "workflow_started", "task_id": "t1", "data": {}},
            {"event": "node_started", "task_id": "t2", "conversation_id": "c1", "data": {}},
            text("x", task_id="t3", message_id="m1"),
        ],
        Ids("t1", "c1", "m1"),
    ),
    (
        "ids on ignored events count",
        [
            {"event": "tts_message", "task_id": "t1", "conversation_id": "c1", "message_id": "m1"},
            text("x"),
        ],
        Ids("t1", "c1", "m1"),
    ),
]


@pytest.mark.parametrize(("frames", "expected"), [c[1:] for c in IDS], ids=[c[0] for c in IDS])
async def test_ids_are_known_as_soon_as_their_frame_is_read(
    frames: list[dict[str, Any]], expected: Ids
) -> None:
    """The answer keeps the conversation as soon as Dify names it (an answer cut short must
    continue it), so the ids must be there while the stream runs, not only at its end."""
    body = sse(*frames, {"event": "message_end", "metadata": {}})
    recorder = Recorder(one_read(body))
    seen: list[Ids] = []
    async with client_for(recorder, mode="chat").stream(resumed()) as stream:
        async for event in stream:
            seen.append(Ids(stream.task_id, stream.conversation_id, stream.message_id))
            if isinstance(event, TextDelta) and event.text == "x":
                assert seen[-1] == expected
    assert seen[-1] == expected


# ---- a failed run: stale conversation or ordinary failure --------------------------------------

FAILED = {"event": "workflow_finished", "task_id": "r1", "data": {"status": "failed", "error": ""}}

RUNS: list[tuple[str, str | None, bytes, str]] = [
    (
        "a failed run without ids in a resumed conversation",
        "c-gone",
        sse("ping", {"event": "workflow_started", "task_id": "r1", "data": {}}, FAILED),
        "stale",
    ),
    (
        "the same run in a new conversation",
        None,
        sse("ping", {"event": "workflow_started", "task_id": "r1", "data": {}}, FAILED),
        "failed",
    ),
    (
        "a failed node in a conversation that exists (capture)",
        "091f55a5-8806-4d1e-84c6-8992a69e5769",
        raw("node_failure_streaming.sse.raw"),
        "failed",
    ),
    (
        "a failed run naming its conversation",
        "c-live",
        sse({**FAILED, "conversation_id": "c-live"}),
        "failed",
    ),
    (
        "a failed run after text was shown",
        "c-live",
        sse({"event": "text_chunk", "data": {"text": "half"}}, FAILED),
        "failed",
    ),
    (
        "a replaced text before the failure",
        "c-live",
        sse({"event": "text_replace", "data": {"text": "whole"}}, FAILED),
        "failed",
    ),
    (
        "a succeeded run without ids",
        "c-live",
        sse({"event": "workflow_finished", "data": {"status": "succeeded"}}),
        "succeeded",
    ),
    (
        "a stopped run without ids",
        "c-live",
        sse({"event": "workflow_finished", "data": {"status": "stopped"}}),
        "stopped",
    ),
]


@pytest.mark.parametrize(
    ("conversation", "body", "outcome"), [c[1:] for c in RUNS], ids=[c[0] for c in RUNS]
)
async def test_only_a_silent_failure_of_a_resumed_conversation_is_stale(
    conversation: str | None, body: bytes, outcome: str
) -> None:
    """Dify fails a Chatflow run for a stale conversation at once, with no conversation id and
    no text (dify-api.md §6.3): only that is retried in a new conversation; any other failure
    is the user's answer, and retrying it fresh would silently lose the conversation."""
    recorder = Recorder(stream_response(body))
    client = client_for(recorder)
    request = AnswerRequest(query="q", user="u", conversation_id=conversation)
    async with asyncio.timeout(BOUND):
        if outcome == "stale":
            with pytest.raises(ConversationNotFound) as caught:
                await collect(client, request)
            assert caught.value.code == "not_found"  # as Dify's own 404 for it says
        else:
            events = await collect(client, request)
            last = events[-1]
            assert isinstance(last, AnswerEnd) and last.status == outcome
    assert [r.url.path for r in recorder.requests] == ["/v1/chat-messages"]


# ---- the silent-stream check: at most one GET /messages, only when needed ------------------------


@dataclass
class SilentDify:
    """A Chatflow stream that pings and waits for ``go`` before answering; GET /messages
    answers ``conversation`` (200 or the captured 404) and counts the checks."""

    conversation: str = "live"
    before: list[bytes] = field(default_factory=lambda: [b"event: ping\n\n"])
    after: list[bytes] = field(default_factory=list)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    checked: asyncio.Event = field(default_factory=asyncio.Event)
    release_on_check: bool = True

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.route)

    @property
    def checks(self) -> int:
        return sum(r.url.path == "/v1/messages" for r in self.recorder.requests)

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/messages":
            self.checked.set()
            if self.release_on_check:
                self.go.set()
            if self.conversation == "gone":
                return capture_response("err_deleted_conversation_messages.http")
            return httpx.Response(200, json={"limit": 1, "has_more": False, "data": []})
        return httpx.Response(200, headers=SSE, content=self.body())

    async def body(self) -> AsyncIterator[bytes]:
        for chunk in self.before:
            yield chunk
        await self.go.wait()
        for chunk in self.after:
            yield chunk


ANSWER = sse(text("late"), end())


async def run(dify: SilentDify, request: AnswerRequest, **kwargs: Any) -> list[AnswerEvent]:
    client = client_for(dify.recorder, mode="advanced-chat", **kwargs)
    async with asyncio.timeout(BOUND):
        return await collect(client, request)


async def test_a_resumed_answer_that_starts_in_time_costs_no_check() -> None:
    dify = SilentDify(after=[ANSWER], release_on_check=False)

    async def app() -> None:
        await asyncio.sleep(0.05)  # Dify takes a moment, well within the first-event timeout
        dify.go.set()

    thinking = asyncio.create_task(app())
    events = await run(dify, resumed(), first_event_timeout=BOUND)
    await thinking
    assert events[0] == TextDelta("late")
    assert dify.checks == 0


async def test_a_new_conversation_is_never_checked_however_slow() -> None:
    dify = SilentDify(after=[ANSWER])

    async def slow_app() -> None:
        await asyncio.sleep(0.3)  # the app thinks for longer than the first-event timeout
        dify.go.set()

    waking = asyncio.create_task(slow_app())
    events = await run(dify, AnswerRequest(query="q", user="u"), first_event_timeout=0.05)
    await waking
    assert events[0] == TextDelta("late")
    assert dify.checks == 0


async def test_a_silent_resumed_stream_is_checked_once_then_waited_for_through_pings() -> None:
    """A live conversation with a slow app: one check, then patience however long the app
    pings before it answers."""
    checked = asyncio.Event()

    async def pings() -> AsyncIterator[bytes]:
        yield b"event: ping\n\n"
        await checked.wait()
        for _ in range(3):  # each gap is longer than the first-event timeout
            await asyncio.sleep(0.1)
            yield b"event: ping\n\n"
        yield ANSWER

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/messages":
            checked.set()
            return httpx.Response(200, json={"limit": 1, "has_more": False, "data": []})
        return httpx.Response(200, headers=SSE, content=pings())

    recorder = Recorder(route)
    client = client_for(recorder, mode="advanced-chat", first_event_timeout=0.05)
    async with asyncio.timeout(BOUND), client.stream(resumed()) as stream:
        events = [event async for event in stream]
        assert stream.pings == 4
    assert events[0] == TextDelta("late") and isinstance(events[-1], AnswerEnd)
    assert [r.url.path for r in recorder.requests] == ["/v1/chat-messages", "/v1/messages"]
    assert recorder.requests[1].url.params["conversation_id"] == "c-live"


async def test_a_silent_stream_of_a_deleted_conversation_is_stale_after_one_check() -> None:
    dify = SilentDify(conversation="gone", release_on_check=False)
    with pytest.raises(ConversationNotFound) as caught:
        await run(dify, resumed("c-gone"), first_event_timeout=0.05)
    assert caught.value.code == "not_found"
    assert dify.checks == 1
    assert [r.url.path for r in dify.recorder.requests] == ["/v1/chat-messages", "/v1/messages"]


async def test_text_in_the_first_read_is_handed_on_without_waiting_for_the_next() -> None:
    """The first read holds a ping and the first words; the app then thinks. The words must
    show at once, and no check is due: Dify has answered."""
    dify = SilentDify(before=[sse("ping", text("first words"))], after=[sse(end())])
    client = client_for(dify.recorder, mode="advanced-chat", first_event_timeout=0.05)
    async with asyncio.timeout(BOUND), client.stream(resumed()) as stream:
        events: list[AnswerEvent] = []
        async for event in stream:
            events.append(event)
            if event == TextDelta("first words"):
                await asyncio.sleep(0.1)  # past the first-event timeout: no check may follow
                dify.go.set()  # the rest comes only once the first words were seen
    assert events[0] == TextDelta("first words") and isinstance(events[-1], AnswerEnd)
    assert dify.checks == 0


async def test_a_resumed_stream_that_closes_before_any_data_just_ends() -> None:
    dify = SilentDify(release_on_check=False)
    dify.go.set()  # nothing after the ping: the connection closes
    events = await run(dify, resumed(), first_event_timeout=BOUND)
    assert events == []
    assert dify.checks == 0


async def test_a_check_that_fails_otherwise_counts_as_a_live_conversation() -> None:
    """Only Dify's own "not found" makes a conversation stale; a 500 on the check must not
    lose the conversation."""
    go = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"event: ping\n\n"
        await go.wait()
        yield ANSWER

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/messages":
            go.set()
            return httpx.Response(500, json={"code": "internal_server_error", "status": 500})
        return httpx.Response(200, headers=SSE, content=body())

    recorder = Recorder(route)
    client = client_for(recorder, mode="advanced-chat", first_event_timeout=0.05)
    async with asyncio.timeout(BOUND):
        events = await collect(client, resumed())
    assert events[0] == TextDelta("late")
    assert sum(r.url.path == "/v1/messages" for r in recorder.requests) == 1
