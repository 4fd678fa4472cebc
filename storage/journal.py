"""The inbound journal: platform messages recorded before the ack, deduplicated, leased, ordered.

A row is written (``record``) before the platform is acknowledged; its unique ``message_key``
turns every redelivery (platform retries, a second replica receiving the same event) into a
no-op. A replica answers a row only after ``claim`` gives it the lease, which it renews while
answering; ``claim`` refuses while an older message of the same conversation is unfinished, so a
conversation's messages are answered in arrival order on any replica, and the first message of a
new conversation can never race a second one into a fork. A replica that dies leaves a lease that
expires; ``orphans`` lists those rows so another replica can claim them and finish the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from storage.db import insert_for
from storage.tables import inbound_messages as t

OPEN = ("pending", "running")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    message_key: str
    conversation_key: str
    platform: str
    message: dict[str, Any]
    reply: dict[str, Any]
    reply_state: dict[str, Any] | None
    status: str
    owner: str | None
    attempts: int


class Journal:
    """``clock`` returns Unix seconds; ``lease`` is how long a replica may stay silent."""

    def __init__(
        self, engine: AsyncEngine, *, lease: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self.lease = lease
        self._clock = clock

    async def record(
        self,
        message_key: str,
        *,
        conversation_key: str,
        platform: str,
        message: dict[str, Any],
        reply: dict[str, Any],
        owner: str,
    ) -> tuple[int, bool]:
        """Write the message unless its key is known; (row id, True if it was new)."""
        now = self._now()
        values = {
            "message_key": message_key,
            "conversation_key": conversation_key,
            "platform": platform,
            "message": _dump(message),
            "reply": _dump(reply),
            "status": "pending",
            "owner": owner,
            "lease_until": now + timedelta(seconds=self.lease),
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        insert = insert_for(self._engine)
        statement = insert(t).values(values)
        statement = statement.on_conflict_do_nothing(index_elements=[t.c.message_key])
        async with self._engine.begin() as conn:
            inserted = (await conn.execute(statement.returning(t.c.id))).scalar()
            if inserted is not None:
                return int(inserted), True
            known = await conn.execute(select(t.c.id).where(t.c.message_key == message_key))
            return int(known.scalar_one()), False

    async def claim(self, entry_id: int, owner: str) -> bool:
        """Take (or keep) the lease, if the row is open, its lease is ours or expired, and no
        older message of its conversation is still open."""
        return entry_id in await self.claim_many([entry_id], owner)

    async def claim_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """``claim`` for many rows in one statement; the ids now running under ``owner``."""
        ids = list(entry_ids)
        if not ids:
            return set()
        now = self._now()
        older = aliased(t)
        blocked = exists().where(
            older.c.conversation_key == t.c.conversation_key,
            older.c.id < t.c.id,
            older.c.status.in_(OPEN),
        )
        statement = (
            update(t)
            .where(
                t.c.id.in_(ids),
                t.c.status.in_(OPEN),
                or_(t.c.owner == owner, t.c.owner.is_(None), t.c.lease_until < now),
                ~blocked,
            )
            .values(
                status="running",
                owner=owner,
                lease_until=now + timedelta(seconds=self.lease),
                attempts=t.c.attempts + 1,
                updated_at=now,
            )
            .returning(t.c.id)
        )
        return await self._ids(statement)

    async def renew(self, entry_id: int, owner: str) -> bool:
        """Extend our lease (running or waiting); False if the row is no longer ours."""
        return entry_id in await self.renew_many([entry_id], owner)

    async def renew_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """Extend our leases in one statement; the ids that are still ours."""
        ids = list(entry_ids)
        if not ids:
            return set()
        now = self._now()
        statement = (
            update(t)
            .where(t.c.id.in_(ids), t.c.owner == owner, t.c.status.in_(OPEN))
            .values(lease_until=now + timedelta(seconds=self.lease), updated_at=now)
            .returning(t.c.id)
        )
        return await self._ids(statement)

    async def not_ours(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """Of these ids, the ones finished or taken by another replica."""
        ids = list(entry_ids)
        if not ids:
            return set()
        query = select(t.c.id).where(
            t.c.id.in_(ids), or_(~t.c.status.in_(OPEN), t.c.owner != owner)
        )
        async with self._engine.connect() as conn:
            return {int(i) for i in (await conn.execute(query)).scalars()}

    async def finish(self, entry_id: int, owner: str, *, failed: bool = False) -> None:
        statement = (
            update(t)
            .where(t.c.id == entry_id, t.c.owner == owner)
            .values(status="failed" if failed else "done", lease_until=None, updated_at=self._now())
        )
        await self._changed(statement)

    async def release(self, entry_id: int, owner: str) -> None:
        """Give the message back (shutdown): another replica may take it at once."""
        now = self._now()
        statement = (
            update(t)
            .where(t.c.id == entry_id, t.c.owner == owner, t.c.status.in_(OPEN))
            .values(status="pending", owner=None, lease_until=None, updated_at=now)
        )
        await self._changed(statement)

    async def save_reply_state(self, entry_id: int, state: dict[str, Any]) -> None:
        statement = update(t).where(t.c.id == entry_id).values(reply_state=_dump(state))
        await self._changed(statement)

    async def get(self, entry_id: int) -> JournalEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t).where(t.c.id == entry_id))).mappings().first()
        return None if row is None else _entry(row)

    async def orphans(self, *, limit: int = 100) -> list[JournalEntry]:
        """Open messages whose lease ran out (their replica died or let go), oldest first."""
        now = self._now()
        query = (
            select(t)
            .where(t.c.status.in_(OPEN), or_(t.c.lease_until.is_(None), t.c.lease_until < now))
            .order_by(t.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_entry(row) for row in rows]

    async def prune(self, *, older_than: float) -> int:
        """Forget finished messages older than ``older_than`` seconds (the dedup window)."""
        cutoff = datetime.fromtimestamp(self._clock() - older_than, UTC)
        statement = delete(t).where(and_(~t.c.status.in_(OPEN), t.c.updated_at < cutoff))
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount

    async def _ids(self, statement: Any) -> set[int]:
        async with self._engine.begin() as conn:
            return {int(i) for i in (await conn.execute(statement)).scalars()}

    async def _changed(self, statement: Any) -> bool:
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _entry(row: Any) -> JournalEntry:
    state = row["reply_state"]
    return JournalEntry(
        id=int(row["id"]),
        message_key=row["message_key"],
        conversation_key=row["conversation_key"],
        platform=row["platform"],
        message=orjson.loads(row["message"]),
        reply=orjson.loads(row["reply"]),
        reply_state=orjson.loads(state) if state else None,
        status=row["status"],
        owner=row["owner"],
        attempts=int(row["attempts"]),
    )
