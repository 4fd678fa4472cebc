"""Slow and stalled bodies on a webhook route cost bounded memory and time, and log one line each.

The attack the probe found: many clients announce a 1 MiB body, send all of it but the last
byte, and stall. ``difybot serve`` runs in its own process here so its memory is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_bot import SIGNING_SECRET, slack_bot
from tests.fakes.slack_payloads import dm
from tests.test_cli_e2e import clean_env, difybot

BODY = 1024 * 1024
ATTACKERS = 100
DEADLINE = 1.0  # WEBHOOK_BODY_TIMEOUT for the test (5 s by default)


def signed_headers(body: bytes, stamp: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": "v0=" + mac.hexdigest()}  # fmt: skip


def request_head(length: int) -> bytes:
    """Headers that pass every check a server can make before the body: a current timestamp
    and a signature header (forged: only the body could show it)."""
    return (
        f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


class Heard(logging.Handler):
    """Sets ``event`` when a record containing ``words`` is logged."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.INFO)
        self.words = words
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def stall(port: int, opened: asyncio.Event) -> float:
    """One attacker: headers that pass every cheap check, 1 MiB announced, all but one byte
    sent, then silence. Returns how long after the last byte the server closed on us."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_head(BODY))
        with contextlib.suppress(ConnectionError):
            for _ in range(15):
                writer.write(b"x" * 65536)
                await writer.drain()
            writer.write(b"x" * 65535)
            await writer.drain()
        stalled = time.monotonic()
        opened.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        return time.monotonic() - stalled
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serving_port(proc: asyncio.subprocess.Process, seen: list[str]) -> int:
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "serve exited early:\n" + "".join(seen)
        seen.append(line)
        if "serving on" in line:
            return int(line.split("serving on ")[1].split(";")[0].rsplit(":", 1)[1])


async def test_stalled_bodies_are_cut_at_the_deadline_in_bounded_memory(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeSlack() as slack:
        env = clean_env(
            tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.url, HOST="127.0.0.1", PORT="0",
            WEBHOOK_BODY_TIMEOUT=str(DEADLINE),
        )  # fmt: skip
        proc = await difybot("serve", env=env, cwd=tmp_path)
        log: list[str] = []
        try:
            port = await serving_port(proc, log)
            before = rss_mb(proc.pid)
            opened = [asyncio.Event() for _ in range(ATTACKERS)]
            attack = [asyncio.create_task(stall(port, o)) for o in opened]
            peak = before
            for event in opened:  # every body sent (or refused) before the real request
                while not event.is_set():
                    peak = max(peak, rss_mb(proc.pid))
                    await asyncio.wait([asyncio.create_task(event.wait())], timeout=0.02)
            body = json.dumps(dm("still there?", ts="1800000000.000001")).encode()
            started = time.monotonic()
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/slack/events", data=body, headers=signed_headers(body)
                ) as response,
            ):
                assert response.status == 200
            assert time.monotonic() - started < 1.0  # Slack wants its ack within 3 s
            await dify.wait_for("/chat-messages", 1)
            async with asyncio.timeout(DEADLINE + 5):
                while not all(task.done() for task in attack):
                    peak = max(peak, rss_mb(proc.pid))
                    await asyncio.sleep(0.05)
            held = [task.result() for task in attack]
        finally:
            proc.terminate()
            _, rest = await asyncio.wait_for(proc.communicate(), 20)
        log += rest.decode().splitlines(keepends=True)
    # The server let go of every stalled connection within the deadline (plus scheduling).
    assert max(held) < DEADLINE + 2.0, sorted(held)[-5:]
    # 100 x 1 MiB announced: at most 8 large bodies are received at once (the rest are
    # refused), so memory grows by a few MB, not by 100.
    assert peak - before < 40, (before, peak)
    text = "".join(log)
    assert " ERROR " not in text and "Traceback" not in text, text[-3000:]
    refusals = [line for line in log if "refused" in line and "/slack/events" in line]
    assert len(refusals) == ATTACKERS  # one INFO line each: 408 at the deadline, or 503 at once


async def test_a_client_that_hangs_up_mid_body_is_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        port = int(bot.web_url.rsplit(":", 1)[1])
        heard = Heard("hung up")
        logging.getLogger().addHandler(heard)
        try:
            with caplog.at_level(logging.INFO):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request_head(5000) + b"{" * 1000)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                await asyncio.wait_for(heard.event.wait(), 5)
        finally:
            logging.getLogger().removeHandler(heard)
        (line,) = [r for r in caplog.records if r.name.startswith(("aiohttp", "adapters"))]
        assert line.levelno == logging.INFO and line.exc_info is None
        assert "hung up" in line.getMessage()


async def test_refusing_a_large_body_closes_the_connection_at_once(tmp_path: Path) -> None:
    """Without closing, aiohttp keeps reading a refused body for 10 s (lingering)."""
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        port = int(bot.web_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_head(64 * BODY) + b"x" * 1000)
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(3):
            answer = await reader.read()  # until the server closes
        assert answer.startswith(b"HTTP/1.1 413")
        assert time.monotonic() - started < 1.0
        writer.close()
