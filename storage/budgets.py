"""Delivery budgets shared by every replica: the ``delivery_budgets`` token buckets.

A take is one statement, atomic on the row: insert a full bucket, or refill the stored one by the
time elapsed and take a token when enough are there, returning whether it did. PostgreSQL locks
the row for the statement, so two replicas taking at once see each other's take.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, TextClause, delete, text
from sqlalchemy.exc import SQLAlchemyError

from bot.delivery.buckets import wait_for
from bot.errors import StoreError
from storage.tables import delivery_budgets as t
from storage.units import Database

PRUNE_EVERY = 5000  # takes between deletions of idle rows
IDLE = 3600.0  # seconds untouched: the bucket is full again, the row can go

# {least}/{greatest}: LEAST/GREATEST on PostgreSQL, min/max (scalar) on SQLite.
TAKE = """
INSERT INTO delivery_budgets AS b (key, tokens, stamp, blocked_until, granted)
VALUES (:key, :fresh, :now, 0, :fresh_granted)
ON CONFLICT (key) DO UPDATE SET
  granted = (b.blocked_until <= :now
             AND {least}(:burst, b.tokens + {greatest}(:now - b.stamp, 0) * :rate) >= :need),
  tokens = {least}(:burst, b.tokens + {greatest}(:now - b.stamp, 0) * :rate)
           - CASE WHEN b.blocked_until <= :now
                   AND {least}(:burst, b.tokens + {greatest}(:now - b.stamp, 0) * :rate) >= :need
                  THEN 1 ELSE 0 END,
  stamp = {greatest}(b.stamp, :now)
RETURNING granted, tokens, blocked_until
"""
BLOCK = """
INSERT INTO delivery_budgets AS b (key, tokens, stamp, blocked_until, granted)
VALUES (:key, 0, :now, :until, false)
ON CONFLICT (key) DO UPDATE SET
  tokens = 0, stamp = {greatest}(b.stamp, :now),
  blocked_until = {greatest}(b.blocked_until, :until), granted = false
"""


class SqlBudgets:
    """Implements ``bot.stores.Budgets`` on the shared database (see the module docstring)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._units = db.units
        self._clock = clock
        names = (
            {"least": "LEAST", "greatest": "GREATEST"}
            if db.engine.dialect.name == "postgresql"
            else {"least": "min", "greatest": "max"}
        )
        self._take = text(TAKE.format(**names))
        self._block = text(BLOCK.format(**names))
        self._takes = 0
        # One statement is atomic by itself: on PostgreSQL it runs outside a transaction
        # (autocommit), one network round trip instead of three (BEGIN, it, COMMIT). Takes
        # sit on the path of every rate-limited call, sign of life included.
        self._direct = (
            db.engine.execution_options(isolation_level="AUTOCOMMIT")
            if db.engine.dialect.name == "postgresql"
            else None
        )

    async def take(self, key: str, *, rate: float, burst: float, keep: float = 0.0) -> float:
        now = self._clock()
        need = keep + 1.0
        params: dict[str, Any] = {
            "key": key, "now": now, "rate": rate, "burst": burst, "need": need,
            "fresh": burst - 1.0 if burst >= need else burst, "fresh_granted": burst >= need,
        }  # fmt: skip
        row = await self._one(self._take, params)
        self._takes += 1
        if self._takes % PRUNE_EVERY == 0:  # no task of its own: tidy up now and then
            await self.prune()
        if row.granted:
            return 0.0
        return wait_for(float(row.tokens), rate=rate, keep=keep, blocked=row.blocked_until - now)

    async def block(self, key: str, *, seconds: float) -> None:
        now = self._clock()
        params = {"key": key, "now": now, "until": now + seconds}
        await self._units.run(lambda conn: conn.execute(self._block, params).rowcount)

    async def _one(self, statement: TextClause, params: dict[str, Any]) -> Row[Any]:
        if self._direct is None:
            return await self._units.run(lambda conn: conn.execute(statement, params).one())
        try:
            async with self._direct.connect() as conn:
                return (await conn.execute(statement, params)).one()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database: {type(exc).__name__}: {exc}".splitlines()[0]) from exc

    async def prune(self) -> int:
        statement = delete(t).where(t.c.stamp < self._clock() - IDLE)

        def run(conn: Connection) -> int:
            return int(conn.execute(statement).rowcount)

        return await self._units.run(run)
