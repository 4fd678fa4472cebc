"""The conversation store and the engine factory, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.errors import ConfigError
from bot.models import ConversationKey, Scope
from storage.conversations import ConversationStore, StoredConversation
from storage.db import create_engine, init_db, ping
from storage.units import Database
from tests.conftest import FakeClock


def key(scope_id: str = "U1", *, platform: str = "slack", workspace: str = "T1") -> ConversationKey:
    return ConversationKey(
        platform=platform, workspace=workspace, scope=Scope.USER, scope_id=scope_id
    )


async def test_get_unknown_key_is_none(store: ConversationStore) -> None:
    assert await store.get(key()) is None


async def test_set_then_get(store: ConversationStore) -> None:
    await store.set(key(), "conv-1", dify_user="slack:T1:U1")

    assert await store.get(key()) == "conv-1"
    assert await store.get(key("U2")) is None


async def test_set_overwrites_and_keeps_created_at(
    store: ConversationStore, clock: FakeClock
) -> None:
    await store.set(key(), "conv-1", dify_user="slack:T1:U1")
    clock.now += 60
    await store.set(key(), "conv-2", dify_user="slack:T1:U1b")

    assert await store.get(key()) == "conv-2"
    [row] = await store.list()
    assert row.conversation_id == "conv-2"
    assert row.dify_user == "slack:T1:U1b"
    assert row.updated_at - row.created_at == (
        datetime.fromtimestamp(clock.now, UTC) - datetime.fromtimestamp(clock.now - 60, UTC)
    )


async def test_stored_row_has_every_column_in_utc(
    store: ConversationStore, clock: FakeClock
) -> None:
    app_key = ConversationKey("wechat", "gh_1", Scope.THREAD, "th-9", app="support")
    await store.set(app_key, "conv-1", dify_user="wechat:gh_1:o1")

    assert await store.list() == [
        StoredConversation(
            key="support/wechat/gh_1/thread/th-9",
            app="support",
            platform="wechat",
            workspace="gh_1",
            scope=Scope.THREAD,
            scope_id="th-9",
            conversation_id="conv-1",
            dify_user="wechat:gh_1:o1",
            created_at=datetime.fromtimestamp(clock.now, UTC),
            updated_at=datetime.fromtimestamp(clock.now, UTC),
        )
    ]


async def test_delete(store: ConversationStore) -> None:
    await store.set(key(), "conv-1", dify_user="u")

    assert await store.delete(key()) is True
    assert await store.get(key()) is None
    assert await store.delete(key()) is False


async def test_idle_conversation_expires_and_is_removed(db: Database, clock: FakeClock) -> None:
    store = ConversationStore(db, idle_expiry=3600, clock=clock)
    await store.set(key("old"), "conv-old", dify_user="u")
    clock.now += 1800
    await store.set(key("fresh"), "conv-fresh", dify_user="u")
    clock.now += 1801  # "old" idle for 3601 s, "fresh" for 1801 s

    assert await store.get(key("old")) is None
    assert await store.get(key("fresh")) == "conv-fresh"
    assert [row.scope_id for row in await store.list()] == ["fresh"]


async def test_idle_expiry_counts_from_the_last_set(db: Database, clock: FakeClock) -> None:
    store = ConversationStore(db, idle_expiry=3600, clock=clock)
    await store.set(key(), "conv-1", dify_user="u")
    clock.now += 3000
    await store.set(key(), "conv-1", dify_user="u")
    clock.now += 3000

    assert await store.get(key()) == "conv-1"


async def test_zero_idle_expiry_never_expires(store: ConversationStore, clock: FakeClock) -> None:
    await store.set(key(), "conv-1", dify_user="u")
    clock.now += 10 * 365 * 86400

    assert await store.get(key()) == "conv-1"


async def test_list_newest_first_with_filters(store: ConversationStore, clock: FakeClock) -> None:
    for platform, workspace, scope_id in [
        ("slack", "T1", "a"),
        ("slack", "T2", "b"),
        ("wechat", "gh_1", "c"),
        ("slack", "T1", "d"),
    ]:
        clock.now += 1
        await store.set(key(scope_id, platform=platform, workspace=workspace), "c", dify_user="u")

    async def scope_ids(platform: str | None = None, workspace: str | None = None) -> list[str]:
        return [row.scope_id for row in await store.list(platform=platform, workspace=workspace)]

    assert await scope_ids() == ["d", "c", "b", "a"]
    assert await scope_ids(platform="slack") == ["d", "b", "a"]
    assert await scope_ids(platform="slack", workspace="T1") == ["d", "a"]
    assert await scope_ids(workspace="gh_1") == ["c"]
    assert await scope_ids(platform="teams") == []
    assert [row.scope_id for row in await store.list(limit=2)] == ["d", "c"]


async def test_delete_where_counts(store: ConversationStore) -> None:
    for platform, workspace, scope_id in [
        ("slack", "T1", "a"),
        ("slack", "T1", "b"),
        ("slack", "T2", "a"),
        ("wechat", "gh_1", "a"),
        ("wechat", "gh_1", "z"),
    ]:
        await store.set(key(scope_id, platform=platform, workspace=workspace), "c", dify_user="u")

    assert await store.delete_where(platform="slack", workspace="T1", scope_id="a") == 1
    assert await store.delete_where(platform="teams") == 0
    assert await store.delete_where(scope_id="a") == 2
    assert await store.delete_where(platform="slack") == 1
    assert [row.scope_id for row in await store.list()] == ["z"]
    assert await store.delete_where() == 1
    assert await store.list() == []


async def test_concurrent_upserts_of_one_key(store: ConversationStore) -> None:
    ids = [f"conv-{n}" for n in range(20)]

    await asyncio.gather(*(store.set(key(), conv, dify_user="u") for conv in ids))

    rows = await store.list()
    assert len(rows) == 1
    assert rows[0].conversation_id in ids
    assert await store.get(key()) == rows[0].conversation_id


async def test_concurrent_upserts_from_two_replicas(db: Database) -> None:
    """Two processes, two engines, one database: neither writer fails on the primary key."""
    other = Database(create_engine(db.engine.url.render_as_string(hide_password=False)))
    try:
        stores = [ConversationStore(db), ConversationStore(other)]
        await asyncio.gather(
            *(stores[n % 2].set(key(), f"conv-{n}", dify_user="u") for n in range(20))
        )
        [row] = await stores[0].list()
        assert await stores[1].get(key()) == row.conversation_id
    finally:
        await other.close()


@pytest.mark.parametrize(
    "scope_id",
    ["频道-общий-😀", "a/b/c", "O'Brien; DROP TABLE conversations;--", "x" * 256],
    ids=["unicode", "slashes", "quote", "max-length"],
)
async def test_unusual_scope_ids_round_trip(store: ConversationStore, scope_id: str) -> None:
    await store.set(key(scope_id, workspace="企业"), "conv-1", dify_user="u")

    assert await store.get(key(scope_id, workspace="企业")) == "conv-1"
    [row] = await store.list(workspace="企业")
    assert row.scope_id == scope_id


async def test_sqlite_creates_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bot.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await init_db(engine)
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
    finally:
        await engine.dispose()

    assert path.is_file()
    assert (mode, timeout) == ("wal", 5000)


async def test_sqlite_relative_path_is_under_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = create_engine("sqlite+aiosqlite:///./data/difybot.db")
    try:
        await init_db(engine)
    finally:
        await engine.dispose()

    assert (tmp_path / "data" / "difybot.db").is_file()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://"])
async def test_in_memory_sqlite_is_one_database(url: str) -> None:
    db = Database(create_engine(url))
    try:
        await init_db(db.engine)
        store = ConversationStore(db)
        await asyncio.gather(*(store.set(key(str(n)), "c", dify_user="u") for n in range(5)))
        assert len(await store.list()) == 5
    finally:
        await db.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///./data/difybot.db",
        "postgresql://bot:s3cret-pw@db.example/difybot",
        "postgresql+psycopg2://bot:s3cret-pw@db.example/difybot",
        "mysql+aiomysql://bot:s3cret-pw@db.example/difybot",
    ],
)
def test_unsupported_driver_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_engine(url)

    message = str(caught.value)
    assert "DATABASE_URL" in message
    assert "sqlite+aiosqlite://" in message
    assert "postgresql+asyncpg://" in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    "url",
    [
        "not a url s3cret-pw",
        "postgresql+asyncpg://bot:s3cret-pw@db:port/x",
        "postgresql+asyncpg://bot:s3cret-pw/x",  # no host: the parser takes the password for a port
        "",
    ],
)
def test_malformed_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        create_engine(url)

    assert "s3cret-pw" not in "".join(traceback.format_exception(caught.value))


def test_sqlite_folder_that_cannot_be_created_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")

    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'file' / 'sub' / 'bot.db'}")


async def test_ping_true(db: Database) -> None:
    assert await ping(db.engine) is True


@pytest.mark.allow_warnings(r"^database ping failed")
async def test_ping_false_when_database_is_unreachable() -> None:
    engine = create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/x", connect_args={"timeout": 2})
    started = time.monotonic()
    try:
        assert await ping(engine) is False
    finally:
        await engine.dispose()

    assert time.monotonic() - started < 5
