"""The fake Dify pauses and resumes like the real 1.14.1 captures (tests/fixtures/dify/hitl_*).

Event order, envelope and ``data`` key sets and orders, error bodies byte for byte (ids swapped
for the fake's), status codes and headers: the Human Input pause, the form GET/POST and their
errors, the events stream before/after/across a submit, with and without the state snapshot,
the conversation's messages, a stop while paused, expiry, and runs that outlive their client.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.dify import CutRun, FakeDify, HumanFlow, HumanInput, Run
from tests.fakes.dify_behaviours import REJECT, file_input, select
from tests.test_fake_dify import (
    Event,
    assert_like_capture,
    captured_events,
    captured_http,
    client,
    data,
    frames,
    key_sets,
    names,
    parse,
)

USER = "hitl-user-a"
# Ids in the captures, swapped for the fake's when bodies are compared byte for byte.
FORM_ID = "01a2495e-fe10-78d0-b0bb-cdd491ee4b0f"
TOKEN = "eS2x9ToVsESyeRdETSniwn"
EXPIRED_FORM_ID = "01a24961-5a99-7697-85dc-4debafbfdb1f"


@pytest.fixture
async def hitl() -> AsyncIterator[FakeDify]:
    """App A of the captures: Answer1 -> Human Input ``human`` -> Answer2, on 1.14.1."""
    async with FakeDify(flow=HumanFlow(), version="1.14.1") as fake:
        yield fake


@pytest.fixture
async def hitl_workflow() -> AsyncIterator[FakeDify]:
    """App B: Start(query) -> Human Input -> End(action, note, query)."""
    flow = HumanFlow.captured_workflow()
    async with FakeDify(mode="workflow", flow=flow, version="1.14.1") as fake:
        yield fake


def chat(query: str = "ship it?", *, user: str = USER, **extra: Any) -> dict[str, Any]:
    return {"inputs": {}, "query": query, "response_mode": "streaming", "user": user} | extra


def run_body(query: str = "deploy v2", *, user: str = "hitl-user-w") -> dict[str, Any]:
    return {"inputs": {"query": query}, "response_mode": "streaming", "user": user}


def submit(action: str = "approve", *, user: str = USER, **inputs: Any) -> dict[str, Any]:
    return {"inputs": inputs or {"note": "looks good"}, "action": action, "user": user}


def quiet(events: list[Event]) -> list[str]:
    """Event names without pings (which may fall anywhere on a loaded machine)."""
    return [name for name in names(events) if name != "ping"]


def shapes(event: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Key order of an event's envelope and of its ``data``."""
    inner = event.get("data")
    return list(event), list(inner) if isinstance(inner, dict) else []


def by_name(events: list[Event], name: str) -> dict[str, Any]:
    return next(e for e in data(events) if e["event"] == name)


def same_shapes(ours: list[Event], real: list[Event], *event_names: str) -> None:
    for name in event_names:
        assert shapes(by_name(ours, name)) == shapes(by_name(real, name)), name


async def pause(c: httpx.AsyncClient, query: str = "ship it?", **extra: Any) -> list[Event]:
    return parse((await c.post("chat-messages", json=chat(query, **extra))).content)


async def follow(c: httpx.AsyncClient, run: Run, *, user: str = USER, **params: str) -> list[Event]:
    """An events stream read to its end."""
    response = await c.get(f"workflow/{run.run_id}/events", params={"user": user, **params})
    return parse(response.content)


def swap(body: bytes, *pairs: tuple[str, str]) -> bytes:
    for real, ours in pairs:
        body = body.replace(real.encode(), ours.encode())
    return body


# ---- the pause ------------------------------------------------------------------------------


async def test_chatflow_pause_stream_is_the_capture(hitl: FakeDify) -> None:
    async with client(hitl) as c:
        response = await c.post("chat-messages", json=chat())
    ours, real = parse(response.content), captured_events("hitl_chatflow_pause")
    assert names(ours) == names(real)
    assert key_sets(ours) == key_sets(real)
    same_shapes(
        ours, real, "workflow_started", "message", "human_input_required", "workflow_paused"
    )
    required, paused = by_name(ours, "human_input_required"), by_name(ours, "workflow_paused")
    real_reason = by_name(real, "workflow_paused")["data"]["reasons"][0]
    assert list(paused["data"]["reasons"][0]) == list(real_reason)
    form = required["data"]
    assert form["form_content"] == "Please review: ship it?\n\nNote: {{#$output.note#}}"
    assert form["inputs"] == by_name(real, "human_input_required")["data"]["inputs"]
    assert form["actions"] == by_name(real, "human_input_required")["data"]["actions"]
    assert len(form["form_token"]) == 22 and form["resolved_default_values"] == {}
    assert paused["data"]["reasons"][0]["form_token"] == form["form_token"]
    assert paused["data"]["paused_nodes"] == ["human"] and paused["data"]["outputs"] == {}
    # One task, message and run for every event; the text so far came as two chunks.
    assert len({(e["task_id"], e["message_id"]) for e in data(ours)}) == 1
    assert [e["answer"] for e in data(ours) if e["event"] == "message"] == [
        "before form: ",
        "ship it?",
    ]
    assert response.headers["x-version"] == "1.14.1"


