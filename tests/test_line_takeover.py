"""A LINE answer survives its replica: ``difybot serve`` is killed (SIGKILL, nothing handed
over) while Dify writes the answer; started again under the same REPLICA_ID it takes the journal
entry back and the user gets the whole answer exactly once, by the reply token the first run
never used."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import FakeDify
from tests.fakes.line import ACCESS_TOKEN, FakeLine
from tests.fakes.line_webhook import CHANNEL_SECRET
from tests.test_cli_e2e import clean_env
from tests.test_takeover_tencent import SLOW, WHOLE, kill, serving, settled


async def test_a_line_answer_survives_its_replica(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeLine() as line:
        dify.enqueue("/chat-messages", SLOW, WHOLE)
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            LINE_CHANNEL_SECRET=CHANNEL_SECRET, LINE_CHANNEL_ACCESS_TOKEN=ACCESS_TOKEN,
            LINE_API_BASE=line.api_url, LINE_DATA_API_BASE=line.data_url,
            HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1",
        )  # fmt: skip
        user = line.events.user()
        async with serving(env, tmp_path) as (first, port):
            event = line.events.text("a long question", user=user)
            status, _ = await line.events.deliver(f"http://127.0.0.1:{port}/line", event)
            assert status == 200
            await dify.wait_for("/chat-messages", 1, timeout=20)
            await kill(first)
        async with serving(env, tmp_path):
            await line.until(lambda: bool(line.texts(user)), timeout=30)
            await settled(env["DATABASE_URL"], 1)
    assert line.texts(user) == ["the whole answer"]  # exactly once
    (reply,) = line.calls_to("/v2/bot/message/reply")
    assert reply.status == 200 and line.calls_to("/v2/bot/message/push") == []
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["a long question"] * 2  # the killed run, then the taker's
