"""A replica that restarts takes back its unfinished answers at once, under its REPLICA_ID.

``difybot serve`` is killed (SIGKILL: no chance to hand anything over) while an answer is
streaming into Slack, and started again on the same database. Its old leases are its own: it
must not wait them out (JOURNAL_LEASE_SECONDS, 30 s) before finishing the answer, and the user,
who saw part of it, is told the answer starts again rather than watching it rewind silently.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import dm
from tests.test_cli_e2e import clean_env, difybot

RESTARTED = "(The answer was interrupted and is starting again.)"


def shown(args: dict[str, object]) -> str:
    """What a chat.update call put on screen (its blocks, as JSON text)."""
    return json.dumps(args.get("blocks", ""), ensure_ascii=False) + str(args.get("text", ""))


async def test_a_restarted_replica_finishes_its_answers_at_once(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeSlack() as slack:
        dify.enqueue("/chat-messages", Answer(chunks=[f"w{i} " for i in range(60)], delay=0.2))
        dify.enqueue("/chat-messages", Answer(chunks=["the whole ", "answer"], delay=0.3))
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=slack.url,
            HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1", STREAM_EDIT_INTERVAL="0.1",
        )  # fmt: skip
        first = await difybot("serve", env=env, cwd=tmp_path)
        second = None
        try:
            await slack.until(lambda: bool(slack.socket.sockets), 30, "Socket Mode")
            await slack.socket.send("events_api", dm("a long question", ts="1800000000.000100"))
            await slack.until(
                lambda: any("w3" in shown(c) for c in slack.calls_to("chat.update")), 20, "w3"
            )
            first.send_signal(signal.SIGKILL)
            await first.wait()
            updates = len(slack.calls_to("chat.update"))
            killed = time.monotonic()
            second = await difybot("serve", env=env, cwd=tmp_path)
            await dify.wait_for("/chat-messages", 2, timeout=20)
            (message,) = slack.messages.in_channel("D111")
            await slack.until(lambda: message.body == "the whole answer", 20, "the answer")
            took = time.monotonic() - killed
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 20)
    # Well before the 30 s lease (startup of a second process included).
    assert took < 12, took
    # The same message was edited, never a second answer; it said the answer starts again.
    assert slack.messages.in_channel("D111") == [message]
    after = [shown(c) for c in slack.calls_to("chat.update")[updates:]]
    assert after and RESTARTED in after[0]
    assert RESTARTED not in message.body  # gone once the answer is whole
    asked = [r.json for r in dify.requests_to("/chat-messages")]
    assert [a["query"] for a in asked] == ["a long question"] * 2
