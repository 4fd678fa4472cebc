"""Shared fixtures: the database engine on every configured backend, and the conversation store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.conversations import ConversationStore
from storage.db import create_engine, init_db
from storage.tables import metadata

# CI sets this; when set, the PostgreSQL run must happen (an unreachable server fails the tests).
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")

BACKENDS = [pytest.param("sqlite", id="sqlite")]
if POSTGRES_URL:
    BACKENDS.append(pytest.param("postgresql", id="postgresql"))


class FakeClock:
    """A clock that moves only when a test says so (Unix seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        # A folder that does not exist yet: create_engine must make it.
        db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'not' / 'yet' / 'difybot.db'}")
    else:
        db = create_engine(POSTGRES_URL)
    try:
        # Tests share one PostgreSQL database and run serially: start each from empty tables.
        async with db.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await init_db(db)
        yield db
        async with db.begin() as conn:
            await conn.run_sync(metadata.drop_all)
    finally:
        await db.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: AsyncEngine, clock: FakeClock) -> ConversationStore:
    return ConversationStore(engine, clock=clock)
