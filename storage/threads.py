"""Followed threads: where replies are answered without a new mention, known to every replica."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import insert_for
from storage.tables import followed_threads as t

PRUNE_EVERY = 500  # follows between deletions of expired rows


class FollowedThreads:
    """``follow`` a thread for ``ttl`` seconds (refreshed on every answer in it); ``owner`` is
    who the thread's conversation belongs to, or None when nobody follows it (any more)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._follows = 0

    async def follow(self, key: str, owner: str, *, ttl: float) -> None:
        expires = self._now() + timedelta(seconds=ttl)
        insert = insert_for(self._engine)
        statement = insert(t).values(key=key, owner=owner, expires_at=expires)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.key], set_={"expires_at": statement.excluded.expires_at}
        )  # the first owner stays: one Dify user per thread conversation
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        self._follows += 1
        if self._follows % PRUNE_EVERY == 0:  # no task of its own: tidy up now and then
            await self.prune()

    async def owner(self, key: str) -> str | None:
        query = select(t.c.owner).where(t.c.key == key, t.c.expires_at > self._now())
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else str(value)

    async def prune(self) -> int:
        async with self._engine.begin() as conn:
            return (await conn.execute(delete(t).where(t.c.expires_at <= self._now()))).rowcount

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
