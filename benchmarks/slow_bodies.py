"""Slow-body attack on a webhook route: memory, connections and log lines, and a real request.

    .venv/bin/python -m benchmarks.slow_bodies [--connections 100] [--hold 30] [--route slack]

A real ``difybot serve`` (Slack in HTTP mode, or the WeChat Official Account in safe mode) runs
against the fakes. ``--connections`` clients each announce a 1 MiB body, send all of it but the
last byte with headers that look current (a fresh timestamp, a forged signature) and stall for
``--hold`` seconds before hanging up. Meanwhile a genuine signed message arrives and must be
answered. Prints difybot's RSS before, at the worst moment and after, how many of the attack's
connections the server still held after 2 s, 6 s, 15 s and at the end of the hold, how many
lines the attack made difybot log (and how many were errors or traceback lines), and how long
the genuine request took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.fakes.dify import FakeDify
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import dm
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_push import OfficialAccountServer

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-signing-secret"
WECHAT_TOKEN = "bench-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
BODY = 1024 * 1024
CHECKPOINTS = (2.0, 6.0, 15.0)


@dataclass
class Figures:
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    held: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # attack connections the server answered or closed during the hold
    genuine_status: int = 0
    genuine_seconds: float = 0.0
    answered: bool = False
    log_lines: int = 0
    error_lines: int = 0
    traceback_lines: int = 0


def env_for(
    route: str, dify: FakeDify, slack: FakeSlack, api: FakeWeChatAPI, db: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "SLACK_", "WE"))}
    env.update(
        DIFY_API_BASE=dify.base_url, DIFY_API_KEY=dify.api_key, HOST="127.0.0.1", PORT="0",
        DATABASE_URL=f"sqlite+aiosqlite:///{db}", PYTHONPATH=str(ROOT), LOG_LEVEL="INFO",
        RATE_LIMIT_PER_MINUTE="0",
    )  # fmt: skip
    if route == "slack":
        env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.url)
    else:
        env.update(
            WECHAT_TOKEN=WECHAT_TOKEN, WECHAT_APP_ID=api.app_id, WECHAT_APP_SECRET=api.app_secret,
            WECHAT_API_BASE=api.url, WECHAT_ENCODING_AES_KEY=AES_KEY,
        )  # fmt: skip
    return env


async def start(env: dict[str, str], log: Path) -> tuple[asyncio.subprocess.Process, int]:
    handle = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "difybot.cli", "serve", env=env, cwd=log.parent,
        stdout=handle, stderr=handle,
    )  # fmt: skip
    handle.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if match := re.search(r"serving on [\d.]+:(\d+)", read(log)):
            return proc, int(match.group(1))
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise SystemExit("difybot did not start:\n" + read(log))


def read(log: Path) -> str:
    return log.read_text(errors="replace")


def attack_head(route: str, port: int) -> bytes:
    """Headers that pass every cheap check a server could make before the body."""
    stamp = str(int(time.time()))
    if route == "slack":
        target = "/slack/events"
        extra = f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: v0={'0' * 64}\r\n"
        kind = "application/json"
    else:
        nonce = str(random.randrange(10**9))
        target = (f"/wechat?signature={'0' * 40}&timestamp={stamp}&nonce={nonce}"
                  f"&encrypt_type=aes&msg_signature={'0' * 40}&openid=o1")  # fmt: skip
        extra, kind = "", "text/xml"
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}\r\n{extra}"
        f"Content-Length: {BODY}\r\n\r\n"
    ).encode()


class Attacker:
    """One connection: a 1 MiB body announced, all but its last byte sent, then silence."""

    def __init__(self, route: str, port: int) -> None:
        self.route, self.port = route, port
        self.writer: asyncio.StreamWriter | None = None
        self.closed_by_server = asyncio.Event()

    async def run(self, hold: float) -> None:
        try:
            reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(attack_head(self.route, self.port))
            chunk = b"x" * 65536
            sent = 0
            while sent < BODY - 1:
                piece = chunk[: min(len(chunk), BODY - 1 - sent)]
                self.writer.write(piece)
                await self.writer.drain()
                sent += len(piece)
            async with asyncio.timeout(hold):
                await reader.read()  # returns when the server answers and closes
            self.closed_by_server.set()
        except (TimeoutError, ConnectionError, OSError):
            if self.writer is not None and self.writer.transport.is_closing():
                self.closed_by_server.set()
        finally:
            if self.writer is not None:
                self.writer.close()
                with contextlib.suppress(Exception):
                    await self.writer.wait_closed()


def established(process: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def genuine(route: str, port: int, api: FakeWeChatAPI) -> tuple[int, float]:
    """One real, signed message while the attack holds its connections."""
    import aiohttp

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        if route == "slack":
            body = json.dumps(dm("are you there?", ts="1800000000.000001")).encode()
            stamp = str(int(time.time()))
            mac = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
            headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                       "X-Slack-Signature": "v0=" + mac.hexdigest()}  # fmt: skip
            url = f"http://127.0.0.1:{port}/slack/events"
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status, time.perf_counter() - started
    server = OfficialAccountServer(
        f"http://127.0.0.1:{port}/wechat", token=WECHAT_TOKEN, app_id=api.app_id,
        aes_key=AES_KEY, mode="safe",
    )  # fmt: skip
    outcome = await server.push(server.message("o-genuine", 424242, "are you there?"))
    status = outcome.deliveries[-1].status or 0
    return status, time.perf_counter() - started


async def measure(args: argparse.Namespace) -> Figures:
    figures = Figures()
    async with FakeDify() as dify, FakeSlack() as slack, FakeWeChatAPI() as api:
        with tempfile.TemporaryDirectory(prefix="difybot-slow-") as tmp:
            log = Path(tmp) / "difybot.log"
            proc, port = await start(env_for(args.route, dify, slack, api, Path(tmp) / "db"), log)
            process = psutil.Process(proc.pid)
            try:
                await asyncio.sleep(2.0)  # settle after startup
                figures.rss_before = process.memory_info().rss / 2**20
                lines_before = len(read(log).splitlines())
                attackers = [Attacker(args.route, port) for _ in range(args.connections)]
                started = time.monotonic()
                tasks = [asyncio.create_task(a.run(args.hold)) for a in attackers]
                sampler = asyncio.create_task(sample_rss(process, figures))
                await asyncio.sleep(1.0)  # the bodies are in
                status, seconds = await genuine(args.route, port, api)
                figures.genuine_status, figures.genuine_seconds = status, seconds
                with contextlib.suppress(TimeoutError):
                    await dify.wait_for("/chat-messages", 1, timeout=10)
                    figures.answered = True
                for checkpoint in CHECKPOINTS:
                    if checkpoint < args.hold:
                        await asyncio.sleep(max(0.0, started + checkpoint - time.monotonic()))
                        figures.held[f"{checkpoint:.0f}s"] = established(process, port)
                await asyncio.sleep(max(0.0, started + args.hold - 0.5 - time.monotonic()))
                figures.held[f"{args.hold - 0.5:.0f}s"] = established(process, port)
                await asyncio.gather(*tasks)
                figures.refused = sum(a.closed_by_server.is_set() for a in attackers)
                await asyncio.sleep(3.0)
                sampler.cancel()
                figures.rss_after = process.memory_info().rss / 2**20
                lines = read(log).splitlines()[lines_before:]
                figures.log_lines = len(lines)
                figures.error_lines = sum(" ERROR " in line for line in lines)
                figures.traceback_lines = sum(
                    line.startswith(("Traceback", "  File ")) for line in lines
                )
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
    return figures


async def sample_rss(process: psutil.Process, figures: Figures) -> None:
    while True:
        figures.rss_peak = max(figures.rss_peak, process.memory_info().rss / 2**20)
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds each client stalls")
    parser.add_argument("--route", choices=("slack", "wechat"), default="slack")
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    print(f"slow bodies on /{args.route}: {args.connections} connections x 1 MiB "
          f"(all but the last byte), stalled {args.hold:.0f} s")  # fmt: skip
    print(f"  RSS MB            before {figures.rss_before:.0f}, peak {figures.rss_peak:.0f}, "
          f"after {figures.rss_after:.0f}")  # fmt: skip
    held = ", ".join(f"{k} {v}" for k, v in figures.held.items())
    print(f"  connections held  {held}  (closed by the server: {figures.refused})")
    print(
        f"  genuine request   HTTP {figures.genuine_status} in {figures.genuine_seconds:.2f} s, "
        f"{'answered' if figures.answered else 'NOT answered'}"
    )
    print(f"  log lines         {figures.log_lines} (ERROR {figures.error_lines}, "
          f"traceback {figures.traceback_lines})")  # fmt: skip


if __name__ == "__main__":
    main()
