"""Units of database work: run in one transaction each, batched into one on SQLite.

A unit is a plain function of a synchronous SQLAlchemy ``Connection`` returning plain data. On
PostgreSQL a unit runs in its own transaction through the async engine (``run_sync``): asyncpg
does one network round trip per statement and replicas rely on short transactions.

On a SQLite file, units run on one thread of their own over SQLAlchemy's synchronous pysqlite
engine, and every unit queued while a batch runs goes into the next batch, in one transaction
(group commit). The reason is measured (``benchmarks/streaming_load.py``, README "Performance"):
aiosqlite hops threads for every cursor, execute, fetch, close, commit and rollback — four to six
hops per statement, ~2.5 ms of CPU per statement under load — which capped difybot at ~50 journal
messages per second. A batch costs two thread hops whatever its size. SQLite has one writer in any
case, so batching adds no wait; a unit that fails rolls its batch back, and the batch is then
run unit by unit so that only the failing unit's caller sees the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StoreError
from storage.db import SQLITE_DRIVER, is_memory_sqlite, set_sqlite_pragmas

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Connection], T]
MAX_BATCH = 256  # units per transaction: bounds how long one batch holds SQLite's write lock


class UnitRunner(Protocol):
    async def run(self, unit: Unit[T]) -> T: ...

    async def close(self) -> None: ...


class AsyncUnits:
    """Each unit in its own transaction on the async engine (PostgreSQL, in-memory SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def run(self, unit: Unit[T]) -> T:
        try:
            async with self._engine.begin() as conn:
                return await conn.run_sync(unit)
        except _DRIVER_ERRORS as exc:
            raise _translated(exc) from exc

    async def close(self) -> None:
        return None


class BatchedUnits:
    """Units on a SQLite file, run in batches on one thread (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="difybot-sqlite")
        self._queue: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, unit: Unit[T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            units = [unit for unit, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, units)
            except BaseException as exc:  # the loop is closing, or the executor is shut down
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"database work not run: {exc!r}"))
                raise
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():  # its caller was cancelled meanwhile
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(_translated(value))

    def _run_batch(self, units: list[Unit[Any]]) -> list[tuple[bool, Any]]:
        """On the database thread: all units in one transaction, or, if one fails, each alone."""
        if len(units) > 1:
            try:
                with self._engine.begin() as conn:
                    return [(True, unit(conn)) for unit in units]
            except Exception:
                log.debug("a batch of %d units failed; running them one by one", len(units))
        outcomes: list[tuple[bool, Any]] = []
        for unit in units:
            try:
                with self._engine.begin() as conn:
                    outcomes.append((True, unit(conn)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    async def close(self) -> None:
        if self._drainer is not None:
            with contextlib.suppress(StoreError, asyncio.CancelledError):
                await self._drainer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._engine.dispose)
        self._executor.shutdown(wait=True)


# What the drivers raise for a statement the database could not run (a lost connection, a lock
# timeout, a constraint): callers see ``StoreError`` and need not know SQLAlchemy.
_DRIVER_ERRORS = (SQLAlchemyError, OSError)


def _translated(exc: BaseException) -> BaseException:
    if isinstance(exc, _DRIVER_ERRORS):
        return StoreError(f"database: {type(exc).__name__}: {exc}".splitlines()[0])
    return exc  # a bug in a unit: its own error, as it is


def runner_for(engine: AsyncEngine) -> UnitRunner:
    """The unit runner for ``engine``: batched on a SQLite file, a transaction each elsewhere."""
    url = engine.url
    if url.drivername != SQLITE_DRIVER or is_memory_sqlite(url):
        return AsyncUnits(engine)
    # The same database file through the standard library's sqlite3: one connection, used
    # only by the runner's thread (check_same_thread off because the pool may be disposed
    # from it at close while created elsewhere).
    sync = create_engine(
        url.set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    event.listen(sync, "connect", set_sqlite_pragmas)
    return BatchedUnits(sync)


class Database:
    """One engine and the runner of its units of work: built once by the composition root (or
    a test) and handed to every store, so they all share one connection pool and, on SQLite,
    one writer thread. ``close`` stops the runner, then disposes the engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.units = runner_for(engine)

    async def close(self) -> None:
        await self.units.close()
        await self.engine.dispose()
