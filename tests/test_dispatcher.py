"""The core (inbox and answerer) against the loopback fake Dify and the real store and journal
(SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.contract import ReplyCapabilities
from bot.dify.client import DifyClient, build_http
from bot.errors import ShuttingDown
from bot.models import ConversationKey, IncomingMessage, Scope
from bot.texts import Texts
from storage.conversations import ConversationStore
from storage.units import Database
from tests.fakes.core import CoreRig, Replies, core_rig
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, Cut, HttpError, SilentPing, StreamError
from tests.fakes.replies import RecordingReply

TEXTS = Texts("en")
BUSY = HttpError(
    400,
    "invalid_param",
    "Too many requests. Please try again later. "
    "The current maximum concurrent requests allowed for app is 1.",
)


@dataclass
class Rig:
    dify: FakeDify
    client: DifyClient
    store: ConversationStore
    core: CoreRig


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture(params=["advanced-chat", "chat"])
async def rig(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[Rig]:
    async with FakeDify(mode=request.param) as dify:
        http = build_http(dify.base_url)
        client = DifyClient(
            http,
            api_key="app-test-key",
            mode=request.param,
            first_event_timeout=0.3,
            sleep=no_sleep,
        )
        try:
            async with core_rig(db, client, texts=TEXTS, replies=Replies(takeover=False)) as core:
                yield Rig(dify, client, core.store, core)
        finally:
            await http.aclose()


def message(text: str, user: str = "U1", scope_id: str | None = None) -> IncomingMessage:
    key = ConversationKey("test", "W1", Scope.USER, scope_id or user)
    return IncomingMessage("test", "W1", user, text, key, message_id=f"{user}-{text}")


async def ask(rig: Rig, text: str, **kwargs: str) -> RecordingReply:
    reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=0.0))
    await rig.core.ask(message(text, **kwargs), reply)
    return reply


async def test_answer_streams_and_the_conversation_is_kept(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Answer(chunks=["echo: ", "hello"], delay=0.05))
    first = await ask(rig, "hello")
    assert first.calls[0] == ("start", "")
    assert first.final == ("finish", "echo: hello")
    assert first.of("update")  # progressive edits happened before the final
    answer = first.answers[0]
    assert answer.conversation_id and answer.message_id and answer.task_id
    stored = await rig.store.get(message("x").key)
    assert stored == answer.conversation_id

    second = await ask(rig, "again")
    assert second.final == ("finish", "echo: again")
    bodies = [r.json for r in rig.dify.requests_to("/chat-messages")]
    assert "conversation_id" not in bodies[0]
    assert bodies[1]["conversation_id"] == stored
    assert bodies[0]["user"] == bodies[1]["user"] == "test:W1:U1"


async def test_same_conversation_in_order_without_forking(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Answer(chunks=["slow ", "first"], delay=0.15))
    replies = [RecordingReply(), RecordingReply()]
    tasks = [
        await rig.core.submit(message("one"), replies[0]),
        await rig.core.submit(message("two"), replies[1]),
    ]
    await rig.dify.wait_for("/chat-messages", 1)
    assert not replies[0].done.is_set()
    assert len(rig.dify.requests_to("/chat-messages")) == 1  # "two" waits for "one"
    await asyncio.gather(*(t for t in tasks if t is not None))
    bodies = [r.json for r in rig.dify.requests_to("/chat-messages")]
    assert "conversation_id" not in bodies[0]
    assert bodies[1]["conversation_id"] == replies[0].answers[0].conversation_id
    entries = [await rig.core.journal.get(d.entry_id) for d in rig.core.replies.delivered]
    assert [e.status for e in entries if e] == ["done", "done"]  # nothing left open


async def test_different_conversations_run_concurrently(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Answer(chunks=["slow"], delay=0.5))
    slow, fast = RecordingReply(), RecordingReply()
    slow_task = await rig.core.submit(message("slow", user="A"), slow)
    await rig.dify.wait_for("/chat-messages", 1)
    await rig.core.ask(message("fast", user="B"), fast)
    assert fast.final == ("finish", "echo: fast")
    assert not slow.done.is_set()
    assert slow_task is not None
    await slow_task
    assert slow.final == ("finish", "slow")


async def test_stale_conversation_is_dropped_and_the_message_asked_fresh(rig: Rig) -> None:
    key = message("x").key
    gone = "6f1d2c3b-0000-4000-8000-000000000000"
    await rig.store.set(key, gone, dify_user="test:W1:U1")
    if rig.dify.mode == "advanced-chat":
        rig.dify.enqueue("/chat-messages", SilentPing())  # what Dify 1.13.2 does
    reply = await ask(rig, "still there?")
    assert reply.final == ("finish", "echo: still there?")
    bodies = [r.json for r in rig.dify.requests_to("/chat-messages")]
    assert bodies[0]["conversation_id"] == gone
    assert "conversation_id" not in bodies[1]
    assert await rig.store.get(key) == reply.answers[0].conversation_id != gone


@pytest.mark.allow_warnings(r"type=DifyRateLimited")
async def test_busy_app_tells_the_user(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", BUSY, BUSY, BUSY, BUSY)
    reply = await ask(rig, "hi")
    assert reply.final == ("fail", "|" + TEXTS.get("busy"))
    assert len(rig.dify.requests_to("/chat-messages")) == 4  # 1 + 3 retries


async def test_busy_then_free_answers_normally(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", BUSY)
    reply = await ask(rig, "hi")
    assert reply.final == ("finish", "echo: hi")


@pytest.mark.allow_warnings(r"type=DifyStreamCut")
async def test_cut_stream_keeps_the_partial_answer_with_a_notice(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Cut(after=2, chunks=["Partial ", "answer", " lost"]))
    reply = await ask(rig, "hi")
    assert reply.final == ("fail", "Partial answer|" + TEXTS.get("interrupted"))
    assert len(rig.dify.requests_to("/chat-messages")) == 1  # never re-asked mid-answer


@pytest.mark.allow_warnings(r"type=DifyStreamError")
async def test_in_stream_error_keeps_partial_text(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", StreamError(after=1, chunks=["Half"]))
    reply = await ask(rig, "hi")
    assert reply.final == ("fail", "Half|" + TEXTS.get("error"))


@pytest.mark.allow_warnings(r"type=DifyQuotaExceeded")
async def test_quota_error_has_its_own_sentence(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", HttpError(429, "rate_limit_error", "Rate Limit Error"))
    reply = await ask(rig, "hi")
    assert reply.final == ("fail", "|" + TEXTS.get("quota"))


async def test_stop_ends_the_answer_cleanly(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Answer(chunks=["a", "b", "c", "d", "e", "f"], delay=0.2))
    reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=0.0))
    msg = message("long one")
    task = await rig.core.submit(msg, reply)
    await asyncio.wait_for(reply.updated.wait(), 5)
    assert await rig.core.inbox.stop(msg.key) is True
    assert task is not None
    await task
    kind, text = reply.final
    assert rig.dify.stops and rig.dify.stops[0] == reply_task_id(rig)
    if rig.dify.mode == "advanced-chat":  # 1.13.2: workflow_finished "stopped", no message_end
        assert kind == "fail" and text.endswith(TEXTS.get("stopped"))
    else:  # Chatbot apps close a stopped answer with message_end and the partial text
        assert kind == "finish"
    assert text.startswith("a") and "f" not in text
    assert await rig.core.inbox.stop(msg.key) is False  # nothing running any more


def reply_task_id(rig: Rig) -> str:
    return rig.dify.requests_to(f"/chat-messages/{rig.dify.stops[0]}/stop")[0].path.split("/")[2]


async def test_reset_starts_a_new_conversation(rig: Rig) -> None:
    await ask(rig, "one")
    assert await rig.core.inbox.reset(message("x").key) is True
    await ask(rig, "two")
    bodies = [r.json for r in rig.dify.requests_to("/chat-messages")]
    assert "conversation_id" not in bodies[1]


async def test_trace_id_is_sent_and_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.answering"):
        await ask(rig, "trace me")
    trace = rig.dify.requests_to("/chat-messages")[0].headers["x-trace-id"]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("answered"))
    assert f"trace={trace}" in line and "outcome=answered" in line
    assert "trace me" not in caplog.text  # no user text at INFO


async def test_shutdown_cancels_and_tells_the_user(rig: Rig) -> None:
    """On a platform no other process can finish an answer for (the terminal)."""
    rig.dify.enqueue("/chat-messages", Answer(chunks=["x"] * 50, delay=0.2))
    reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=0.0))
    task = await rig.core.submit(message("hi"), reply)
    await rig.dify.wait_for("/chat-messages", 1)
    await rig.core.inbox.close(grace=0.05)
    assert task is not None and task.cancelled()
    assert reply.final[0] == "fail" and reply.final[1].endswith(TEXTS.get("interrupted"))
    await rig.dify.wait_streams(0)  # cancelling closed the connection to Dify
    with pytest.raises(ShuttingDown):
        await rig.core.submit(message("late"), RecordingReply())


async def test_shutdown_hands_a_platforms_answer_over_untold(db: Database, dify: FakeDify) -> None:
    """Where another replica can finish the answer, closing releases the entry at once and
    tells the user nothing: the taker answers."""
    dify.enqueue("/chat-messages", Answer(chunks=["x"] * 50, delay=0.2))
    async with (
        build_http(dify.base_url) as http,
        core_rig(db, DifyClient(http, api_key=dify.api_key)) as core,
    ):
        reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=0.0))
        task = await core.submit(message("hi"), reply)
        await dify.wait_for("/chat-messages", 1)
        await core.inbox.close(grace=0.05)
        assert task is not None and task.cancelled()
        (delivery,) = core.replies.delivered
        entry = await core.journal.get(delivery.entry_id)
    assert not [c for c in reply.calls if c[0] == "fail"]
    assert entry is not None and entry.status == "pending" and entry.owner is None


@pytest.mark.allow_warnings(r"^answer failed")
async def test_a_reply_that_breaks_on_finish_is_caught_and_reported(rig: Rig) -> None:
    class Broken(RecordingReply):
        async def finish(self, text: str, answer: object) -> None:  # type: ignore[override]
            raise RuntimeError("platform down")

    reply = Broken()
    await rig.core.ask(message("hi"), reply)
    assert reply.final == ("fail", "echo: hi|" + TEXTS.get("error"))


@pytest.mark.parametrize(
    ("mode", "path", "expected"),
    [
        ("agent-chat", "/chat-messages", "echo: what time is it"),
        ("workflow", "/workflows/run", "what time is it"),  # the captured app echoes its input
        ("completion", "/completion-messages", "echo: what time is it"),
    ],
)
async def test_every_app_mode_answers_a_chat_message(
    db: Database, mode: str, path: str, expected: str
) -> None:
    async with FakeDify(mode=mode) as dify:
        http = build_http(dify.base_url)
        client = DifyClient(http, api_key=dify.api_key)  # mode learned from /info
        assert await client.detect_mode() == mode
        reply = RecordingReply()
        async with core_rig(db, client) as core:
            await core.ask(message("what time is it"), reply)
        await http.aclose()
    assert reply.final == ("finish", expected)
    assert len(dify.requests_to(path)) == 1


@pytest.mark.allow_warnings(r"type=DifyStreamCut")
async def test_a_cut_first_answer_still_keeps_its_conversation(rig: Rig) -> None:
    rig.dify.enqueue("/chat-messages", Cut(after=1, chunks=["Part", "ial"]))
    first = await ask(rig, "one")
    assert first.final[0] == "fail"
    second = await ask(rig, "two")
    assert second.final == ("finish", "echo: two")
    bodies = [r.json for r in rig.dify.requests_to("/chat-messages")]
    assert bodies[1]["conversation_id"] == second.answers[0].conversation_id  # no fork
    assert len(set(rig.dify.conversations)) == 1
