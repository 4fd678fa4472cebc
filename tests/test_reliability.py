"""Two replicas sharing one database: answered once, in order, finished when a replica dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.contract import Delivery, ReplyCapabilities
from bot.dify.client import DifyClient, build_http
from bot.models import ConversationKey, IncomingMessage, Scope, to_record
from storage.journal import Journal
from storage.units import Database
from tests.fakes.core import CoreRig, Replies, make_rig
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.replies import RecordingReply

SaveState = Callable[[dict[str, Any]], Awaitable[None]]
RESTARTED = "(The answer was interrupted and is starting again.)"


@dataclass
class ResumableReply(RecordingReply):
    """Posts a placeholder on start (reporting its id), or edits the one it is resumed with."""

    resumed: dict[str, Any] | None = None
    saves: list[dict[str, Any]] = field(default_factory=list)
    _save: SaveState | None = None

    def bind(self, delivery: Delivery) -> None:
        """What a platform's reply gets from its delivery: where to save its state."""
        self._save = delivery.save

    async def start(self) -> None:
        if self.resumed:
            self.calls.append(("resume", ",".join(self.resumed["messages"])))
            return
        self.calls.append(("start", ""))
        if self._save is not None:
            state = {"messages": [f"posted-{id(self)}"]}
            self.saves.append(state)
            await self._save(state)


@dataclass
class Replicas:
    dify: FakeDify
    a: CoreRig
    b: CoreRig
    restored: list[ResumableReply]


def make_dispatcher(
    dify: FakeDify, db: Database, name: str, restored: list[ResumableReply], lease: float
) -> CoreRig:
    """One replica: the core with the test platform, whose taken-over replies resume."""
    client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)

    def restore(delivery: Delivery) -> ResumableReply:
        assert delivery.where == {"channel": "C1"}
        reply = ResumableReply(
            capabilities=ReplyCapabilities(min_interval=0.0), resumed=dict(delivery.state or {})
        )
        restored.append(reply)
        return reply

    return make_rig(
        db, client, lease=lease, replica=name, replies=Replies(restore=restore), edit_interval=0.0
    )


@pytest.fixture
async def replicas(db: Database) -> AsyncIterator[Replicas]:
    async with FakeDify() as dify:
        restored: list[ResumableReply] = []
        a = make_dispatcher(dify, db, "replica-a", restored, lease=2.0)
        b = make_dispatcher(dify, db, "replica-b", restored, lease=2.0)
        try:
            yield Replicas(dify, a, b, restored)
        finally:
            for replica in (a, b):
                await replica.close()
                await replica.answerer.apps.default._http.aclose()


def message(text: str, message_id: str, user: str = "U1") -> IncomingMessage:
    key = ConversationKey("test", "W1", Scope.USER, user)
    return IncomingMessage("test", "W1", user, text, key, message_id=message_id)


async def accept(replica: CoreRig, msg: IncomingMessage, reply: RecordingReply) -> Any:
    return await replica.submit(msg, reply, where={"channel": "C1"})


async def test_redeliveries_on_any_replica_are_answered_once(replicas: Replicas) -> None:
    msg = message("hello", "C1:1.1")
    first = ResumableReply()
    task = await accept(replicas.a, msg, first)
    assert await accept(replicas.b, msg, ResumableReply()) is None  # a retry on the other one
    assert await accept(replicas.a, msg, ResumableReply()) is None  # a retry on the same one
    await task
    assert first.final == ("finish", "echo: hello")
    assert len(replicas.dify.requests_to("/chat-messages")) == 1


async def test_one_conversation_across_replicas_in_order_without_forking(
    replicas: Replicas,
) -> None:
    replicas.dify.enqueue("/chat-messages", Answer(chunks=["first ", "answer"], delay=0.3))
    one, two = ResumableReply(), ResumableReply()
    first = await accept(replicas.a, message("one", "C1:1.1"), one)
    await replicas.dify.wait_for("/chat-messages", 1)
    second = await accept(replicas.b, message("two", "C1:1.2"), two)
    await first
    assert one.final == ("finish", "first answer")
    await second
    assert two.final == ("finish", "echo: two")
    bodies = [r.json for r in replicas.dify.requests_to("/chat-messages")]
    assert "conversation_id" not in bodies[0]
    assert bodies[1]["conversation_id"] == one.answers[0].conversation_id  # same conversation


