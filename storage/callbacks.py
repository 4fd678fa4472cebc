"""Replay memory for signed callbacks: the ``seen_callbacks`` table, shared by every replica.

A platform that signs only a timestamp and a nonce (WeChat's plain ``signature``) or signs the
body but not its own retries lets anyone who once saw a request send it again; the timestamp
window bounds that to minutes, and this memory closes the minutes. One indexed
insert-or-nothing per callback answers "seen before?" atomically on every replica; rows are
deleted once they are older than ``keep`` (longer than the timestamp window, after which the
request is refused by its timestamp anyway), at most once a minute, by whoever inserts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from storage.db import insert_for
from storage.tables import seen_callbacks as t
from storage.units import Database

KEEP = 600.0  # seconds: the ±300 s timestamp window, whole
PRUNE_EVERY = 60.0  # seconds between deletions of expired rows (per process)


class SeenCallbacks:
    def __init__(
        self, db: Database, *, keep: float = KEEP, clock: Callable[[], float] = time.time
    ) -> None:
        self._units = db.units
        self._keep = keep
        self._clock = clock
        self._pruned = 0.0
        self._insert = insert_for(db.engine)(t).on_conflict_do_nothing(index_elements=[t.c.key])

    async def first_time(self, scope: str, *parts: str) -> bool:
        """Remember this callback (``scope``: the route and account; ``parts``: timestamp,
        nonce, signature); False if it was seen before, here or on another replica."""
        key = hashlib.sha256("\x1f".join((scope, *parts)).encode("utf-8")).hexdigest()
        values = {"key": key, "seen_at": self._now()}
        inserted = await self._units.run(lambda conn: conn.execute(self._insert, values).rowcount)
        if self._clock() - self._pruned >= PRUNE_EVERY:
            self._pruned = self._clock()
            await self.prune()
        return bool(inserted)

    async def prune(self) -> int:
        cutoff = self._now() - timedelta(seconds=self._keep)
        statement = delete(t).where(t.c.seen_at < cutoff)
        return await self._units.run(lambda conn: conn.execute(statement).rowcount)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
