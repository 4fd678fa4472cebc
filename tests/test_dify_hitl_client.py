"""The Dify client on Human Input forms, run event streams and the newer events.

Unit tests replay the 1.14.1 captures over httpx.MockTransport; the end-to-end ones drive the
fake Dify: pause, form, submit, follow the resumed run, reattach after a cut.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import httpx
import pytest

from bot.dify.client import AnswerRequest, DifyClient, build_http
from bot.dify.events import to_form
from bot.errors import (
    DifyHTTPError,
    DifyStreamCut,
    DifyUnavailable,
    FormAlreadySubmitted,
    FormExpired,
    FormInvalid,
    FormNotFound,
    RunNotFound,
)
from bot.models import (
    AnswerEnd,
    AnswerEvent,
    FormAction,
    FormField,
    FormFilled,
    FormRequest,
    FormTimedOut,
    Progress,
    Reasoning,
    TextDelta,
    TextReplace,
)
from storage.units import Database
from tests.fakes.core import core_rig
from tests.fakes.dify import Answer, CutRun, FakeDify, HumanFlow, HumanInput
from tests.fakes.dify_behaviours import REJECT, file_input, paragraph, select
from tests.fakes.replies import RecordingReply
from tests.test_dify_client import (
    SSE,
    Recorder,
    capture_response,
    client_for,
    raw,
    sse,
    stream_response,
)
from tests.test_dispatcher import TEXTS, message

RUN_ID = "6f313c56-2c19-4cc1-967b-a651c460d890"
TOKEN = "eS2x9ToVsESyeRdETSniwn"
PAUSED_TEXT = "before form: ship it?"
FULL_TEXT = "before form: ship it?after form: action=approve note=looks good"


class HeldOpen:
    """A body whose end never comes, as after Dify's last event (its relay closes about 1 s
    later, or never with continue_on_pause). ``overread``: the client waited for more."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts
        self.overread = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        self.overread = True
        await asyncio.Event().wait()


def held_open(body: bytes) -> HeldOpen:
    return HeldOpen(body)


def body_of(name: str) -> bytes:
    """The body of a ``*.http`` capture."""
    return raw(f"{name}.http").partition(b"\r\n\r\n")[2]


async def collect(stream: Any) -> list[AnswerEvent]:
    return [event async for event in stream]


async def follow(
    client: DifyClient, *, run_id: str = RUN_ID, user: str = "hitl-user-a", **kwargs: Any
) -> list[AnswerEvent]:
    async with client.run_events(run_id, user=user, **kwargs) as stream:
        return await collect(stream)