async def test_workflow_pause_stream_is_the_capture(hitl_workflow: FakeDify) -> None:
    async with client(hitl_workflow) as c:
        ours = parse((await c.post("workflows/run", json=run_body())).content)
    real = captured_events("hitl_workflow_pause")
    assert names(ours) == names(real)
    assert key_sets(ours) == key_sets(real)
    same_shapes(ours, real, "human_input_required", "workflow_paused")
    assert by_name(ours, "human_input_required")["data"]["form_content"] == (
        "Please review: deploy v2\n\nNote: {{#$output.note#}}"
    )


async def test_paused_body_ends_close_delay_after_the_last_event() -> None:
    """1.14.1 ends the body about 1 s after workflow_paused (its relay polls once a second)."""
    async with (
        FakeDify(flow=HumanFlow(), close_delay=0.3) as fake,
        client(fake) as c,
        c.stream("POST", "chat-messages", json=chat()) as response,
    ):
        async for event in frames(response):
            if isinstance(event, dict) and event["event"] == "workflow_paused":
                paused_at = time.monotonic()
        ended_at = time.monotonic()
    assert ended_at - paused_at >= 0.25  # (asyncio timers may fire a hair early)


@pytest.mark.parametrize(
    ("workflow", "capture"),
    [(False, "hitl_chatflow_pause_blocking"), (True, "hitl_workflow_pause_blocking")],
)
async def test_blocking_pause_answers_at_once(workflow: bool, capture: str) -> None:
    mode, flow = (
        ("workflow", HumanFlow.captured_workflow()) if workflow else ("advanced-chat", HumanFlow())
    )
    async with FakeDify(mode=mode, flow=flow, version="1.14.1") as fake, client(fake) as c:
        body = run_body() if workflow else chat()
        response = await c.post(
            "workflows/run" if workflow else "chat-messages",
            json=body | {"response_mode": "blocking"},
        )
    _, headers, real_body = captured_http(capture)
    ours, real = response.json(), json.loads(real_body)
    assert list(ours) == list(real) and list(ours["data"]) == list(real["data"])
    assert list(ours["data"]["reasons"][0]) == list(real["data"]["reasons"][0])
    assert response.headers["content-type"] == headers["content-type"]
    assert b'", "' in response.content  # json.dumps separators, like the capture
    assert ours["data"]["status"] == "paused"


# ---- the form endpoints --------------------------------------------------------------------------


async def test_form_get_is_the_capture(hitl: FakeDify) -> None:
    async with client(hitl) as c:
        await pause(c)
        form = hitl.runs[0].forms[0]
        response = await c.get(f"form/human_input/{form.token}")
    status, headers, body = captured_http("hitl_form_get")
    real = json.loads(body)
    assert response.status_code == status
    assert response.json() == real | {"expiration_time": form.expiration_time}
    expected = swap(body, (str(real["expiration_time"]), str(form.expiration_time)))
    assert response.content == expected  # json.dumps spacing, no trailing newline
    assert response.headers["content-type"] == headers["content-type"]


async def test_form_errors_are_the_captures(hitl: FakeDify) -> None:
    hitl.other_keys.add("app-other-app")
    async with (
        client(hitl) as c,
        client(hitl, key="app-other-app") as other,
        client(hitl, key="app-wrong") as bad,
    ):
        await pause(c)
        form = hitl.runs[0].forms[0]
        path = f"form/human_input/{form.token}"
        unknown = await c.get("form/human_input/NoSuchToken0000000000")
        other_app = await other.get(path)
        no_user = await c.post(path, json={"inputs": {"note": "x"}, "action": "approve"})
        bad_action = await c.post(path, json=submit("maybe", note="x"))
        missing = await c.post(path, json={"inputs": {}, "action": "approve", "user": USER})
        unauthorized = await bad.get(path)
        approved = await c.post(path, json=submit())
        again = await c.post(path, json=submit("reject", note="again"))
        get_again = await c.get(path)
    assert_like_capture(unknown, "hitl_err_form_get_unknown_token")
    _, _, real_other = captured_http("hitl_err_form_get_other_app_key")
    assert (other_app.status_code, other_app.content) == (
        404,
        swap(real_other, (TOKEN, str(form.token))),
    )
    assert_like_capture(no_user, "hitl_err_form_submit_missing_user")
    assert_like_capture(bad_action, "hitl_err_form_submit_bad_action")
    assert_like_capture(missing, "hitl_err_form_submit_missing_input")
    assert unauthorized.status_code == 401
    assert_like_capture(approved, "hitl_form_submit_approve")
    for response, capture in (
        (again, "hitl_err_form_submit_again"),
        (get_again, "hitl_err_form_get_after_submit"),
    ):
        status, _, body = captured_http(capture)
        assert (response.status_code, response.content) == (
            status,
            swap(body, (FORM_ID, form.form_id)),
        )


