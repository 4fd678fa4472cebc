"""Alembic migrations: they build the declared schema, run once at a time, can be required."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import ConfigError
from storage.db import create_engine
from storage.migrate import current_revision, ensure_schema, head_revision, upgrade
from storage.tables import metadata
from tests.conftest import BACKENDS, POSTGRES_URL

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=BACKENDS)
async def empty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database with no difybot tables at all."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db' / 'difybot.db'}")
    else:
        engine = create_engine(POSTGRES_URL)
    await _drop_everything(engine)
    try:
        yield engine
    finally:
        await _drop_everything(engine)
        await engine.dispose()


async def _drop_everything(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrations_build_exactly_the_schema_the_code_declares(empty: AsyncEngine) -> None:
    assert await current_revision(empty) is None
    assert await upgrade(empty) == (None, head_revision())
    async with empty.connect() as conn:
        assert await conn.run_sync(_differences) == []
    assert await upgrade(empty) == (head_revision(), head_revision())  # nothing left to do


async def test_replicas_starting_together_migrate_once(empty: AsyncEngine) -> None:
    results = await asyncio.gather(*(upgrade(empty) for _ in range(3)))
    assert sorted(before or "" for before, _ in results) == ["", head_revision(), head_revision()]


async def test_without_auto_migrate_an_old_schema_is_refused(empty: AsyncEngine) -> None:
    with pytest.raises(ConfigError, match="difybot db upgrade"):
        await ensure_schema(empty, auto_migrate=False)
    await ensure_schema(empty, auto_migrate=True)
    await ensure_schema(empty, auto_migrate=False)  # now current: accepted


async def test_db_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DIFY_"))}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/new/difybot.db"
    env["PYTHONPATH"] = str(REPO)

    async def difybot(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "difybot.cli", *args, env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    head = head_revision()
    assert await difybot("db", "current") == (1, f"database: empty, this version: {head}\n")
    assert await difybot("db", "upgrade") == (0, f"database at {head} (was empty)\n")
    assert await difybot("db", "current") == (0, f"database: {head}, this version: {head}\n")
