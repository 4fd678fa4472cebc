"""The core alone for tests: the inbox and the answerer on a real journal, with a test platform
whose replies the test hands in (``Replies``), the way a platform package would build them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.answering.answerer import Answerer
from bot.answering.policy import Gate
from bot.contract import Delivery, Platform, Reply
from bot.delivery.inbox import JournalInbox
from bot.dify.apps import DifyApps
from bot.dify.client import DifyClient
from bot.models import IncomingMessage
from bot.ops.metrics import Metrics
from bot.preparing import Prepare, as_is
from bot.texts import Texts
from storage.conversations import ConversationStore
from storage.journal import Journal
from storage.units import Database

PLATFORM = "test"


@dataclass
class Replies:
    """A platform of the test's own: the reply for each message id is the one the test gave
    (``expect``); a taken-over entry gets ``restore(delivery)`` when set."""

    name: str = PLATFORM
    by_message: dict[str, Reply] = field(default_factory=dict)
    delivered: list[Delivery] = field(default_factory=list)
    restore: Callable[[Delivery], Reply] | None = None
    takeover: bool = True

    def platform(self) -> Platform:
        return Platform(name=self.name, adapter=self, reply=self.reply, takeover=self.takeover)

    def reply(self, delivery: Delivery) -> Reply:
        """The test's reply for the message (bound to the delivery if it wants it: ``bind``),
        or, for an entry taken over from another replica, ``restore``'s."""
        self.delivered.append(delivery)
        mine = self.by_message.get(delivery.message.message_id)
        if mine is None or delivery.taken_over:
            assert self.restore is not None, "a taken-over entry needs Replies.restore"
            mine = self.restore(delivery)
        bind = getattr(mine, "bind", None)
        if bind is not None:
            bind(delivery)
        return mine

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""


@dataclass
class CoreRig:
    inbox: JournalInbox
    answerer: Answerer
    journal: Journal
    store: ConversationStore
    replies: Replies

    async def submit(
        self, message: IncomingMessage, reply: Reply, *, where: dict[str, Any] | None = None
    ) -> asyncio.Task[None] | None:
        """Accept ``message`` as its platform would, to be answered in ``reply``; the answer's
        task (None for a redelivery)."""
        self.replies.by_message.setdefault(message.message_id, reply)  # a redelivery: the first
        accepted = await self.inbox.accept(message, where=where or {})
        return accepted.answer

    async def ask(self, message: IncomingMessage, reply: Reply) -> None:
        task = await self.submit(message, reply)
        if task is not None:
            await task

    async def close(self, grace: float = 0.0) -> None:
        await self.inbox.close(grace)


def make_rig(
    db: Database,
    dify: DifyClient | DifyApps,
    *,
    texts: Texts | None = None,
    gate: Gate | None = None,
    prepare: Prepare = as_is,
    edit_interval: float | None = 0.0,
    lease: float = 30.0,
    replica: str = "",
    replies: Replies | None = None,
    metrics: Metrics | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **answerer: Any,
) -> CoreRig:
    """The inbox and answerer on ``db`` with one test platform registered (``close`` it)."""
    apps = dify if isinstance(dify, DifyApps) else DifyApps(dify)
    texts = texts or Texts("en")
    metrics = metrics or Metrics()
    store = ConversationStore(db)
    journal = Journal(db, lease=lease)
    answering = Answerer(
        apps, store, texts=texts, metrics=metrics, gate=gate, prepare=prepare,
        edit_interval=edit_interval, sleep=sleep, **answerer,
    )  # fmt: skip
    inbox = JournalInbox(
        journal, answering, texts=texts, metrics=metrics, replica=replica, sleep=sleep
    )
    replies = replies or Replies()
    inbox.register(replies.platform())
    return CoreRig(inbox, answering, journal, store, replies)


@asynccontextmanager
async def core_rig(
    db: Database, dify: DifyClient | DifyApps, **options: Any
) -> AsyncIterator[CoreRig]:
    """``make_rig``, closed on exit."""
    rig = make_rig(db, dify, **options)
    try:
        yield rig
    finally:
        await rig.close()