async def test_expired_form_is_412_before_validation_and_the_run_stays_paused() -> None:
    now = [time.time()]
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1", clock=lambda: now[0]) as fake,
        client(fake) as c,
    ):
        await pause(c)
        form = fake.runs[0].forms[0]
        now[0] = form.expiration_time  # expired at its expiration_time, as Dify compares (<=)
        got = await c.get(f"form/human_input/{form.token}")
        posted = await c.post(f"form/human_input/{form.token}", json=submit("maybe"))
    for response, capture in (
        (got, "hitl_err_form_get_expired"),
        (posted, "hitl_err_form_submit_expired"),
    ):
        status, _, body = captured_http(capture)
        assert (response.status_code, response.content) == (
            status,
            swap(body, (EXPIRED_FORM_ID, form.form_id)),
        )
    assert fake.runs[0].status == "paused"


async def test_select_and_file_inputs_are_checked_and_rendered() -> None:
    node = HumanInput(
        content="Env: {{#$output.env#}} doc: {{#$output.doc#}} logs: {{#$output.logs#}}",
        inputs=(
            select("env", ("staging", "prod")),
            file_input("doc"),
            file_input("logs", types=("custom",), extensions=(".log",), limit=2),
        ),
        after=("deploying to ", "{{#human.env#}}"),
    )
    doc = {"type": "document", "transfer_method": "local_file", "upload_file_id": "f1"}
    log = {
        "type": "custom",
        "transfer_method": "remote_url",
        "url": "https://x/a.log",
        "extension": ".log",
    }
    cases = [
        ({"env": "qa", "doc": doc, "logs": []}, "Invalid value for select input 'env': qa"),
        (
            {"env": 3, "doc": doc, "logs": []},
            "Invalid value for select input 'env': expected string",
        ),
        (
            {"env": "prod", "doc": "x", "logs": []},
            "Invalid value for file input 'doc': expected mapping",
        ),
        (
            {"env": "prod", "doc": doc | {"type": "zip"}, "logs": []},
            "Invalid value for file input 'doc': unsupported file type",
        ),
        (
            {"env": "prod", "doc": doc | {"type": "image"}, "logs": []},
            "Invalid value for file input 'doc': file is not allowed by config",
        ),
        (
            {"env": "prod", "doc": doc, "logs": {}},
            "Invalid value for file list input 'logs': expected list",
        ),
        (
            {"env": "prod", "doc": doc, "logs": [log] * 3},
            "Invalid value for file list input 'logs': exceeds number limit",
        ),
        ({"env": "prod", "doc": doc}, "Missing required inputs: logs"),
    ]
    async with FakeDify(flow=HumanFlow(steps=(node,))) as fake, client(fake) as c:
        await pause(c)
        form = fake.runs[0].forms[0]
        path = f"form/human_input/{form.token}"
        for inputs, message in cases:
            refused = await c.post(path, json={"inputs": inputs, "action": "approve", "user": USER})
            assert refused.json() == {
                "code": "invalid_form_data",
                "message": message,
                "status": 400,
            }
        async with c.stream(
            "GET", f"workflow/{form.run_id}/events", params={"user": USER}
        ) as stream:
            events = frames(stream)
            assert await anext(events) == "ping"
            inputs = {"env": "prod", "doc": doc, "logs": [log, log]}
            assert (
                await c.post(path, json={"inputs": inputs, "action": "approve", "user": USER})
            ).status_code == 200
            resumed = [e async for e in events]
    filled = by_name(resumed, "human_input_form_filled")["data"]
    assert filled["rendered_content"] == "Env: prod doc: [file] logs: [2 files]"
    assert by_name(resumed, "workflow_finished")["data"]["outputs"]["answer"] == (
        "before form: ship it?deploying to prod"
    )


# ---- the events stream ---------------------------------------------------------------------------


async def test_events_before_submit_ping_and_wait(hitl: FakeDify) -> None:
    hitl.ping_interval = 0.05
    async with client(hitl) as c:
        await pause(c)
        run = hitl.runs[0]
        async with c.stream(
            "GET", f"workflow/{run.run_id}/events", params={"user": USER}
        ) as response:
            events = frames(response)
            seen = [await anext(events), await anext(events)]
    assert seen == names(captured_events("hitl_chatflow_events_before_submit"))  # ping, ping
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    await hitl.wait_streams(0)


async def read_across_submit(
    fake: FakeDify, c: httpx.AsyncClient, run: Run, body: dict[str, Any], **params: str
) -> tuple[list[Event], httpx.Response]:
    """Open the events stream while paused, submit once it pinged, read what follows."""
    seen: list[Event] = []
    query = {"user": run.turn.user, **params}
    async with c.stream("GET", f"workflow/{run.run_id}/events", params=query) as response:
        events = frames(response)
        seen.append(await anext(events))
        submitted = await c.post(f"form/human_input/{run.forms[-1].token}", json=body)
        async for event in events:
            seen.append(event)
            if (
                params.get("continue_on_pause")
                and isinstance(event, dict)
                and event["event"] == "workflow_finished"
            ):
                seen.append(await anext(events))  # and the stream goes on: a ping
                break
    return seen, submitted


