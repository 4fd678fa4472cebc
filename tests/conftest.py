"""Shared fixtures: the database engine on every configured backend, and the conversation store."""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ops.logs import quiet_libraries
from storage.conversations import ConversationStore
from storage.db import create_engine, init_db
from storage.tables import metadata
from storage.units import Database
from tests.fakes.dify import FakeDify
from tests.fakes.wechat import FakeWeChatAPI

# A warning nobody expected fails its test (tests/warning_guard.py).
pytest_plugins = ["tests.warning_guard"]

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
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The database every store of a test shares (one engine, one unit runner), on each
    configured backend."""
    if request.param == "sqlite":
        # A folder that does not exist yet: create_engine must make it.
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'not' / 'yet' / 'difybot.db'}")
    else:
        engine = create_engine(POSTGRES_URL)
    database = Database(engine)
    try:
        # Tests share one PostgreSQL database and run serially: start each from empty tables.
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await init_db(engine)
        yield database
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
    finally:
        await database.close()


@pytest.fixture
def engine(db: Database) -> AsyncEngine:
    return db.engine


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    """A fake Dify with default behaviour (echo app, Chatflow mode) on a loopback port."""
    async with FakeDify() as fake:
        yield fake


@pytest.fixture
async def api() -> AsyncIterator[FakeWeChatAPI]:
    """The fake WeChat/WeCom API."""
    async with FakeWeChatAPI() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db: Database, clock: FakeClock) -> ConversationStore:
    return ConversationStore(db, clock=clock)


# ---- the secret scan: nothing the whole test run logged may contain a secret -------------------

# Every secret the tests configure, and the access tokens the fakes hand out at run time.
SECRET_PATTERNS = [
    re.compile(re.escape(secret))
    for secret in (
        "app-test-key",
        "app-sales-key",  # routed apps' keys (tests of several apps)
        "app-wrong-key",
        "xoxb-test-token",
        "xapp-test-token",
        "test-signing-secret",
        "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "oa-secret",
        "corp-secret",
        "8c5b2a1f9d3e4c7b6a5f4e3d2c1b0a99",  # the fake LINE channel's secret
        "line-long-lived-channel-access-token",
        "dingtalk-test-secret-0123456789abcdefghijklmnopqrstuv",  # tests/fakes/dingtalk.py
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0",  # the fake Telegram bot token's secret part
        "wh-secret_0123456789",  # the Telegram webhook secret tests set
    )
] + [
    re.compile(r"\b(?:wechat|wecom)-token-\d+\b"),
    re.compile(r"line-stateless-[\w-]+"),
    re.compile(r"\bdt-token-\d+-[0-9a-f]{12}\b"),
]


class SecretScan(logging.Handler):
    """Reads every record at INFO and above, with the library levels production uses."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        for pattern in SECRET_PATTERNS:
            if pattern.search(text):
                self.leaks.append(f"{record.name} {record.levelname}: matches {pattern.pattern!r}")


SCAN = SecretScan()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(SCAN)
    root.setLevel(logging.INFO)
    quiet_libraries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SCAN.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"secret scan: {SCAN.records} log records read, {len(SCAN.leaks)} with a secret"
    )
    for leak in SCAN.leaks[:20]:
        terminalreporter.write_line(f"  SECRET LEAK {leak}", red=True)
