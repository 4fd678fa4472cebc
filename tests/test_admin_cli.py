"""``difybot conversations list|reset`` in a subprocess over a seeded database (no Dify key
needed), and the per-app inputs wrapper around the prepare step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bot.answering.inputs import with_inputs
from bot.dify.client import DifyClient, build_http
from bot.models import ConversationKey, IncomingMessage, Scope
from bot.preparing import Prepared
from storage.conversations import ConversationStore
from storage.db import create_engine
from storage.migrate import upgrade
from storage.units import Database
from tests.test_cli_e2e import clean_env, difybot

ROWS = [
    ConversationKey("slack", "T1", Scope.USER, "U1"),  # U1's DM
    ConversationKey("slack", "T1", Scope.THREAD, "C1:1700.1", app="sales"),  # a thread in C1
    ConversationKey("slack", "T1", Scope.USER, "U1@C1"),  # U1's /dify in C1
    ConversationKey("wechat", "wx1", Scope.USER, "oU2"),
]


async def seed(tmp_path: Path) -> dict[str, str]:
    env = clean_env(tmp_path)
    db = Database(create_engine(env["DATABASE_URL"]))
    engine = db.engine
    try:
        await upgrade(engine)
        store = ConversationStore(db)
        for n, key in enumerate(ROWS):
            await store.set(key, f"conv-{n}", dify_user=f"{key.platform}:{key.workspace}:U1")
    finally:
        await db.close()
    return env


async def run(env: dict[str, str], cwd: Path, *args: str, answer: bytes = b"") -> tuple[int, str]:
    proc = await difybot("conversations", *args, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(answer), 30)
    assert not err.strip() or proc.returncode, err.decode()
    return proc.returncode or 0, out.decode()


async def test_list_filters_and_json(tmp_path: Path) -> None:
    env = await seed(tmp_path)
    code, out = await run(env, tmp_path, "list", "--json")
    assert code == 0 and len(json.loads(out)) == 4
    _, out = await run(env, tmp_path, "list", "--json", "--channel", "C1")
    assert sorted(row["scope_id"] for row in json.loads(out)) == ["C1:1700.1", "U1@C1"]
    _, out = await run(env, tmp_path, "list", "--json", "--app", "sales")
    assert [row["conversation_id"] for row in json.loads(out)] == ["conv-1"]
    _, out = await run(env, tmp_path, "list", "--platform", "wechat")
    assert "oU2" in out and "conv-3" in out and "U1@C1" not in out  # a table for people


async def test_reset_asks_first_and_forgets_only_what_matches(tmp_path: Path) -> None:
    env = await seed(tmp_path)
    code, out = await run(env, tmp_path, "reset", "--platform", "slack", "--user", "U1",
                          answer=b"n\n")  # fmt: skip
    assert code == 1 and "Forget 3 stored conversation(s)" in out and "nothing forgotten" in out
    code, out = await run(env, tmp_path, "reset", "--channel", "C1", answer=b"y\n")
    assert code == 0 and "forgot 2 conversation(s)" in out
    code, out = await run(env, tmp_path, "reset", "--user", "U1", "--yes", "--json")
    assert code == 0 and json.loads(out) == {"deleted": 2}  # the DM, and the WeChat row's user
    _, out = await run(env, tmp_path, "list", "--json")
    assert json.loads(out) == []


async def test_an_unmigrated_database_says_to_upgrade(tmp_path: Path) -> None:
    proc = await difybot("conversations", "list", env=clean_env(tmp_path), cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 2 and "difybot db upgrade" in err.decode()


async def test_with_inputs_fills_the_apps_variables_and_keeps_the_inner_ones() -> None:
    async def inner(message: IncomingMessage, dify: DifyClient) -> Prepared:
        return Prepared(query=message.text.upper(), inputs={"room": "set by inner"})

    prepare = with_inputs(inner, {"sales": {"asker": "user_name", "room": "channel",
                                            "lang": "locale"}, "default": {}})  # fmt: skip
    key = ConversationKey("slack", "T1", Scope.USER, "U1", app="sales")
    message = IncomingMessage("slack", "T1", "U1", "hi", key, "m1", user_name="Ann",
                              channel_id="C1")  # fmt: skip
    http = build_http("http://127.0.0.1:9")
    dify = DifyClient(http, api_key="app-test-key")
    try:
        prepared = await prepare(message, dify)
        assert prepared == Prepared(query="HI", inputs={"asker": "Ann", "room": "set by inner"})
        other = IncomingMessage("slack", "T1", "U1", "hi", ConversationKey(
            "slack", "T1", Scope.USER, "U1"), "m2")  # fmt: skip
        assert (await prepare(other, dify)).inputs == {"room": "set by inner"}
    finally:
        await http.aclose()


async def test_store_filters_by_user_channel_and_app(store: ConversationStore) -> None:
    for n, key in enumerate(ROWS):
        await store.set(key, f"conv-{n}", dify_user=f"{key.platform}:{key.workspace}:owner")
    await store.set(ConversationKey("slack", "T1", Scope.USER, "U1_x"), "c", dify_user="s:T1:U1_x")
    assert await store.count(user="U1") == 2  # "U1" and "U1@C1"; "U1_x" is not U1 (no LIKE _)
    assert await store.count(channel="C1") == 2
    assert await store.count(app="sales", channel="C1") == 1
    assert [row.scope_id for row in await store.list(user="U1_x")] == ["U1_x"]
    assert await store.delete_where(platform="slack", user="U1") == 2
    assert await store.count() == 3
