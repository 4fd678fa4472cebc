"""End to end: the real ``difybot`` command in a subprocess against the loopback fake Dify."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from asyncio.subprocess import PIPE, Process
from pathlib import Path

import httpx

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import dm

REPO = Path(__file__).resolve().parent.parent
PLATFORM_PREFIXES = ("DIFY_", "SLACK_", "WECHAT_", "WECOM_", "DATABASE_", "BOT_", "HOST", "PORT")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The machine's environment without any difybot setting, plus the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/state/difybot.db"
    env["PYTHONPATH"] = str(REPO)  # the checkout, installed or not
    # The per-user folders (default database, chat history and log): the test's own.
    env["XDG_DATA_HOME"] = env["XDG_STATE_HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


async def difybot(*args: str, env: dict[str, str], cwd: Path) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "difybot.cli",
        *args,
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
        env=env,
        cwd=cwd,
    )


async def test_chat_answers_piped_questions_in_turn(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        proc = await difybot("chat", env=env, cwd=tmp_path)
        out, err = await asyncio.wait_for(proc.communicate(b"q1\nq2\n/new\nq3\n"), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode() == "echo: q1\necho: q2\nStarted a new conversation.\necho: q3\n"
        bodies = [r.json for r in dify.requests_to("/chat-messages")]
        assert "conversation_id" not in bodies[0]
        assert bodies[1]["conversation_id"]  # the second turn continues the first
        assert "conversation_id" not in bodies[2]  # /new started over
        assert (tmp_path / "state" / "difybot.db").exists()


async def test_ctrl_c_stops_the_answer_being_streamed(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        dify.enqueue("/chat-messages", Answer(chunks=[f"part{i} " for i in range(30)], delay=0.1))
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        proc = await difybot("chat", env=env, cwd=tmp_path)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"tell me a long story\n")
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.read(5), 10)
        assert first == b"part0"
        proc.send_signal(signal.SIGINT)
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        assert dify.stops, "Ctrl-C must call Dify's stop API"
        text = (first + out).decode()
        assert "(Stopped.)" in text
        assert "part29" not in text


async def test_missing_key_is_one_clear_line(tmp_path: Path) -> None:
    proc = await difybot("chat", env=clean_env(tmp_path), cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 2
    assert err.decode() == "difybot: configuration error: DIFY_API_KEY: is required\n"


async def test_serve_health_readiness_and_clean_sigterm(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        env = clean_env(
            tmp_path,
            DIFY_API_KEY=dify.api_key,
            DIFY_API_BASE=dify.base_url,
            HOST="127.0.0.1",
            PORT="0",
        )
        proc = await difybot("serve", env=env, cwd=tmp_path)
        assert proc.stderr is not None
        try:
            port = await serving_port(proc)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/healthz")).json() == {"status": "ok"}
                ready = await http.get("/readyz")
                assert ready.status_code == 200
                assert ready.json() == {
                    "ready": True, "database": True, "dify": True, "apps": {"default": True}
                }  # fmt: skip
                await dify.close()  # Dify goes away: not ready, still alive
                assert (await http.get("/readyz")).status_code == 503
                assert (await http.get("/healthz")).status_code == 200
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
            assert proc.returncode == 0
            log = (await proc.stderr.read()).decode()
            assert "shutting down" in log
            assert dify.api_key not in log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def serving_port(proc: Process) -> int:
    assert proc.stderr is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "serve exited early:\n" + "".join(seen)
        seen.append(line)
        if match := re.search(r"serving on [\d.]+:(\d+); adapters on: none", line):
            return int(match.group(1))


async def test_sigterm_lets_the_answer_being_streamed_finish_in_slack(tmp_path: Path) -> None:
    """SIGTERM stops taking messages, but an answer already streaming still reaches Slack in
    full within SHUTDOWN_TIMEOUT (the Web API client must outlive the answers, not the intake)."""
    words = [f"w{i} " for i in range(8)]
    async with FakeDify() as dify, FakeSlack() as slack:
        dify.enqueue("/chat-messages", Answer(chunks=words, delay=0.2))
        env = clean_env(
            tmp_path,
            DIFY_API_KEY=dify.api_key,
            DIFY_API_BASE=dify.base_url,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_APP_TOKEN=APP_TOKEN,
            SLACK_API_URL=slack.url,
            SHUTDOWN_TIMEOUT="10",
            HOST="127.0.0.1",
            PORT="0",
        )
        proc = await difybot("serve", env=env, cwd=tmp_path)
        assert proc.stderr is not None
        try:
            await slack.until(lambda: bool(slack.socket.sockets), 30, "Socket Mode")
            await slack.socket.send("events_api", dm("long question", ts="1700000000.000100"))
            await dify.wait_for("/chat-messages", 1)
            proc.send_signal(signal.SIGTERM)  # mid-answer
            await asyncio.wait_for(proc.wait(), 20)
            assert proc.returncode == 0
            (message,) = slack.messages.in_channel("D111")
            assert message.body.strip() == "".join(words).strip()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_malformed_aes_key_stops_serve_before_anything_starts(tmp_path: Path) -> None:
    """WeChat generates 43 letters and digits; a '+' or '/' (a base64 key from elsewhere) is
    refused at load, naming the variable, before the database is touched."""
    env = clean_env(
        tmp_path,
        DIFY_API_KEY="app-test-key",
        DIFY_API_BASE="http://127.0.0.1:9/v1",
        WECHAT_TOKEN="token",
        WECHAT_APP_ID="wx0123456789abcdef",
        WECHAT_ENCODING_AES_KEY="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1+/",
    )
    proc = await difybot("serve", env=env, cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("difybot: configuration error: WECHAT_ENCODING_AES_KEY: ")
    assert "43" in lines[0] and "kWxPEV2" not in lines[0]  # the rule, never the value
    assert not (tmp_path / "state").exists()  # no database created, nothing migrated
