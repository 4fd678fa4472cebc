"""The database engine: built from ``DATABASE_URL``, table creation, and the health check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Table, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from bot.errors import ConfigError, DatabaseUnavailable, connection_reason
from storage.tables import metadata

logger = logging.getLogger(__name__)

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"

# WAL lets readers run beside the one writer; busy_timeout makes a second writer wait for the lock
# instead of failing at once with "database is locked"; NORMAL is durable enough under WAL.
PING_TIMEOUT = 5.0  # seconds; a health probe must answer even when the database hangs
REACH_TIMEOUT = 10.0  # seconds for the first connection at startup

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    echo: bool = False,
    connect_args: dict[str, Any] | None = None,
) -> AsyncEngine:
    """Build the async engine for ``url``; a URL we cannot use raises ``ConfigError``."""
    parsed = to_url(url)
    options: dict[str, Any] = {"echo": echo, "connect_args": dict(connect_args or {})}
    if parsed.drivername == SQLITE_DRIVER:
        # One connection, whose users take turns in asyncio. For :memory: each connection is a
        # new, empty database (and StaticPool would hand the one connection to concurrent tasks
        # at once, interleaving their transactions). For a file, SQLite has one writer anyway:
        # with a pool of 15 the writers queued in SQLite's sleeping busy handler instead, and
        # under load gave up with "database is locked" (benchmarks/streaming_load.py, N=500).
        options.update(poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
        if not is_memory_sqlite(parsed):
            create_parent_folder(parsed)
    else:
        options.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
    try:
        engine = create_async_engine(parsed, **options)
    except (ArgumentError, TypeError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL {safe_url(parsed)} is not usable: {exc}") from exc
    if parsed.drivername == SQLITE_DRIVER:
        event.listen(engine.sync_engine, "connect", set_sqlite_pragmas)
    return engine


def to_url(url: str) -> URL:
    """Parse and check ``url``; the error never repeats the URL, which may hold a password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # ``from None``: the parser's error can quote a piece of the URL, e.g. a password it
        # mistook for a port ("user:secret/db"), and a logged traceback would show it.
        raise ConfigError(
            "DATABASE_URL is not a valid database URL; expected e.g. "
            "sqlite+aiosqlite:///./data/difybot.db or postgresql+asyncpg://user:pass@host/db"
        ) from None
    if parsed.drivername not in (SQLITE_DRIVER, POSTGRES_DRIVER):
        raise ConfigError(
            f"DATABASE_URL {safe_url(parsed)} uses the unsupported driver {parsed.drivername!r}; "
            f"use {SQLITE_DRIVER}:// or {POSTGRES_DRIVER}://"
        )
    return parsed


def safe_url(url: URL) -> str:
    """The URL as it may appear in logs and errors: password masked."""
    return url.render_as_string(hide_password=True)


def is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_parent_folder(url: URL) -> None:
    """SQLite creates the file but not its folder; the default ``./data/`` may not exist yet."""
    if url.database is None or url.database.startswith("file:"):
        return  # URI filenames (``?uri=true``) are the user's business
    folder = Path(url.database).expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"DATABASE_URL {safe_url(url)}: cannot create folder {folder}: {exc.strerror}"
        ) from exc


def set_sqlite_pragmas(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def insert_for(engine: AsyncEngine) -> Callable[[Table], PgInsert | SqliteInsert]:
    """The dialect's INSERT (PostgreSQL's or SQLite's), which has ``on_conflict_do_*``: upserts
    are one atomic statement on both backends, so replicas writing one key never race."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


async def init_db(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (migrations will take over this job)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def ping(engine: AsyncEngine) -> bool:
    """Whether the database answers ``SELECT 1`` within ``PING_TIMEOUT`` seconds (``/readyz``)."""
    try:
        async with asyncio.timeout(PING_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("database ping failed: %s", type(exc).__name__)
        return False
    return True


async def reach(engine: AsyncEngine, *, within: float = REACH_TIMEOUT) -> None:
    """Connect once before anything else uses the database, so that a startup failure is one
    sentence: ``DatabaseUnavailable`` (with its reason) when the server cannot be reached,
    ``ConfigError`` when it answers but refuses DATABASE_URL (role, password, database name)."""
    try:
        async with asyncio.timeout(within), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise to_database_error(exc, engine.url) from None
    logger.info("database: %s", safe_url(engine.url))


def to_database_error(exc: BaseException, url: URL) -> ConfigError | DatabaseUnavailable:
    """The error tree's words for a failed first connection to the database at ``url``."""
    shown = safe_url(url)
    sqlstate = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    if sqlstate and str(sqlstate).startswith("28"):  # invalid authorization: role, password
        return ConfigError(f"DATABASE_URL: {shown} refused the login: {detail}")
    if sqlstate == "3D000":  # invalid catalog name
        return ConfigError(f"DATABASE_URL: {detail} on {shown}; create it first")
    if isinstance(exc, SQLAlchemyError) and not isinstance(exc.__cause__, OSError):
        if url.drivername == SQLITE_DRIVER:  # the file cannot be opened: a path we cannot use
            return ConfigError(f"DATABASE_URL: cannot open {shown}: {detail}")
        return DatabaseUnavailable(f"the database at {shown} failed: {detail}")
    reason = connection_reason(exc) or detail or type(exc).__name__
    return DatabaseUnavailable(
        f"cannot reach the database at {shown}: {reason}; check DATABASE_URL and that the "
        "server is running",
        reason=reason,
    )
