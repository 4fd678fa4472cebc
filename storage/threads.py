"""Followed threads: where replies are answered without a new mention, known to every replica."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, select

from storage.db import insert_for
from storage.tables import followed_threads as t
from storage.units import Database

PRUNE_EVERY = 500  # follows between deletions of expired rows
OWNER = select(t.c.owner).where(t.c.key == bindparam("key"), t.c.expires_at > bindparam("now"))


class FollowedThreads:
    """``follow`` a thread for ``ttl`` seconds (refreshed on every answer in it); ``owner`` is
    who the thread's conversation belongs to, or None when nobody follows it (any more)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._units = db.units
        self._clock = clock
        self._follows = 0
        insert = insert_for(db.engine)(t)
        self._follow = insert.on_conflict_do_update(
            index_elements=[t.c.key], set_={"expires_at": insert.excluded.expires_at}
        )  # the first owner stays: one Dify user per thread conversation

    async def follow(self, key: str, owner: str, *, ttl: float) -> None:
        values = {"key": key, "owner": owner, "expires_at": self._now() + timedelta(seconds=ttl)}
        await self._units.run(lambda conn: conn.execute(self._follow, values).rowcount)
        self._follows += 1
        if self._follows % PRUNE_EVERY == 0:  # no task of its own: tidy up now and then
            await self.prune()

    async def owner(self, key: str) -> str | None:
        params = {"key": key, "now": self._now()}
        value = await self._units.run(lambda conn: conn.execute(OWNER, params).scalar())
        return None if value is None else str(value)

    async def prune(self) -> int:
        statement = delete(t).where(t.c.expires_at <= self._now())
        return await self._units.run(lambda conn: conn.execute(statement).rowcount)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