async def test_events_across_submit_are_the_capture(hitl: FakeDify) -> None:
    async with client(hitl) as c:
        paused = await pause(c)
        run = hitl.runs[0]
        ours, submitted = await read_across_submit(hitl, c, run, submit())
        history = await c.get(
            "messages", params={"user": USER, "conversation_id": run.turn.conversation_id}
        )
    real = captured_events("hitl_chatflow_events_across_submit")
    assert submitted.content == b"{}\n"
    assert names(ours) == names(real)
    assert key_sets(ours) == key_sets(real)
    same_shapes(
        ours,
        real,
        "workflow_started",
        "human_input_form_filled",
        "message",
        "message_end",
        "workflow_finished",
    )
    started = by_name(ours, "workflow_started")
    assert started["data"]["reason"] == "resumption"
    first = data(paused)[0]
    for event in data(ours):  # the resumed run keeps the ids of the paused stream
        assert (event["task_id"], event["message_id"], event["conversation_id"]) == (
            first["task_id"],
            first["message_id"],
            first["conversation_id"],
        )
    human = [
        e
        for e in data(paused) + data(ours)
        if e["event"] == "node_started" and e["data"]["node_id"] == "human"
    ]
    assert len({e["data"]["id"] for e in human}) == 1  # the same node execution, started again
    assert (
        by_name(ours, "human_input_form_filled")["data"]
        == by_name(real, "human_input_form_filled")["data"]
    )
    assert [e["answer"] for e in data(ours) if e["event"] == "message"] == [
        e["answer"] for e in data(real) if e["event"] == "message"
    ]
    outputs = by_name(ours, "workflow_finished")["data"]["outputs"]
    assert outputs == by_name(real, "workflow_finished")["data"]["outputs"]
    human_done = [e["data"]["outputs"] for e in data(ours) if e["event"] == "node_finished"]
    real_done = [e["data"]["outputs"] for e in data(real) if e["event"] == "node_finished"]
    assert human_done[0] == real_done[0]
    _, _, real_history = captured_http("hitl_chatflow_messages_after_resume")
    item, real_item = history.json()["data"][0], json.loads(real_history)["data"][0]
    assert list(item) == list(real_item) and item["status"] == "normal"
    assert item["answer"] == real_item["answer"]
    assert item["extra_contents"] == [
        real_item["extra_contents"][0] | {"workflow_run_id": run.run_id}
    ]


async def test_workflow_events_across_submit_are_the_capture(hitl_workflow: FakeDify) -> None:
    async with client(hitl_workflow) as c:
        await c.post("workflows/run", json=run_body())
        run = hitl_workflow.runs[0]
        form = await c.get(f"form/human_input/{run.forms[0].token}")
        ours, submitted = await read_across_submit(
            hitl_workflow, c, run, submit(user="hitl-user-w", note="go ahead")
        )
        after = await follow(c, run, user="hitl-user-w")
        detail = await c.get(f"workflows/run/{run.run_id}")
        again = await c.post(
            f"form/human_input/{run.forms[0].token}", json=submit(user="hitl-user-w")
        )
    _, _, real_form = captured_http("hitl_workflow_form_get")
    expiration = {"expiration_time": run.forms[0].expiration_time}
    assert form.json() == json.loads(real_form) | expiration
    assert_like_capture(submitted, "hitl_workflow_form_submit_approve")
    real = captured_events("hitl_workflow_events_across_submit")
    assert names(ours) == names(real)
    assert key_sets(ours) == key_sets(real)
    assert [e["data"]["text"] for e in data(ours) if e["event"] == "text_chunk"] == [
        "approve",
        "\n",
        "go ahead",
        "\n",
        "deploy v2",
    ]
    assert by_name(ours, "workflow_finished")["data"]["outputs"] == {
        "action": "approve",
        "note": "go ahead",
        "query": "deploy v2",
    }
    real_after = captured_events("hitl_workflow_events_after_finish")
    assert names(after) == names(real_after) and key_sets(after) == key_sets(real_after)
    _, _, real_detail = captured_http("hitl_workflow_run_detail_finished")
    assert list(detail.json()) == list(json.loads(real_detail))
    assert detail.json()["status"] == "succeeded"
    status, _, body = captured_http("hitl_err_workflow_form_submit_again")
    real_form_id = json.loads(body)["message"].rsplit("=", 1)[1]
    assert (again.status_code, again.content) == (
        status,
        swap(body, (real_form_id, run.forms[0].form_id)),
    )