async def test_a_dead_replicas_answer_is_finished_in_the_same_reply(
    replicas: Replicas, db: Database
) -> None:
    # A replica claimed the message, posted its placeholder and died (its clock says: long ago).
    dead = Journal(db, lease=2.0, clock=lambda: time.time() - 100)
    msg = message("are you there", "C1:9.9")
    entry, _ = await dead.record(
        "default/test/W1/C1:9.9",
        conversation_key=msg.key.as_str(),
        platform="test",
        message=to_record(msg),
        reply={"channel": "C1"},
        owner="dead",
    )
    assert await dead.claim(entry, "dead")
    await dead.save_reply_state(entry, {"messages": ["posted-by-dead"]})

    assert await replicas.b.inbox.take_over() == 1
    assert await replicas.b.inbox.take_over() == 0  # already being answered here
    await asyncio.wait_for(replicas.b.inbox.idle(), 5)
    (reply,) = replicas.restored  # built when its turn came
    assert reply.calls[0] == ("resume", "posted-by-dead")  # edits the dead one's message
    assert ("start", "") not in reply.calls
    assert not any(RESTARTED in text for _, text in reply.calls)  # nothing was shown yet
    assert reply.final == ("finish", "echo: are you there")
    assert await replicas.a.inbox.take_over() == 0
    finished = await replicas.b.journal.get(entry)
    assert finished is not None and finished.status == "done"


async def test_shutdown_hands_unfinished_answers_to_another_replica(replicas: Replicas) -> None:
    replicas.dify.enqueue("/chat-messages", Answer(chunks=["slow"] * 20, delay=0.2))
    reply = ResumableReply()
    task = await accept(replicas.a, message("long", "C1:2.1"), reply)
    await replicas.dify.wait_for("/chat-messages", 1)
    await replicas.a.close(grace=0.05)
    assert task.cancelled()
    assert not reply.done.is_set()  # no "interrupted" notice: another replica carries on
    assert await replicas.b.inbox.take_over() == 1
    await asyncio.wait_for(replicas.b.inbox.idle(), 5)
    (restored,) = replicas.restored
    assert restored.calls[0] == ("resume", reply.saves[0]["messages"][0])
    # "slow" was on screen: the answer that starts over says so first, until it is final.
    assert restored.calls[1] == ("update", RESTARTED)
    assert restored.final == ("finish", "echo: long")


async def test_a_live_replica_keeps_its_lease_through_a_long_answer(
    db: Database,
) -> None:
    async with FakeDify() as dify:
        restored: list[ResumableReply] = []
        a = make_dispatcher(dify, db, "a", restored, lease=0.6)  # renewed every 0.2 s
        b = make_dispatcher(dify, db, "b", restored, lease=0.6)
        dify.enqueue("/chat-messages", Answer(chunks=["x"] * 8, delay=0.2))
        reply = ResumableReply()
        task = await accept(a, message("long", "C1:3.1"), reply)
        await dify.wait_for("/chat-messages", 1)
        for _ in range(4):
            await asyncio.sleep(0.3)  # wall time must pass for leases to (not) expire
            assert await b.inbox.take_over() == 0
        await task
        assert reply.final == ("finish", "x" * 8)
        assert restored == [] and len(dify.requests_to("/chat-messages")) == 1
        for replica in (a, b):
            await replica.close()
            await replica.answerer.apps.default._http.aclose()


async def test_a_taken_over_message_goes_before_newer_ones_waiting_here(
    replicas: Replicas, db: Database
) -> None:
    """The dead replica's message is older than one already waiting on this replica: it must
    be answered first, and the newer one after it (the chaos run once deadlocked here)."""
    dead = Journal(db, lease=2.0, clock=lambda: time.time() - 100)
    older = message("first", "C1:5.1")
    entry, _ = await dead.record(
        "default/test/W1/C1:5.1",
        conversation_key=older.key.as_str(),
        platform="test",
        message=to_record(older),
        reply={"channel": "C1"},
        owner="dead",
    )
    assert await dead.claim(entry, "dead")
    newer = ResumableReply()
    await accept(replicas.b, message("second", "C1:5.2"), newer)
    assert await replicas.b.inbox.take_over() == 1
    await asyncio.wait_for(replicas.b.inbox.idle(), 10)
    (taken,) = replicas.restored
    assert taken.final == ("finish", "echo: first")
    assert newer.final == ("finish", "echo: second")
    queries = [r.json["query"] for r in replicas.dify.requests_to("/chat-messages")]
    assert queries == ["first", "second"]