def texts(events: list[AnswerEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


# ---- the pause on the answer stream ----------------------------------------------------------


async def test_paused_chatflow_ends_with_its_form_and_run() -> None:
    body = held_open(raw("hitl_chatflow_pause.sse.raw"))
    client = client_for(Recorder(stream_response(body)))
    async with asyncio.timeout(5):  # the body never ends: act on workflow_paused, not on EOF
        async with client.stream(AnswerRequest(query="ship it?", user="hitl-user-a")) as stream:
            events = await collect(stream)
    assert texts(events) == ["before form: ", "ship it?"]
    form = next(e for e in events if isinstance(e, FormRequest))
    assert form == FormRequest(
        token=TOKEN,
        form_id="01a2495e-fe10-78d0-b0bb-cdd491ee4b0f",
        node_id="human",
        node_title="Review",
        content="Please review: ship it?\n\nNote: {{#$output.note#}}",
        fields=(FormField(name="note", type="paragraph"),),
        actions=(
            FormAction("approve", "Approve", "primary"),
            FormAction("reject", "Reject", "default"),
        ),
        expires_at=1796530891,
        workflow_run_id=RUN_ID,
        display_in_ui=True,
    )
    end = events[-1]
    assert isinstance(end, AnswerEnd) and end.paused and end.status == "paused"
    assert (end.workflow_run_id, end.forms) == (RUN_ID, (form,))
    assert (stream.workflow_run_id, stream.task_id) == (
        RUN_ID,
        "63c5107e-d276-44ad-8642-f041bf05fcf7",
    )
    assert stream.message_id == "a1d571f6-44be-49d7-8a2f-8dfe8ff50046"
    assert form.answerable and form.text() == "Please review: ship it?\n\nNote: "
    assert not form.is_expired(1796530890) and form.is_expired(1796530891)
    assert not body.overread
    await client._http.aclose()


async def test_paused_workflow_run() -> None:
    body = held_open(raw("hitl_workflow_pause.sse.raw"))
    client = client_for(Recorder(stream_response(body)), mode="workflow")
    async with (
        asyncio.timeout(5),
        client.stream(AnswerRequest(query="deploy v2", user="w")) as stream,
    ):
        events = await collect(stream)
    end = events[-1]
    assert isinstance(end, AnswerEnd) and end.paused
    assert end.forms[0].token == "V8VGKCbhWNA4S5CEX0BX3x"
    assert stream.workflow_run_id == "c2dace17-f79b-4202-ba61-2d0ecdb51241"
    assert stream.conversation_id == "" and stream.task_id == "bb2dfe76-c142-4cc4-91a7-184a9b665bb9"
    assert not body.overread


def test_every_shape_of_a_form_reads_alike() -> None:
    required = next(
        json.loads(line[6:])
        for line in raw("hitl_chatflow_pause.sse.raw").split(b"\n")
        if b'"human_input_required"' in line
    )
    event_form = to_form(required["data"], workflow_run_id=RUN_ID)
    paused = json.loads(body_of("hitl_chatflow_messages_paused"))["data"][0]
    history_form = to_form(
        paused["extra_contents"][0]["form_definition"],
        workflow_run_id=paused["extra_contents"][0]["workflow_run_id"],
    )
    got = to_form(json.loads(body_of("hitl_form_get")), token=TOKEN)
    reason = json.loads(body_of("hitl_chatflow_pause_blocking"))["data"]["reasons"][0]
    blocking_form = to_form(reason)
    assert history_form == event_form  # a pending form can be rebuilt from the history
    assert (got.token, got.content, got.fields, got.actions, got.expires_at) == (
        event_form.token,
        event_form.content,
        event_form.fields,
        event_form.actions,
        event_form.expires_at,
    )
    assert got.form_id == "" and got.workflow_run_id == ""  # the GET body names no ids
    assert blocking_form.token == "oidbSNwjP8DYYAV3IagDkI" and blocking_form.actions == got.actions


def test_field_types_options_defaults_and_file_rules() -> None:
    data = {
        "form_token": None,
        "form_content": "{{#$output.env#}} {{#$output.logs#}}",
        "inputs": [
            paragraph("note", default="n/a"),
            paragraph("who", selector=("sys", "user_id")),
            select("env", ("staging", "prod")),
            file_input("doc"),
            file_input("logs", types=("custom",), extensions=(".log",), limit=3),
            {"type": "text_input", "output_variable_name": "legacy"},
            {"type": "paragraph"},
        ],
        "actions": [{"id": "go", "title": "Go"}, {"title": "no id"}],
        "resolved_default_values": {"who": "hitl-user-a"},
        "expiration_time": None,
        "display_in_ui": False,
    }
    form = to_form(data)
    assert [f.name for f in form.fields] == ["note", "who", "env", "doc", "logs", "legacy"]
    note, who, env, doc, logs, legacy = form.fields
    assert (note.default, who.default) == ("n/a", "hitl-user-a")
    assert env.options == ("staging", "prod") and not env.is_file
    assert (doc.is_file, doc.max_files, doc.file_types, doc.upload_methods) == (
        True,
        1,
        ("document",),
        ("local_file", "remote_url"),
    )
    assert (logs.type, logs.max_files, logs.file_extensions) == ("file-list", 3, (".log",))
    assert legacy.type == "text_input"
    assert form.actions == (FormAction("go", "Go", "default"),)
    assert not form.answerable and not form.display_in_ui  # e-mail delivery: no token
    assert not form.is_expired(2e9) and form.text("…") == "… …"


# ---- following a run ---------------------------------------------------------------------------


async def test_run_events_request_and_the_resumed_run() -> None:
    recorder = Recorder(stream_response(raw("hitl_chatflow_events_across_submit.sse.raw")))
    client = client_for(recorder)
    events = await follow(client, snapshot=False, shown=PAUSED_TEXT)
    sent = recorder.requests[0]
    assert (sent.method, sent.url.path) == ("GET", f"/v1/workflow/{RUN_ID}/events")
    assert dict(sent.url.params) == {"user": "hitl-user-a"}
    assert sent.headers["authorization"] == "Bearer app-secret-key"
    assert events[0] == Progress("workflow", "resumed")
    filled = next(e for e in events if isinstance(e, FormFilled))
    assert filled == FormFilled(
        "human", "Review", "approve", "Approve", "Please review: ship it?\n\nNote: looks good"
    )
    assert "".join(texts(events)) == "after form: action=approve note=looks good"
    assert not any(isinstance(e, TextReplace) for e in events)  # shown + new text = the answer
    end = events[-1]
    assert isinstance(end, AnswerEnd) and end.status == "succeeded"
    assert end.outputs["answer"] == FULL_TEXT  # from workflow_finished...
    assert end.usage["currency"] == "USD"  # ...merged with the message_end before it
    assert end.message_id == "a1d571f6-44be-49d7-8a2f-8dfe8ff50046"
    assert end.workflow_run_id == RUN_ID


async def test_run_events_count_pings_and_a_broken_stream_is_a_cut() -> None:
    head = raw("hitl_chatflow_events_across_submit.sse.raw")[:1500]

    async def broken() -> AsyncIterator[bytes]:
        yield head[: head.rindex(b"\n\n") + 2]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    recorder = Recorder(stream_response(broken()))
    client = client_for(recorder)
    seen: list[AnswerEvent] = []
    with pytest.raises(DifyStreamCut):
        async with client.run_events(RUN_ID, user="hitl-user-a") as stream:
            async for event in stream:
                seen.append(event)
    assert stream.pings == 1 and seen[0] == Progress("workflow", "resumed")
    assert stream.workflow_run_id == RUN_ID and len(recorder.requests) == 1


async def test_run_events_give_the_whole_answer_when_text_was_missed() -> None:
    """Events published before the subscription are lost; the run's outputs are not."""
    recorder = Recorder(stream_response(raw("hitl_chatflow_events_across_submit.sse.raw")))
    events = await follow(client_for(recorder))  # shown nothing: the pre-pause text is missing
    assert events[-2:-1] == [TextReplace(FULL_TEXT)]


async def test_finished_run_is_its_outputs() -> None:
    recorder = Recorder(stream_response(raw("hitl_chatflow_events_after_finish.sse.raw")))
    client = client_for(recorder)
    events = await follow(client, snapshot=True, continue_on_pause=True, shown=PAUSED_TEXT)
    assert dict(recorder.requests[0].url.params) == {
        "user": "hitl-user-a",
        "include_state_snapshot": "true",
        "continue_on_pause": "true",
    }
    assert events[0] == TextReplace(FULL_TEXT)
    assert isinstance(events[1], AnswerEnd) and events[1].status == "succeeded"
    shown_all = await follow(
        client_for(Recorder(stream_response(raw("hitl_chatflow_events_after_finish.sse.raw")))),
        shown=FULL_TEXT,
    )
    assert [type(e) for e in shown_all] == [AnswerEnd]


@pytest.mark.parametrize(
    ("shown", "replaced"), [("", True), (PAUSED_TEXT, True), (PAUSED_TEXT + " and more", False)]
)
async def test_snapshot_of_a_paused_run(shown: str, replaced: bool) -> None:
    body = held_open(raw("hitl_chatflow_events_before_submit_snapshot.sse.raw"))
    client = client_for(Recorder(stream_response(body)))
    async with asyncio.timeout(5):
        events = await follow(client, snapshot=True, shown=shown)
    # The stored answer comes back only when it does not rewind what is shown.
    assert (TextReplace(PAUSED_TEXT) in events) is replaced
    form = next(e for e in events if isinstance(e, FormRequest))
    assert form.content.startswith("Please review: {{#sys.query#}}")  # the replay's template
    end = events[-1]
    assert isinstance(end, AnswerEnd) and end.paused and end.forms == (form,)
    assert end.outputs["answer"] == PAUSED_TEXT
    assert not body.overread


async def test_continue_on_pause_stream_ends_at_the_run_end() -> None:
    """With continue_on_pause Dify never ends the body; the client stops at workflow_finished."""
    body = held_open(raw("hitl_chatflow_events_continue_on_pause_across_submit.sse.raw")[:-26])
    client = client_for(Recorder(stream_response(body)))
    async with asyncio.timeout(5):
        events = await follow(
            client, run_id="7802c3d9-03e3-43da-9691-69b73b69742c", continue_on_pause=True
        )
    assert isinstance(events[-1], AnswerEnd) and events[-1].status == "succeeded"
    assert next(e for e in events if isinstance(e, FormFilled)).action_id == "reject"
    assert not body.overread


async def test_continue_on_pause_goes_on_after_a_pause() -> None:
    pause = raw("hitl_chatflow_events_before_submit_snapshot.sse.raw")
    resumed = raw("hitl_chatflow_events_across_submit.sse.raw")
    client = client_for(Recorder(stream_response(pause + resumed)))
    events = await follow(client, snapshot=True, continue_on_pause=True)
    ends = [e for e in events if isinstance(e, AnswerEnd)]
    assert [e.status for e in ends] == ["paused", "succeeded"]


@pytest.mark.parametrize(
    ("capture", "error"),
    [
        ("hitl_err_events_other_user", RunNotFound),
        ("hitl_err_events_with_task_id", RunNotFound),
        ("hitl_err_events_missing_user", DifyHTTPError),
    ],
)
async def test_run_events_errors(capture: str, error: type[DifyHTTPError]) -> None:
    client = client_for(Recorder(capture_response(f"{capture}.http")))
    with pytest.raises(error) as caught:
        await follow(client)
    assert caught.value.status in (400, 404) and caught.value.message
    assert len(client._http._transport.handler.requests) == 1  # type: ignore[attr-defined]


# ---- the form endpoints --------------------------------------------------------------------------


async def test_form_and_its_errors() -> None:
    client = client_for(Recorder(capture_response("hitl_form_get.http")))
    form = await client.form(TOKEN)
    assert (form.token, form.fields[0].name, form.actions[0].style) == (TOKEN, "note", "primary")
    cases = [
        ("hitl_err_form_get_after_submit", FormAlreadySubmitted, 412, "human_input_form_submitted"),
        ("hitl_err_form_get_expired", FormExpired, 412, "human_input_form_expired"),
        ("hitl_err_form_get_unknown_token", FormNotFound, 404, "not_found"),
        ("hitl_err_form_get_other_app_key", FormNotFound, 404, "not_found"),
    ]
    for capture, error, status, code in cases:
        failing = client_for(Recorder(capture_response(f"{capture}.http")))
        with pytest.raises(error) as caught:
            await failing.form(TOKEN)
        assert (caught.value.status, caught.value.code) == (status, code)
        assert caught.value.message == json.loads(body_of(capture))["message"]


async def test_submit_form_body_and_errors() -> None:
    recorder = Recorder(capture_response("hitl_form_submit_approve.http"))
    client = client_for(recorder)
    result = await client.submit_form(
        TOKEN, inputs={"note": "looks good"}, action="approve", user="hitl-user-a"
    )
    sent = recorder.requests[0]
    assert result is None and (sent.method, sent.url.path) == (
        "POST",
        f"/v1/form/human_input/{TOKEN}",
    )
    assert json.loads(sent.content) == json.loads(
        raw("hitl_form_submit_approve.request.http").partition(b"\r\n\r\n")[2]
    )
    cases = [
        ("hitl_err_form_submit_missing_input", FormInvalid, "Missing required inputs: note"),
        ("hitl_err_form_submit_bad_action", FormInvalid, "Invalid action: maybe"),
        ("hitl_err_form_submit_again", FormAlreadySubmitted, None),
        ("hitl_err_form_submit_expired", FormExpired, None),
    ]
    for capture, error, reason in cases:
        failing = client_for(Recorder(capture_response(f"{capture}.http")))
        with pytest.raises(error) as caught:
            await failing.submit_form(TOKEN, inputs={}, action="maybe", user="u")
        assert reason is None or caught.value.message == reason


async def test_submit_is_never_retried() -> None:
    recorder = Recorder(
        httpx.Response(503, json={"code": "unavailable", "message": "x", "status": 503})
    )
    client = client_for(recorder)
    with pytest.raises(DifyUnavailable):
        await client.submit_form(TOKEN, inputs={}, action="approve", user="u")
    assert len(recorder.requests) == 1


# ---- newer events and the end of the body --------------------------------------------------------


async def test_reasoning_tts_and_text_chunks() -> None:
    envelope = {"conversation_id": "c", "message_id": "m", "task_id": "t", "workflow_run_id": "r"}
    body = sse(
        envelope
        | {
            "event": "reasoning_chunk",
            "data": {"message_id": "m", "reasoning": "2+2", "node_id": "llm", "is_final": False},
        },
        envelope
        | {
            "event": "reasoning_chunk",
            "data": {"message_id": "m", "reasoning": "", "node_id": "llm", "is_final": True},
        },
        envelope | {"event": "message", "answer": "4"},
        envelope | {"event": "tts_message", "audio": "SUQz"},
        envelope | {"event": "text_chunk", "data": {"text": "!", "from_variable_selector": None}},
        envelope | {"event": "message_end", "metadata": {}},
        envelope | {"event": "tts_message_end", "audio": ""},
    )
    client = client_for(Recorder(stream_response(body)))
    async with client.stream(AnswerRequest(query="2+2?", user="u")) as stream:
        events = await collect(stream)
    assert events[:2] == [Reasoning("2+2", False, "llm"), Reasoning("", True, "llm")]
    assert texts(events) == ["4", "!"] and isinstance(events[-1], AnswerEnd)


async def test_new_agent_closing_message_replaces() -> None:
    async with FakeDify(mode="agent") as fake:
        fake.enqueue("/chat-messages", Answer(chunks=["It is ", "10:04"]))
        client = DifyClient(build_http(fake.base_url), api_key=fake.api_key)
        await client.detect_mode()
        async with client.stream(AnswerRequest(query="time?", user="u")) as stream:
            events = await collect(stream)
        await client._http.aclose()
    assert texts(events) == ["It is ", "10:04"]
    assert [e for e in events if isinstance(e, TextReplace)] == [TextReplace("It is 10:04")]


@pytest.mark.parametrize("split", [False, True])
async def test_closing_events_do_not_wait_for_the_end_of_the_body(split: bool) -> None:
    """Dify's body ends about 1 s after workflow_finished (its relay polls once a second): a
    drain that waited for it would hold every Chatflow answer back by that second."""
    frames = raw("hitl_chatflow_events_across_submit.sse.raw").split(b"\n\n")
    head = b"\n\n".join(frames[:-3]) + b"\n\n"
    tail = b"\n\n".join(frames[-3:])  # message_end, workflow_finished

    start = raw("hitl_chatflow_pause.sse.raw")[:13] + head
    message_end, finished = tail.split(b"\n\n", 1)
    body = HeldOpen(start, message_end + b"\n\n", finished) if split else HeldOpen(start, tail)
    client = client_for(Recorder(httpx.Response(200, headers=SSE, content=body)))
    async with asyncio.timeout(5), client.stream(AnswerRequest(query="q", user="u")) as stream:
        events = await collect(stream)
        assert not body.overread  # the answer ended without waiting for the body's end
    assert isinstance(events[-1], AnswerEnd) and events[-1].status == "succeeded"
    await client.settle()  # the rest is drained after the answer, for DRAIN_SECONDS at most


# ---- end to end against the fake Dify ------------------------------------------------------------


async def fake_client(fake: FakeDify) -> DifyClient:
    client = DifyClient(build_http(fake.base_url), api_key=fake.api_key)
    await client.detect_mode()
    return client


async def test_pause_submit_and_follow_the_resumed_run_on_the_fake() -> None:
    second = HumanInput(
        node_id="confirm",
        title="Confirm",
        content="Sure?",
        inputs=(),
        actions=(REJECT,),
        after=(" confirmed",),
    )
    async with FakeDify(flow=HumanFlow(steps=(HumanInput(), second))) as fake:
        client = await fake_client(fake)
        async with client.stream(AnswerRequest(query="ship it?", user="u1")) as stream:
            first = await collect(stream)
        end = first[-1]
        assert isinstance(end, AnswerEnd) and end.paused
        form = end.forms[0]
        assert (await client.form(form.token)).content == form.content
        shown = "".join(texts(first))
        # Subscribe first, submit once Dify has the subscription: nothing published is lost.
        async with client.run_events(end.workflow_run_id, user="u1", shown=shown) as events:
            await fake.wait_run(subscribed=1)
            await client.submit_form(form.token, inputs={"note": "ok"}, action="approve", user="u1")
            resumed = await collect(events)
        paused_again = resumed[-1]
        assert isinstance(paused_again, AnswerEnd) and paused_again.paused
        assert (
            paused_again.forms[0].node_id == "confirm" and paused_again.forms[0].token != form.token
        )
        shown += "".join(texts(resumed))
        with pytest.raises(FormAlreadySubmitted):
            await client.submit_form(
                form.token, inputs={"note": "again"}, action="approve", user="u1"
            )
        async with client.run_events(end.workflow_run_id, user="u1", shown=shown) as events:
            await fake.wait_run(subscribed=1)
            await client.submit_form(
                paused_again.forms[0].token, inputs={}, action="reject", user="u1"
            )
            last = await collect(events)
        await client._http.aclose()
    assert (
        shown + "".join(texts(last))
        == "before form: ship it?after form: action=approve note=ok confirmed"
    )
    assert isinstance(last[-1], AnswerEnd) and last[-1].status == "succeeded"
    assert not any(isinstance(e, TextReplace) for e in last)


async def test_expired_form_and_timeout_branch_on_the_fake() -> None:
    now = [1_800_000_000.0]
    node = HumanInput(timeout=60, on_timeout=("nobody answered",))
    async with FakeDify(flow=HumanFlow(steps=(node,)), clock=lambda: now[0]) as fake:
        client = await fake_client(fake)
        async with client.stream(AnswerRequest(query="q", user="u1")) as stream:
            end = (await collect(stream))[-1]
        assert isinstance(end, AnswerEnd)
        now[0] += 61
        with pytest.raises(FormExpired):
            await client.submit_form(
                end.forms[0].token, inputs={"note": "late"}, action="approve", user="u1"
            )
        async with client.run_events(
            end.workflow_run_id, user="u1", shown="before form: q"
        ) as events:
            await fake.wait_run(subscribed=1)
            fake.expire_forms()
            resumed = await collect(events)
        await client._http.aclose()
    assert FormTimedOut("human", "Review", end.forms[0].expires_at) in resumed
    assert "".join(texts(resumed)) == "nobody answered"


@pytest.mark.parametrize("live", [False, True])
async def test_reattach_after_a_cut_continues_without_rewinding(live: bool) -> None:
    async with FakeDify() as fake:
        fake.snapshot_live = live
        fake.enqueue("/chat-messages", CutRun(after=2, chunks=("one ", "two ", "three ", "four")))
        client = await fake_client(fake)
        shown = ""
        with pytest.raises(DifyStreamCut):
            async with client.stream(AnswerRequest(query="q", user="u1")) as stream:
                async for event in stream:
                    shown += event.text if isinstance(event, TextDelta) else ""
        run_id = stream.workflow_run_id
        seen: list[str] = [shown]
        async with client.run_events(run_id, user="u1", snapshot=True, shown=shown) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    seen.append(seen[-1] + event.text)
                elif isinstance(event, TextReplace):
                    seen.append(event.text)
        await client._http.aclose()
        requests = len(fake.requests_to("/chat-messages"))
    assert run_id and requests == 1  # Dify ran it once
    assert seen[-1] == "one two three four"
    assert all(later.startswith(earlier) for earlier, later in pairwise(seen))  # no rewind


@pytest.mark.allow_warnings(r"run paused")
async def test_the_answerer_takes_the_new_events_in_its_stride(db: Database) -> None:
    """Until forms are answered in chat (issue 17), a pause still ends with the old notice, at
    once rather than when Dify's body ends; reasoning and audio do not disturb an answer."""
    async with FakeDify(flow=HumanFlow(), close_delay=30.0) as fake:
        fake.enqueue("/chat-messages", Answer(chunks=["4"], reasoning=("2+2",), tts=("SUQz",)))
        http = build_http(fake.base_url)
        client = DifyClient(http, api_key=fake.api_key, mode="advanced-chat")
        answered, paused = RecordingReply(), RecordingReply()
        async with core_rig(db, client, texts=TEXTS) as core, asyncio.timeout(10):
            await core.ask(message("2+2?"), answered)
            await core.ask(message("ship it?"), paused)
        await http.aclose()
    assert answered.final == ("finish", "4")
    assert paused.final == ("fail", "before form: ship it?|" + TEXTS.get("paused"))
