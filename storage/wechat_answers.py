"""Official Account answers and their delivery state: the ``wechat_answers`` table.

WeChat redelivers a push it got no reply to (same MsgId, every 5 s, three deliveries), and each
delivery may land on a different replica; an answer the user could not get yet must survive until
their next message. One row per MsgId records who answers it, the finished messages and how many
of them were handed out, so every delivery joins the one answer and no part is sent twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import insert_for
from storage.tables import wechat_answers as table


@dataclass(frozen=True, slots=True)
class PendingAnswer:
    """One user message and its answer's delivery state."""

    id: str
    account: str
    user_id: str
    status: str
    target: str | None
    parts: tuple[str, ...]
    taken: int
    deliveries: int
    pushes: int
    notified: bool
    handoff: bool
    created_at: float

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def remaining(self) -> tuple[str, ...]:
        return self.parts[self.taken :]

    @property
    def owed(self) -> bool:
        """The user still has something coming from this answer."""
        return (self.done and bool(self.remaining)) or (not self.done and self.notified)


class PendingAnswers:
    """Repository of ``PendingAnswer`` rows; every state change is one conditional statement."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = insert_for(engine)

    async def arrive(self, account: str, msg_id: str, user_id: str) -> PendingAnswer:
        """Record one delivery of ``msg_id``; ``deliveries == 1`` means this is the first."""
        now = self._now()
        values = {
            "id": f"{account}:{msg_id}", "account": account, "user_id": user_id,
            "status": "running", "target": None, "parts": "[]", "taken": 0, "deliveries": 1,
            "pushes": 0, "notified": False, "handoff": False, "created_at": now, "updated_at": now,
        }  # fmt: skip
        statement = self._insert(table).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={"deliveries": table.c.deliveries + 1, "updated_at": now},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
            row = (await conn.execute(select(table).where(table.c.id == values["id"]))).mappings()
            return _to_pending(row.one())

    async def get(self, answer_id: str) -> PendingAnswer | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.id == answer_id))).mappings()
            found = row.first()
        return None if found is None else _to_pending(found)

    async def complete(self, answer_id: str, parts: list[str]) -> PendingAnswer | None:
        """The answer is final: these are the messages that carry it."""
        await self._set(answer_id, status="done", parts=orjson.dumps(parts).decode())
        return await self.get(answer_id)

    async def fetching(self, answer_id: str, target: str) -> None:
        """This message only fetches ``target``'s answer (the user was told to send one)."""
        await self._set(answer_id, target=target)

    async def mark(
        self, answer_id: str, *, notified: bool | None = None, handoff: bool | None = None
    ) -> None:
        changes = {"notified": notified, "handoff": handoff}
        await self._set(answer_id, **{k: v for k, v in changes.items() if v is not None})

    async def take(self, answer_id: str, *, taken: int, count: int = 1) -> bool:
        """Claim ``count`` parts after the first ``taken``; False if someone else moved first."""
        return await self._set(answer_id, table.c.taken == taken, taken=taken + count)

    async def give_back(self, answer_id: str, *, taken: int, to: int) -> bool:
        """Undo a claim whose delivery failed, so the parts stay owed."""
        return await self._set(answer_id, table.c.taken == taken, taken=to)

    async def spend_push(self, answer_id: str, *, limit: int, window: float) -> bool:
        """Use one customer-service message of this user message's quota, if any is left."""
        since = datetime.fromtimestamp(self._clock() - window, UTC)
        return await self._set(
            answer_id, table.c.pushes < limit, table.c.created_at > since, pushes=table.c.pushes + 1
        )

    async def owed_to(
        self, account: str, user_id: str, *, exclude: str, stale_after: float = 1800.0
    ) -> PendingAnswer | None:
        """The oldest answer this user is still owed (not counting ``exclude``). One still
        running after ``stale_after`` seconds lost its process and is owed nothing more."""
        query = (
            select(table)
            .where(table.c.account == account, table.c.user_id == user_id, table.c.id != exclude)
            .where(table.c.target.is_(None))
            .order_by(table.c.created_at, table.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        cutoff = self._clock() - stale_after
        owed = (p for p in map(_to_pending, rows) if p.owed and (p.done or p.created_at > cutoff))
        return next(owed, None)

    async def prune(self, *, older_than: float) -> int:
        cutoff = datetime.fromtimestamp(self._clock() - older_than, UTC)
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(table).where(table.c.created_at < cutoff))
        return result.rowcount

    async def _set(self, answer_id: str, *conditions: Any, **values: Any) -> bool:
        statement = (
            update(table)
            .where(table.c.id == answer_id, *conditions)
            .values(**values, updated_at=self._now())
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _to_pending(row: RowMapping) -> PendingAnswer:
    return PendingAnswer(
        id=row["id"],
        account=row["account"],
        user_id=row["user_id"],
        status=row["status"],
        target=row["target"],
        parts=tuple(orjson.loads(row["parts"])),
        taken=row["taken"],
        deliveries=row["deliveries"],
        pushes=row["pushes"],
        notified=bool(row["notified"]),
        handoff=bool(row["handoff"]),
        created_at=row["created_at"].timestamp(),
    )
