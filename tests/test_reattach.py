"""Resumable runs: a Chatflow answer whose stream is cut, or whose replica dies, reattaches to
the same Dify run (``GET /workflow/{id}/events?include_state_snapshot=true``) and goes on in the
same reply; the user never sees it rewind and Dify runs it once. Chatbot apps are unchanged."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.dify.client import DifyClient, build_http
from bot.models import to_record
from storage.journal import Journal
from storage.units import Database
from tests.fakes.core import core_rig
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Cut, CutRun
from tests.fakes.replies import RecordingReply
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import dm
from tests.test_cli_e2e import clean_env, difybot
from tests.test_reliability import RESTARTED, ResumableReply, make_dispatcher, message
from tests.test_restart import shown

WORDS = ("one ", "two ", "three ", "four")


def never_rewinds(reply: RecordingReply) -> None:
    shown = [text for kind, text in reply.calls if kind in ("update", "finish")]
    for before, after in itertools.pairwise(shown):
        assert after.startswith(before), f"rewound: {before!r} -> {after!r}"


async def test_a_cut_chatflow_stream_reattaches_to_the_same_run(db: Database) -> None:
    async with FakeDify() as dify:
        dify.enqueue("/chat-messages", CutRun(after=2, chunks=WORDS))
        client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
        reply = RecordingReply()
        async with core_rig(db, client) as rig:
            await rig.ask(message("count", "C1:1.1"), reply)
        await client._http.aclose()
        (events,) = [r for r in dify.requests if r.path.startswith("/workflow/")]
    assert reply.final == ("finish", "one two three four")
    never_rewinds(reply)
    assert len(dify.requests_to("/chat-messages")) == 1  # Dify ran it once
    assert events.query["include_state_snapshot"] == "true"
    assert events.query["user"] == "test:W1:U1"


@pytest.mark.allow_warnings("type=DifyStreamCut")
async def test_a_cut_chatbot_stream_still_says_it_was_interrupted(db: Database) -> None:
    async with FakeDify(mode="chat") as dify:
        dify.enqueue("/chat-messages", Cut(after=2))
        client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
        reply = RecordingReply()
        async with core_rig(db, client) as rig:
            await rig.ask(message("count", "C1:1.2"), reply)
        await client._http.aclose()
    assert reply.final is not None and reply.final[0] == "fail"
    assert not [r for r in dify.requests if r.path.startswith("/workflow/")]


async def started_elsewhere(dify: FakeDify, query: str) -> tuple[str, str]:
    """A run another replica started and lost (its connection dropped with it): its id and
    the text that replica had shown."""
    dify.enqueue("/chat-messages", CutRun(after=2, chunks=WORDS))
    body = {"inputs": {}, "query": query, "user": "test:W1:U1", "response_mode": "streaming"}
    run_id, text = "", ""
    headers = {"Authorization": f"Bearer {dify.api_key}"}
    async with httpx.AsyncClient(base_url=dify.base_url, headers=headers) as http:
        try:
            async with http.stream("POST", "chat-messages", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        event: dict[str, Any] = json.loads(line[6:])
                        run_id = run_id or str(event.get("workflow_run_id") or "")
                        text += (
                            str(event.get("answer") or "") if event["event"] == "message" else ""
                        )
        except httpx.HTTPError:
            pass  # the connection drops mid-answer
    return run_id, text


async def test_a_dead_replicas_chatflow_run_is_reattached_not_asked_again(db: Database) -> None:
    async with FakeDify() as dify:
        run_id, shown = await started_elsewhere(dify, "count")
        assert run_id and shown == "one two "
        # The dead replica had claimed the message, posted its reply and kept the run.
        dead = Journal(db, lease=2.0, clock=lambda: time.time() - 100)
        msg = message("count", "C1:7.7")
        entry, _ = await dead.record(
            "default/test/W1/C1:7.7", conversation_key=msg.key.as_str(), platform="test",
            message=to_record(msg), reply={"channel": "C1"}, owner="dead",
        )  # fmt: skip
        assert await dead.claim(entry, "dead")
        await dead.save_reply_state(entry, {"messages": ["posted-by-dead"]})
        await dead.mark_shown(entry)
        await dead.save_run(entry, {"id": run_id, "shown": shown})
        restored: list[ResumableReply] = []
        taker = make_dispatcher(dify, db, "replica-b", restored, lease=2.0)
        try:
            assert await taker.inbox.take_over() == 1
            await asyncio.wait_for(taker.inbox.idle(), 10)
        finally:
            await taker.close()
            await taker.answerer.apps.default._http.aclose()
    (reply,) = restored
    assert reply.calls[0] == ("resume", "posted-by-dead")
    assert reply.final == ("finish", "one two three four")
    assert not any(RESTARTED in text for _, text in reply.calls)  # it did not start again
    never_rewinds(reply)
    assert all(text.startswith(shown) for kind, text in reply.calls if kind == "update")
    assert len(dify.requests_to("/chat-messages")) == 1  # Dify ran it once


async def test_a_killed_replicas_chatflow_answer_is_reattached_after_restart(
    tmp_path: Path,
) -> None:
    # `difybot serve` is SIGKILLed mid-answer and started again: the Chatflow run goes on in
    # Dify meanwhile, and the restarted replica follows it instead of asking again.
    words = tuple(f"w{i} " for i in range(40))
    async with FakeDify(chunk_delay=0.15) as dify, FakeSlack() as slack:
        dify.enqueue("/chat-messages", CutRun(after=10**6, chunks=words, until="none"))
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=slack.url,
            HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1", STREAM_EDIT_INTERVAL="0.1",
        )  # fmt: skip
        first = await difybot("serve", env=env, cwd=tmp_path)
        second = None
        try:
            await slack.until(lambda: bool(slack.socket.sockets), 30, "Socket Mode")
            await slack.socket.send("events_api", dm("count", ts="1800000000.000100"))
            await slack.until(
                lambda: any("w5" in shown(c) for c in slack.calls_to("chat.update")), 20, "w5"
            )
            first.send_signal(signal.SIGKILL)
            await first.wait()
            before = len(slack.calls_to("chat.update"))
            second = await difybot("serve", env=env, cwd=tmp_path)
            (message,) = slack.messages.in_channel("D111")
            await slack.until(lambda: message.body == "".join(words), 30, "the whole answer")
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 20)
    assert slack.messages.in_channel("D111") == [message]  # the same message, edited on
    after = [shown(c) for c in slack.calls_to("chat.update")[before:]]
    assert after and all("w5" in text for text in after)  # never rewound past what was shown
    assert not any(RESTARTED in text for text in after)  # it did not start again
    assert len(dify.requests_to("/chat-messages")) == 1  # Dify ran it once
    assert [r for r in dify.requests if r.path.startswith("/workflow/")]


@pytest.mark.allow_warnings("run paused trace=t1")  # the first run, paused, has no forms desk
async def test_a_stale_pause_in_the_snapshot_is_read_past(db: Database) -> None:
    # Followed from a snapshot right after the submit, before Dify's worker picked the resume
    # up: the snapshot still shows the run paused on the answered form. It must not be shown
    # again; the run's resumed text follows on the same stream.
    from bot.answering.progressive import ProgressiveReply
    from bot.answering.run import AnswerRun, Outcome
    from bot.texts import Texts
    from tests.fakes.dify import HumanFlow

    async with FakeDify(flow=HumanFlow(), version="1.14.1") as dify:
        dify.hold_resumes = True
        client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
        msg = message("ship it?", "C1:5.5")
        try:
            paused = AnswerRun(client, msg, ProgressiveReply(RecordingReply()), texts=Texts(),
                               trace_id="t1", on_pause=None)  # fmt: skip
            await paused.ask(None)
            run = await dify.wait_run(status="paused")
            (form,) = run.forms
            await client.submit_form(form.token, inputs={"note": "ok"}, action="approve",
                                     user=msg.dify_user)  # fmt: skip
            reply = RecordingReply()
            follower = AnswerRun(client, msg, ProgressiveReply(reply), texts=Texts(),
                                 trace_id="t2")  # fmt: skip
            following = asyncio.create_task(
                follower.follow(
                    run.run_id, shown="before form: ship it?", answered=frozenset({form.token})
                )
            )
            await dify.wait_run(subscribed=1)
            dify.release(run.run_id)  # the worker picks the resume up
            outcome = await asyncio.wait_for(following, 10)
        finally:
            await client._http.aclose()
    assert outcome is Outcome.ANSWERED
    assert reply.final == ("finish", "before form: ship it?after form: action=approve note=ok")
