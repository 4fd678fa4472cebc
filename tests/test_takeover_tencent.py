"""Every platform's answers survive their replica: the WeCom app and the Official Account too.

``difybot serve`` is killed (SIGKILL: nothing handed over) while it answers a WeCom app message,
and while it answers an Official Account message that goes by customer-service push (the
delivery already replied ``success``: nobody will ask again). Started again under the same
REPLICA_ID, it takes the journal entry back at once, and the user gets the whole answer exactly
once: one ``message/send``, one ``custom/send``.
"""

from __future__ import annotations

import asyncio
import re
import signal
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from storage.db import create_engine
from storage.journal import Journal
from storage.units import Database
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import AES_KEY, TIMEOUT, TOKEN, WINDOW
from tests.fakes.wechat_push import OfficialAccountServer
from tests.fakes.wecom_push import WeComServer
from tests.test_cli_e2e import clean_env, difybot

SERVING = re.compile(rb"serving on [^ ]+:(\d+);")
SLOW = Answer(chunks=[f"w{i} " for i in range(100)], delay=0.2)  # 20 s: killed well before
WHOLE = Answer(chunks=["the whole ", "answer"], delay=0.1)


@asynccontextmanager
async def serving(env: dict[str, str], cwd: Path) -> AsyncIterator[tuple[Process, int]]:
    """``difybot serve`` in a process of its own, and the port it bound; its log is drained
    (a full pipe would stop it) and it is stopped on exit if it still runs."""
    proc = await difybot("serve", env=env, cwd=cwd)
    assert proc.stderr is not None
    port = 0
    while not port:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, f"serve exited: {proc.returncode}"
        if found := SERVING.search(line):
            port = int(found.group(1))
    drain = asyncio.create_task(proc.stderr.read())
    try:
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
        await drain


async def kill(proc: Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def settled(database: str, count: int) -> None:
    """Until ``count`` journal entries are finished: every answer has ended somewhere."""
    db = Database(create_engine(database))
    journal = Journal(db)
    try:
        async with asyncio.timeout(30):
            while True:
                entries = [await journal.get(i) for i in range(1, count + 1)]
                if all(e is not None and not e.open for e in entries):
                    return
                await asyncio.sleep(0.1)
    finally:
        await db.close()


async def test_a_wecom_app_answer_survives_its_replica(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeWeChatAPI() as api:
        dify.enqueue("/chat-messages", SLOW, WHOLE)
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            WECOM_CORP_ID=api.corp_id, WECOM_AGENT_ID="1000002", WECOM_SECRET=api.corp_secret,
            WECOM_TOKEN=TOKEN, WECOM_ENCODING_AES_KEY=AES_KEY, WECOM_API_BASE=api.url,
            HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1",
        )  # fmt: skip
        async with serving(env, tmp_path) as (first, port):
            server = WeComServer(f"http://127.0.0.1:{port}/wecom", token=TOKEN, aes_key=AES_KEY,
                                 corp_id=api.corp_id, agent_id="1000002")  # fmt: skip
            status, _ = await server.push(server.message("zhangsan", 41, "a long question"))
            assert status == 200
            await dify.wait_for("/chat-messages", 1, timeout=20)
            await kill(first)
        async with serving(env, tmp_path):
            (send,) = await api.wait_for("/cgi-bin/message/send", timeout=30)
            await settled(env["DATABASE_URL"], 1)
    assert send.json["touser"] == "zhangsan"
    assert send.json["markdown"]["content"] == "the whole answer"
    assert len(api.calls_to("/cgi-bin/message/send")) == 1  # exactly once
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["a long question"] * 2  # the killed run, then the taker's


async def test_an_official_account_push_survives_its_replica(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeWeChatAPI() as api:
        dify.enqueue("/chat-messages", SLOW, WHOLE)
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=api.app_id, WECHAT_APP_SECRET=api.app_secret,
            WECHAT_API_BASE=api.url, WECHAT_ACCOUNT_VERIFIED="true",
            WECHAT_REPLY_WINDOW=str(WINDOW), HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1",
        )  # fmt: skip
        async with serving(env, tmp_path) as (first, port):
            server = OfficialAccountServer(
                f"http://127.0.0.1:{port}/wechat", token=TOKEN, app_id=api.app_id,
                timeout=TIMEOUT,
            )  # fmt: skip
            outcome = await server.push(server.message("oUser1", 7, "a long question"))
            assert outcome.reply is None and len(outcome.deliveries) == 1  # "success": pushed
            await dify.wait_for("/chat-messages", 1, timeout=20)
            await kill(first)
        async with serving(env, tmp_path):
            (send,) = await api.wait_for("/cgi-bin/message/custom/send", timeout=30)
            await settled(env["DATABASE_URL"], 1)
    assert send.json == {
        "touser": "oUser1", "msgtype": "text", "text": {"content": "the whole answer"},
    }  # fmt: skip
    assert len(api.calls_to("/cgi-bin/message/custom/send")) == 1  # exactly once
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["a long question"] * 2
