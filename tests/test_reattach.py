"""Resumable runs: a Chatflow answer whose stream is cut, or whose replica dies, reattaches to
the same Dify run (``GET /workflow/{id}/events?include_state_snapshot=true``) and goes on in the
same reply; the user never sees it rewind and Dify runs it once. Chatbot apps are unchanged."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
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
from tests.test_reliability import RESTARTED, ResumableReply, make_dispatcher, message

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