async def test_continue_on_pause_never_ends_the_stream(hitl: FakeDify) -> None:
    hitl.ping_interval = 0.05
    async with client(hitl) as c:
        await pause(c)
        ours, submitted = await read_across_submit(
            hitl,
            c,
            hitl.runs[0],
            submit("reject", user="intruder-user", note="not mine"),
            continue_on_pause="true",
        )
        run = hitl.runs[0]
        history = await c.get(
            "messages", params={"user": USER, "conversation_id": run.turn.conversation_id}
        )
    real = captured_events("hitl_chatflow_events_continue_on_pause_across_submit")
    assert quiet(ours) == quiet(real)[: quiet(real).index("workflow_finished") + 1]
    assert names(ours)[-1] == "ping"  # after workflow_finished: a ping, and no end
    assert by_name(ours, "human_input_form_filled")["data"]["action_id"] == "reject"
    assert_like_capture(submitted, "hitl_form_submit_other_user")  # another user: accepted
    _, _, real_history = captured_http("hitl_chatflow_messages_after_other_user_submit")
    real_item = json.loads(real_history)["data"][0]
    assert history.json()["data"][0]["answer"] == real_item["answer"].replace(
        "second run", "ship it?"
    )


async def test_snapshot_replays_the_paused_run(hitl: FakeDify) -> None:
    hitl.ping_interval = 0.05
    async with client(hitl) as c:
        await pause(c)
        run = hitl.runs[0]
        ours = await follow(c, run, include_state_snapshot="true")
        async with c.stream(
            "GET",
            f"workflow/{run.run_id}/events",
            params={"user": USER, "include_state_snapshot": "true", "continue_on_pause": "true"},
        ) as response:
            kept: list[Event] = []
            async for event in frames(response):
                kept.append(event)
                if len(kept) == len(ours) + 1:
                    break
    real = captured_events("hitl_chatflow_events_before_submit_snapshot")
    assert names(ours) == names(real)
    for mine, theirs in zip(data(ours), data(real), strict=True):
        assert shapes(mine) == shapes(theirs), mine["event"]
    replace = by_name(ours, "message_replace")
    assert (replace["answer"], replace["reason"]) == ("before form: ship it?", "")
    template = "Please review: {{#sys.query#}}\n\nNote: {{#$output.note#}}"
    assert by_name(ours, "human_input_required")["data"]["form_content"] == template
    paused = by_name(ours, "workflow_paused")["data"]
    assert (
        paused["reasons"][0]["form_content"] == template
    )  # unrendered here too (the bytes say so)
    assert paused["outputs"] == by_name(real, "workflow_paused")["data"]["outputs"]
    assert [e["data"]["status"] for e in data(ours) if e["event"] == "node_finished"] == [
        "succeeded",
        "succeeded",
        "paused",
    ]
    assert [e["data"]["index"] for e in data(ours) if e["event"] == "node_started"] == [1, 2, 3]
    assert names(kept)[-1] == "ping"  # continue_on_pause: the replay, then the stream stays open
    real_continue = captured_events("hitl_chatflow_events_before_submit_snapshot_continue")
    assert names(kept) == names(real_continue)[: len(kept)]


async def test_workflow_snapshot_is_the_capture(hitl_workflow: FakeDify) -> None:
    async with client(hitl_workflow) as c:
        await c.post("workflows/run", json=run_body())
        run = hitl_workflow.runs[0]
        ours = await follow(c, run, user="hitl-user-w", include_state_snapshot="true")
        detail = await c.get(f"workflows/run/{run.run_id}")
    real = captured_events("hitl_workflow_events_before_submit_snapshot")
    assert names(ours) == names(real)
    for mine, theirs in zip(data(ours), data(real), strict=True):
        assert shapes(mine) == shapes(theirs), mine["event"]
    assert by_name(ours, "human_input_required")["data"]["form_content"].startswith(
        "Please review: {{#"
    )
    _, _, real_detail = captured_http("hitl_workflow_run_detail_paused")
    assert list(detail.json()) == list(json.loads(real_detail))
    assert (detail.json()["status"], detail.json()["finished_at"], detail.json()["outputs"]) == (
        "paused",
        None,
        {},
    )


async def test_finished_run_is_one_frame_from_the_database(hitl: FakeDify) -> None:
    async with client(hitl) as c:
        await pause(c)
        run = hitl.runs[0]
        await c.post(f"form/human_input/{run.forms[0].token}", json=submit())
        await hitl.wait_run(status="succeeded")
        plain = await c.get(f"workflow/{run.run_id}/events", params={"user": USER})
        flags = await follow(c, run, include_state_snapshot="true", continue_on_pause="true")
    real = captured_events("hitl_chatflow_events_after_finish")
    assert names(real) == names(captured_events("hitl_chatflow_events_after_finish_continue"))
    for ours in (parse(plain.content), flags):
        assert names(ours) == names(real) == ["workflow_finished"]
        assert shapes(data(ours)[0]) == shapes(data(real)[0])
        assert data(ours)[0]["task_id"] == run.run_id
        assert data(ours)[0]["data"]["outputs"] == data(real)[0]["data"]["outputs"]
    assert plain.content.startswith(b'data: {"event": "workflow_finished", "task_id"')


