"""Chaos run: two `difybot serve` replicas on PostgreSQL under failures, one killed mid-run.

    .venv/bin/python -m benchmarks.chaos [--messages 1000] [--users 100] [--seed 7]

The fake Dify, the fake Slack (Web API + Socket Mode) and the fake WeChat/WeCom API run in this
process; the replicas are real `difybot serve` subprocesses sharing one PostgreSQL database. A
fifth of the users write to a WeCom app and a fifth to a (verified) WeChat Official Account, the
rest to Slack. Slack envelopes are spread over both Socket Mode connections and redelivered, as
Slack does, when not acked within 3 s (plus 5 % sent twice on purpose); WeChat and WeCom
callbacks go to either replica, as behind a load balancer, and are delivered again to the other
when one does not answer in time (WeChat: 3 deliveries, 5 s each). Dify answers 502 to 10 % of
requests and cuts 5 % of streams; the Slack Web API answers 429 to 10 % of calls. Replica A is
killed with SIGKILL after 40 % of the messages and restarted 3 s later. Slack DMs are answered in
threads (SLACK_DM_THREADS) so each answer maps to its question. Prints, per platform and in all:
messages sent, answered, duplicate answers, lost answers, forked conversations, the longest any
Slack message sent before the kill then waited for its answer to move on (resumed_s), and the
time until every one of them was answered (recovered_s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from benchmarks.chaos_tencent import TencentRun, tencent_env, tencent_session, tencent_verdict
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Behaviour, Cut, HttpError
from tests.fakes.dify_state import RecordedRequest
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import dm
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.wechat import FakeWeChatAPI

ROOT = Path(__file__).resolve().parent.parent
LEASE = 10.0
ACK_WAIT = 3.0  # Slack redelivers an event not acked within 3 s
NOTICES = ("interrupted", "can't be reached", "went wrong", "busy", "Stopped")


@dataclass
class Sent:
    user: str
    ts: str
    marker: str
    at: float
    acked: bool = False


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)
    envelopes: int = 0
    redeliveries: int = 0
    kill_at: float = 0.0


class Replica:
    """One `difybot serve` subprocess."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.proc: asyncio.subprocess.Process | None = None
        self.log = ROOT / "benchmarks" / "results" / f"chaos-{name}.log"

    async def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        handle = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "difybot.cli", "serve", env=self.env, cwd=ROOT,
            stdout=handle, stderr=handle,
        )  # fmt: skip
        handle.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def fresh_database(url: str, name: str = "difybot_chaos") -> str:
    """Drop and create the chaos database; the replicas migrate it themselves."""
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{url}/{name}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def replica_env(
    dify: FakeDify, slack: FakeSlack, api: FakeWeChatAPI, database: str
) -> dict[str, str]:
    prefixes = ("DIFY_", "SLACK_", "DATABASE", "WECHAT_", "WECOM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(tencent_env(api))
    env.update(
        DIFY_API_BASE=dify.base_url, DIFY_API_KEY=dify.api_key, SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=slack.url, DATABASE_URL=database,
        HOST="127.0.0.1", JOURNAL_LEASE_SECONDS=str(LEASE), RATE_LIMIT_PER_MINUTE="0",
        SLACK_DM_THREADS="true", SLACK_UPDATE_BUDGET_PER_MINUTE="100000", SLACK_BUDGET_SCALE="1000",
        STREAM_EDIT_INTERVAL="0.5", SHUTDOWN_TIMEOUT="2", LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )  # fmt: skip
    return env


def dify_faults(rng: random.Random) -> object:
    def chaos(request: RecordedRequest) -> Behaviour | None:
        draw = rng.random()
        if draw < 0.10:
            return HttpError(502, "bad_gateway", "<html>502 Bad Gateway</html>")
        if draw < 0.15:
            return Cut(after=2)
        return None

    return chaos


async def deliver(socket: FakeSocketMode, body: dict[str, object], run: Run, rng: random.Random,
                  sent: Sent) -> None:  # fmt: skip
    """Send an event over a random live connection; redeliver (retry_attempt + 1, another
    connection) when it is not acked within 3 s, up to 3 retries, like Slack."""
    for attempt in range(4):
        while not socket.sockets:  # noqa: ASYNC110 (polling a fake is fine in a benchmark)
            await asyncio.sleep(0.05)
        envelope_id = await send_envelope(socket, body, attempt, rng)
        run.envelopes += 1
        run.redeliveries += attempt > 0
        if attempt == 0 and rng.random() < 0.05:  # a platform retry on purpose
            await asyncio.sleep(0.2)
            await send_envelope(socket, body, 1, rng)
            run.envelopes += 1
        deadline = time.monotonic() + ACK_WAIT
        while time.monotonic() < deadline:
            if envelope_id in socket.acks:
                sent.acked = True
                return
            await asyncio.sleep(0.05)


async def send_envelope(
    socket: FakeSocketMode, body: dict[str, object], attempt: int, rng: random.Random
) -> str:
    ws = rng.choice(socket.sockets)
    envelope_id = f"env-{rng.getrandbits(64):016x}"
    envelope = {"envelope_id": envelope_id, "type": "events_api", "payload": body,
                "accepts_response_payload": False, "retry_attempt": attempt,
                "retry_reason": "timeout" if attempt else ""}  # fmt: skip
    # If that replica just died, the missing ack makes us redeliver.
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(envelope)
    return envelope_id


async def user_session(user: str, count: int, base: int, socket: FakeSocketMode, run: Run,
                       rng: random.Random) -> None:  # fmt: skip
    channel = f"D{user[1:]}"
    deliveries = []
    for i in range(count):
        await asyncio.sleep(rng.uniform(1.0, 8.0))  # people type; ~20 messages a second
        n = base + i
        ts = f"1800000000.{n:06d}"
        marker = f"m{n:05d}"
        sent = Sent(user, ts, marker, time.monotonic())
        run.sent.append(sent)
        body = dm(marker, ts=ts, user=user, channel=channel)
        body["event_id"] = f"Ev{n:08d}"
        deliveries.append(asyncio.create_task(deliver(socket, body, run, rng, sent)))
    await asyncio.gather(*deliveries)


def verdict(run: Run, slack: FakeSlack, dify: FakeDify) -> dict[str, float]:
    answered = duplicates = lost = stuck = complete = 0
    last_touch, first_after = touches(slack, run.kill_at)
    recovery = resume = 0.0
    for sent in run.sent:
        channel = f"D{sent.user[1:]}"
        replies = slack.messages.in_channel(channel, sent.ts)
        bot = [m for m in replies if m.ts != sent.ts]
        with_answer = [m for m in bot if sent.marker in m.body or any(n in m.body for n in NOTICES)]
        stuck += sum(1 for m in bot if m not in with_answer)
        if not with_answer:
            lost += 1
            continue
        answered += 1
        duplicates += len(with_answer) > 1
        complete += any("done" in m.body for m in with_answer)
        if sent.at < run.kill_at:
            recovery = max(recovery, last_touch.get(sent.ts, 0.0) - run.kill_at)
            if sent.ts in first_after:
                resume = max(resume, first_after[sent.ts] - run.kill_at)
    per_user = Counter(dify.conversations.values())
    forked = sum(1 for count in per_user.values() if count > 1)
    return {"sent": len(run.sent), "answered": answered, "complete": complete,
            "duplicates": duplicates, "lost": lost, "stuck_placeholders": stuck,
            "forked": forked, "resumed_s": resume, "recovered_s": recovery}  # fmt: skip


def touches(slack: FakeSlack, since: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per question ts: the last Web API call on its answer, and the first one after ``since``
    (the kill): the longest wait for that first call is how long the kill stalled anyone."""
    thread_of = {m.ts: m.thread_ts for m in slack.messages.all.values()}
    last: dict[str, float] = {}
    first_after: dict[str, float] = {}
    for call in slack.calls:
        thread = call.args.get("thread_ts") or thread_of.get(str(call.args.get("ts")))
        if thread:
            key = str(thread)
            last[key] = max(last.get(key, 0.0), call.at)
            if call.at >= since and key not in first_after:
                first_after[key] = call.at
    return last, first_after


async def settle(run: Run, slack: FakeSlack, dify: FakeDify, limit: float) -> None:
    """Until every question has an answer and Slack has been quiet for 3 s, or the timeout
    (takeovers wait for a lease to expire, so quiet alone proves nothing)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        quiet = time.monotonic() - max((c.at for c in slack.calls), default=0.0) > 3.0
        if quiet and verdict(run, slack, dify)["lost"] == 0:
            return
        await asyncio.sleep(1.0)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    database = await fresh_database(args.database, args.database_name)
    async with (
        FakeDify(mode="chat", chunk_delay=0.15) as dify,
        FakeSlack(update_limit=10**9, retry_after=1) as slack,
        FakeWeChatAPI() as api,
    ):
        dify.echo = lambda query: [f"{query} ", "second ", "third ", "done"]
        dify.chaos = dify_faults(rng)  # type: ignore[assignment]
        slack.flaky = lambda method: method != "apps.connections.open" and rng.random() < 0.10
        env = replica_env(dify, slack, api, database)
        # Each its own REPLICA_ID (one host here): A comes back as itself after the kill, on
        # the same port (the load balancer's address for it).
        ports = [free_port(), free_port()]
        replicas = [
            Replica(name, {**env, "REPLICA_ID": f"chaos-{name}", "PORT": str(port)})
            for name, port in zip("ab", ports, strict=True)
        ]
        for replica in replicas:
            await replica.start()
        await slack.until(lambda: len(slack.socket.sockets) == 2, 60, "two connections")
        run, tencent = Run(), TencentRun()
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        per_user = args.messages // args.users
        sessions = []
        for u in range(args.users):
            markers = [f"m{n:05d}" for n in range(u * per_user, (u + 1) * per_user)]
            kind = ("wecom", "wechat", "slack", "slack", "slack")[u % 5]  # a fifth each
            if kind == "slack":
                sessions.append(
                    user_session(f"U{u:03d}", per_user, u * per_user, slack.socket, run, rng)
                )
            else:
                sessions.append(
                    tencent_session(kind, f"o{u:03d}", markers, urls, api, tencent, rng)
                )
        started = time.monotonic()

        async def chaos_monkey() -> None:
            while len(run.sent) + len(tencent.asked) < args.messages * 0.4:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            run.kill_at = time.monotonic()
            replicas[0].kill()
            await asyncio.sleep(3)
            await replicas[0].start()

        await asyncio.gather(*sessions, chaos_monkey())
        await settle(run, slack, dify, limit=120)
        await settle_tencent(tencent, api, limit=60)
        result = verdict(run, slack, dify)
        others = tencent_verdict(tencent, api)
        elapsed = time.monotonic() - started
        for replica in replicas:
            await replica.stop()
    print(f"chaos run: {args.users} users, 2 replicas on PostgreSQL, lease {LEASE:.0f} s, "
          f"{elapsed:.0f} s; Dify 502 10 %, cut 5 %; Slack 429 10 %; "
          "replica A SIGKILLed at 40 %")  # fmt: skip
    print(
        f"slack envelopes {run.envelopes} (redelivered {run.redeliveries}); "
        f"wechat/wecom callbacks {tencent.deliveries} (redelivered {tencent.redeliveries})"
    )
    print("slack:")
    for key, value in result.items():
        print(f"  {key:20} {value:.1f}" if isinstance(value, float) else f"  {key:20} {value}")
    for platform, counts in others.items():
        print(f"{platform}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


async def settle_tencent(run: TencentRun, api: FakeWeChatAPI, *, limit: float) -> None:
    """Until every WeChat and WeCom question has its answer, or the timeout."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        counts = tencent_verdict(run, api)
        if all(c["lost"] == 0 for c in counts.values()):
            return
        await asyncio.sleep(1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--database-name", default="difybot_chaos", help="dropped and made anew")
    asyncio.run(main(parser.parse_args()))
