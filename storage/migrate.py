"""Schema migrations: bring a database to the newest revision once, even when replicas race."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# PostgreSQL advisory lock key: replicas starting together migrate one after the other.
LOCK_KEY = 0x6469667962  # "difyb"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision now)."""
    async with _lock(engine), engine.begin() as conn:
        before = await conn.run_sync(_current)
        if before != head_revision():
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))
    head = head_revision()
    if before != head:
        log.info("database migrated from %s to %s", before or "empty", head)
    return before, head


async def ensure_schema(engine: AsyncEngine, *, auto_migrate: bool) -> None:
    """``serve``'s start: migrate, or (DATABASE_AUTO_MIGRATE=false) refuse an old schema."""
    if auto_migrate:
        await upgrade(engine)
        return
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"DATABASE_URL: {_schema(current)}, this version needs {head}; run `difybot db "
            "upgrade` (or set DATABASE_AUTO_MIGRATE=true)"
        )


def _open_folder(database: str) -> int:
    return os.open(Path(database).expanduser().resolve().parent, os.O_RDONLY)


def _schema(revision: str | None) -> str:
    return f"the database schema is at {revision}" if revision else "the database has no schema yet"


@contextlib.asynccontextmanager
async def _lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """One migrator at a time: an advisory lock on PostgreSQL, a file lock beside SQLite."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    # The lock is on the database's folder, not on a file beside the database, so nothing is
    # left behind; SQLite itself locks the database file with fcntl, which flock does not touch.
    handle = await asyncio.to_thread(_open_folder, database)
    try:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing drops the lock