async def test_events_errors_are_the_captures(hitl: FakeDify) -> None:
    async with client(hitl) as c:
        await pause(c)
        run = hitl.runs[0]
        missing = await c.get(f"workflow/{run.run_id}/events")
        other = await c.get(f"workflow/{run.run_id}/events", params={"user": "someone-else"})
        task = await c.get(f"workflow/{run.turn.task_id}/events", params={"user": USER})
    assert_like_capture(missing, "hitl_err_events_missing_user")
    assert_like_capture(other, "hitl_err_events_other_user")
    assert_like_capture(task, "hitl_err_events_with_task_id")


async def test_events_opened_before_the_worker_resumes_see_everything(hitl: FakeDify) -> None:
    """hitl_chatflow_events_after_submit: opened right after the submit returned, still before
    the worker picked the resume up (35 ms later there), so nothing was lost."""
    hitl.hold_resumes = True
    async with client(hitl) as c:
        await pause(c)
        run = hitl.runs[0]
        await c.post(f"form/human_input/{run.forms[0].token}", json=submit())
        await hitl.wait_run(held=True)
        async with c.stream(
            "GET", f"workflow/{run.run_id}/events", params={"user": USER}
        ) as response:
            events = frames(response)
            seen = [await anext(events)]
            hitl.release(run.run_id)
            seen += [e async for e in events]
    real = captured_events("hitl_chatflow_events_after_submit")
    assert names(seen) == names(real)
    assert key_sets(seen) == key_sets(real)


async def test_no_replay_of_events_published_before_the_subscription() -> None:
    """What the run published before the events stream subscribed is gone; the snapshot gives
    the stored answer and the node replay instead, then the live rest."""
    node = HumanInput(hold_after=2)
    async with FakeDify(flow=HumanFlow(steps=(node,))) as fake, client(fake) as c:
        await pause(c)
        run = fake.runs[0]
        await c.post(f"form/human_input/{run.forms[0].token}", json=submit())
        await fake.wait_run(held=True)  # two chunks of the resumed run were published to nobody
        async with c.stream(
            "GET", f"workflow/{run.run_id}/events", params={"user": USER}
        ) as response:
            events = frames(response)
            assert await anext(events) == "ping"
            fake.release(run.run_id)
            late = [e async for e in events]
    assert names(late)[0] == "message"  # no workflow_started, human_input_form_filled...
    assert [e["answer"] for e in data(late) if e["event"] == "message"] == [" note=", "looks good"]
    assert by_name(late, "workflow_finished")["data"]["outputs"]["answer"] == (
        "before form: ship it?after form: action=approve note=looks good"
    )


# ---- conversation state, second messages, stop, expiry -------------------------------------------


async def test_paused_messages_and_a_second_message_in_a_paused_conversation(
    hitl: FakeDify,
) -> None:
    async with client(hitl) as c:
        first = await pause(c, "first question", user="hitl-user-c")
        cid = data(first)[0]["conversation_id"]
        paused_history = await c.get(
            "messages", params={"user": "hitl-user-c", "conversation_id": cid}
        )
        second = await pause(c, "are you there?", user="hitl-user-c", conversation_id=cid)
        blocking = await c.post(
            "chat-messages",
            json=chat(
                "still there?", user="hitl-user-c", conversation_id=cid, response_mode="blocking"
            ),
        )
        two = await c.get("messages", params={"user": "hitl-user-c", "conversation_id": cid})
        await c.post(
            f"form/human_input/{hitl.runs[0].forms[0].token}",
            json=submit(user="hitl-user-c", note="first"),
        )
        await hitl.wait_run(1, status="succeeded")
        after_first = await c.get(
            "messages", params={"user": "hitl-user-c", "conversation_id": cid}
        )
        conversations = await c.get("conversations", params={"user": "hitl-user-c"})
    real_second = captured_events("hitl_chatflow_second_message_while_paused")
    assert names(second) == names(real_second)
    assert data(second)[0]["conversation_id"] == cid
    tokens = [run.forms[0].token for run in hitl.runs]
    assert len(set(tokens)) == 3 and len({run.run_id for run in hitl.runs}) == 3
    _, _, real_paused = captured_http("hitl_chatflow_messages_paused")
    item, real_item = paused_history.json()["data"][0], json.loads(real_paused)["data"][0]
    assert list(item) == list(real_item) and (item["status"], item["answer"]) == (
        "paused",
        "before form: first question",
    )
    pending, real_pending = item["extra_contents"][0], real_item["extra_contents"][0]
    assert list(pending) == list(real_pending) and list(pending["form_definition"]) == list(
        real_pending["form_definition"]
    )
    assert (
        pending["form_definition"]["form_token"] == tokens[0]
    )  # the token is recoverable from history
    _, _, real_two = captured_http("hitl_chatflow_messages_two_paused")
    assert [list(m) for m in two.json()["data"][:2]] == [
        list(m) for m in json.loads(real_two)["data"]
    ]
    assert [m["status"] for m in two.json()["data"]] == ["paused", "paused", "normal"]
    assert two.json()["data"][2]["answer"] == ""  # the blocking message is stored normal and empty
    _, _, real_blocking = captured_http("hitl_chatflow_second_message_while_paused_blocking")
    assert list(blocking.json()) == list(json.loads(real_blocking))
    _, _, real_after = captured_http("hitl_chatflow_messages_after_first_form_submitted")
    assert [m["status"] for m in after_first.json()["data"]] == [
        m["status"] for m in json.loads(real_after)["data"]
    ]
    assert (
        after_first.json()["data"][0]["answer"]
        == "before form: first questionafter form: action=approve note=first"
    )
    listed = conversations.json()["data"][0]
    for capture in (
        "hitl_chatflow_conversations_paused",
        "hitl_chatflow_conversations_after_resume",
    ):
        real_conversation = json.loads(captured_http(capture)[2])["data"][0]
        assert list(listed) == list(real_conversation)
        assert listed["status"] == real_conversation["status"] == "normal"


