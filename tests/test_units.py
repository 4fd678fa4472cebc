"""Units of database work: batched into one transaction on SQLite, isolated when one fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from storage.tables import followed_threads
from storage.units import AsyncUnits, BatchedUnits, Database

LATER = datetime(2030, 1, 1, tzinfo=UTC)


def follow(key: str) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        values = {"key": key, "owner": "U1", "expires_at": LATER}
        return conn.execute(followed_threads.insert().values(values)).rowcount

    return unit


def fail(conn: Connection) -> int:
    raise ValueError("this unit is broken")


async def count(db: Database) -> int:
    async with db.engine.connect() as conn:
        query = select(func.count()).select_from(followed_threads)
        return int((await conn.execute(query)).scalar_one())


async def test_concurrent_units_on_sqlite_share_one_transaction(db: Database) -> None:
    runner = db.units
    if db.engine.dialect.name != "sqlite":
        assert isinstance(runner, AsyncUnits)  # PostgreSQL: a transaction per unit
        return
    assert isinstance(runner, BatchedUnits)

    def transaction(conn: Connection) -> int:
        return id(conn.get_transaction())

    seen = await asyncio.gather(*(runner.run(transaction) for _ in range(20)))
    assert len(set(seen)) == 1  # queued in one loop turn: one batch, one commit


async def test_a_failing_unit_fails_alone_and_the_rest_of_its_batch_lands(
    db: Database,
) -> None:
    runner = db.units
    results = await asyncio.gather(
        runner.run(follow("T1/C1:1")),
        runner.run(fail),
        runner.run(follow("T1/C1:2")),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], ValueError)
    assert await count(db) == 2  # the batch was rolled back, then run unit by unit


async def test_a_unit_sees_what_an_earlier_unit_of_its_batch_wrote(db: Database) -> None:
    runner = db.units
    if not isinstance(runner, BatchedUnits):
        return  # PostgreSQL runs concurrent units in concurrent transactions: no order to keep

    def owners(conn: Connection) -> list[str]:
        return list(conn.execute(select(followed_threads.c.owner)).scalars())

    first = runner.run(follow("T1/C1:3"))
    wrote, read = await asyncio.gather(first, runner.run(owners))
    assert (wrote, read) == (1, ["U1"])