async def test_stop_while_paused_changes_nothing_until_the_submit(hitl: FakeDify) -> None:
    hitl.ping_interval = 0.05
    async with client(hitl) as c:
        paused = await pause(c, "stop me", user="hitl-user-e")
        run = hitl.runs[0]
        stopped = await c.post(
            f"chat-messages/{run.turn.task_id}/stop", json={"user": "hitl-user-e"}
        )
        async with c.stream(
            "GET", f"workflow/{run.run_id}/events", params={"user": "hitl-user-e"}
        ) as response:
            events = frames(response)
            waiting = [await anext(events), await anext(events)]
            form = await c.get(f"form/human_input/{run.forms[0].token}")
            submitted = await c.post(
                f"form/human_input/{run.forms[0].token}",
                json=submit(user="hitl-user-e", note="after stop"),
            )
            aborted = [e async for e in events]
        history = await c.get(
            "messages",
            params={"user": "hitl-user-e", "conversation_id": data(paused)[0]["conversation_id"]},
        )
    assert_like_capture(stopped, "hitl_chatflow_stop_while_paused")
    assert waiting == names(captured_events("hitl_chatflow_events_after_stop_while_paused"))
    _, _, real_form = captured_http("hitl_form_get_after_stop")
    expiration = {"expiration_time": run.forms[0].expiration_time}
    assert form.json() == json.loads(real_form) | expiration
    assert_like_capture(submitted, "hitl_form_submit_after_stop")
    assert quiet(aborted) == ["workflow_started", "workflow_finished"]  # a guess: not captured
    assert by_name(aborted, "workflow_finished")["data"]["status"] == "stopped"
    _, _, real = captured_http("hitl_chatflow_messages_after_stop_and_submit")
    item, real_item = history.json()["data"][0], json.loads(real)["data"][0]
    assert (item["status"], item["error"], item["answer"]) == (
        real_item["status"],
        real_item["error"],
        "before form: stop me",
    )
    assert item["extra_contents"][0]["submitted"] is True


async def test_expiry_resumes_down_the_timeout_branch() -> None:
    now = [time.time()]
    node = HumanInput(timeout=60, on_timeout=("no answer in time",))
    async with (
        FakeDify(flow=HumanFlow(steps=(node,)), clock=lambda: now[0]) as fake,
        client(fake) as c,
    ):
        await pause(c)
        run = fake.runs[0]
        assert fake.expire_forms() == []  # not due yet
        async with c.stream(
            "GET", f"workflow/{run.run_id}/events", params={"user": USER}
        ) as response:
            events = frames(response)
            assert await anext(events) == "ping"
            now[0] += 61
            assert fake.expire_forms() == [run.forms[0]]
            resumed = [e async for e in events]
        got = await c.get(f"form/human_input/{run.forms[0].token}")
    assert names(resumed)[:3] == ["workflow_started", "node_started", "human_input_form_timeout"]
    timeout = by_name(resumed, "human_input_form_timeout")["data"]
    assert timeout == {
        "node_id": "human",
        "node_title": "Review",
        "expiration_time": run.forms[0].expiration_time,
    }
    human = next(e for e in data(resumed) if e["event"] == "node_finished")["data"]["outputs"]
    assert human == {"__action_id": "", "__action_value": ""}
    assert (
        by_name(resumed, "workflow_finished")["data"]["outputs"]["answer"]
        == "before form: ship it?no answer in time"
    )
    assert got.json()["code"] == "human_input_form_expired"


async def test_a_second_human_input_node_pauses_again_with_a_new_form(hitl: FakeDify) -> None:
    second = HumanInput(
        node_id="confirm",
        title="Confirm",
        content="Really?",
        inputs=(),
        actions=(REJECT,),
        after=(" confirmed",),
    )
    async with FakeDify(flow=HumanFlow(steps=(HumanInput(), second))) as fake, client(fake) as c:
        await pause(c)
        run = fake.runs[0]
        first, _ = await read_across_submit(fake, c, run, submit())
        assert names(first)[-2:] == [
            "human_input_required",
            "workflow_paused",
        ]  # the stream ends there
        assert len(run.forms) == 2 and run.forms[1].token != run.forms[0].token
        last, _ = await read_across_submit(
            fake, c, run, {"inputs": {}, "action": "reject", "user": USER}
        )
    assert by_name(first, "human_input_required")["data"]["node_id"] == "confirm"
    assert by_name(last, "workflow_finished")["data"]["outputs"]["answer"] == (
        "before form: ship it?after form: action=approve note=looks good confirmed"
    )


# ---- runs that outlive their client --------------------------------------------------------------


@pytest.mark.parametrize("live", [False, True])
async def test_cut_chatflow_run_goes_on_and_a_client_reattaches(dify: FakeDify, live: bool) -> None:
    dify.snapshot_live = live
    dify.enqueue("/chat-messages", CutRun(after=2, chunks=("one ", "two ", "three ", "four")))
    async with client(dify) as c:
        seen: list[Event] = []
        with pytest.raises(httpx.RemoteProtocolError):
            async with c.stream("POST", "chat-messages", json=chat(user="u")) as response:
                async for event in frames(response):
                    seen.append(event)
        run = await dify.wait_run(held=True)
        rest = await follow(c, run, user="u", include_state_snapshot="true")
    assert [e["answer"] for e in data(seen) if e["event"] == "message"] == ["one ", "two "]
    replace = by_name(rest, "message_replace")["answer"]
    # Dify replays the message row's answer, written at pauses and at the end: "" mid-run.
    assert replace == ("one two " if live else "")
    assert [e["answer"] for e in data(rest) if e["event"] == "message"] == ["three ", "four"]
    assert names(rest)[-2:] == ["message_end", "workflow_finished"]
    assert by_name(rest, "workflow_finished")["data"]["outputs"]["answer"] == "one two three four"
    assert len(dify.requests_to("/chat-messages")) == 1  # Dify ran it once


async def test_cut_run_that_finished_meanwhile_gives_its_outputs() -> None:
    async with FakeDify() as fake, client(fake) as c:
        fake.enqueue("/chat-messages", CutRun(after=1, chunks=("a", "b", "c"), until="none"))
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("chat-messages", json=chat(user="u"))
        run = await fake.wait_run(status="succeeded")
        rest = await follow(c, run, user="u", include_state_snapshot="true")
    assert names(rest) == ["workflow_finished"]
    assert data(rest)[0]["data"]["outputs"]["answer"] == "abc"


async def test_stop_a_running_run(dify: FakeDify) -> None:
    dify.enqueue("/chat-messages", CutRun(after=1, chunks=("a", "b"), until="release"))
    async with client(dify) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("chat-messages", json=chat(user="u"))
        run = await dify.wait_run(held=True)
        await c.post(f"chat-messages/{run.turn.task_id}/stop", json={"user": "u"})
        await dify.wait_run(status="stopped")
        after = await follow(c, run, user="u")
    assert data(after)[0]["data"]["status"] == "stopped"
    assert data(after)[0]["data"]["outputs"]["answer"] == "a"


# ---- newer events --------------------------------------------------------------------------------


async def test_reasoning_and_tts_events() -> None:
    from tests.fakes.dify import Answer

    async with FakeDify() as fake, client(fake) as c:
        fake.enqueue(
            "/chat-messages", Answer(chunks=["4"], reasoning=("2+2", " is 4"), tts=("SUQz",))
        )
        events = parse((await c.post("chat-messages", json=chat())).content)
    reasoning = [e for e in data(events) if e["event"] == "reasoning_chunk"]
    assert [r["data"]["reasoning"] for r in reasoning] == ["2+2", " is 4", ""]
    assert [r["data"]["is_final"] for r in reasoning] == [False, False, True]
    assert list(reasoning[0]["data"]) == ["message_id", "reasoning", "node_id", "is_final"]
    assert names(events).index("reasoning_chunk") < names(events).index("message")
    assert names(events)[-3:] == ["message_end", "workflow_finished", "tts_message_end"]
    assert by_name(events, "tts_message")["audio"] == "SUQz"
    assert data(events)[-1]["audio"] == ""


async def test_new_agent_closes_with_the_whole_answer() -> None:
    from tests.fakes.dify import Answer

    async with FakeDify(mode="agent") as fake, client(fake) as c:
        fake.enqueue("/chat-messages", Answer(chunks=["It is ", "10:04"]))
        events = parse((await c.post("chat-messages", json=chat())).content)
        blocking = await c.post("chat-messages", json=chat(response_mode="blocking"))
    assert names(events) == ["agent_message", "agent_message", "message", "message_end"]
    assert by_name(events, "message")["answer"] == "It is 10:04"
    assert list(by_name(events, "message_end")["metadata"]) == ["usage"]
    assert (blocking.status_code, blocking.json()["code"]) == (400, "bad_request")


async def test_idle_events_stream_closes(hitl: FakeDify) -> None:
    hitl.idle_timeout, hitl.ping_interval = 0.12, 0.05
    async with client(hitl) as c:
        await pause(c)
        events = await follow(c, hitl.runs[0])
    assert set(names(events)) == {"ping"}  # pinged while idle, then closed
