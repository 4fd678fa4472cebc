"""The fakes' side of the load benchmarks: FakeDify and FakeSlack in one process, driving load.

    python -m benchmarks.load_fakes '<scenario JSON>'

Prints one JSON line with the fakes' URLs, waits for difybot's Socket Mode connection, prints
``{"event": "start"}``, runs the scenario, prints ``{"event": "result", ...}``, and exits when its
stdin closes. The
fakes share this process, so chunk write times (FakeDify) and Web API arrival times (FakeSlack)
are read from one clock (``time.perf_counter``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from benchmarks.load_track import Tracker
from tests.fakes.dify import Answer, FakeDify
from tests.fakes.dify_events import Turn
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.fakes.slack_payloads import dm, mention
from tests.fakes.slack_tiers import RateTiers

BASE_TS = 1_800_000_000
CONNECT_TIMEOUT = 60.0  # difybot start-up (imports, database, Socket Mode handshake)


@dataclass(frozen=True)
class Shape:
    """One answer: time to first token, then bursts of token chunks with tool pauses between."""

    ttft: tuple[float, float] = (0.3, 0.8)  # seconds, uniform
    bursts: int = 2
    chunks: int = 30  # per burst
    gap: tuple[float, float] = (0.03, 0.07)  # seconds between chunks, uniform (~20 chunks/s)
    pause: float = 2.2  # between bursts: a tool call or retrieval (> 2 edit intervals)

    def answer(self, n: int) -> Answer:
        rng = random.Random(n)
        total = self.bursts * self.chunks
        delays = [rng.uniform(*self.gap) for _ in range(total)]
        for burst in range(1, self.bursts):
            delays[burst * self.chunks - 1] = self.pause
        delays[-1] = 0.0  # the closing events follow the last chunk at once
        chunks = [f"t{i:03d} " for i in range(total)]
        return Answer(chunks=chunks, first_delay=rng.uniform(*self.ttft), delays=tuple(delays))


def to_shape(given: dict[str, Any]) -> Shape:
    """A ``Shape`` from its JSON form (lists for the ranges)."""
    shape = Shape()
    return Shape(
        ttft=(float(given.get("ttft", shape.ttft)[0]), float(given.get("ttft", shape.ttft)[1])),
        bursts=int(given.get("bursts", shape.bursts)),
        chunks=int(given.get("chunks", shape.chunks)),
        gap=(float(given.get("gap", shape.gap)[0]), float(given.get("gap", shape.gap)[1])),
        pause=float(given.get("pause", shape.pause)),
    )


def track_calls(slack: FakeSlack, tracker: Tracker) -> None:
    """Hand every Web API call of a benchmark conversation to the tracker as it is answered."""

    def on_call(call: SlackCall, response: web.Response) -> None:
        n = conversation_of(slack, call.args)
        if n is not None:
            ok = response.status == 200 and (response.text or "").startswith('{"ok": true')
            tracker.observe(n, call.method, call.args, call.at, ok)

    slack.on_call = on_call


def conversation_of(slack: FakeSlack, args: dict[str, Any]) -> int | None:
    """DMs by their channel ``D<n>``; threads by their parent's ts (``event_for``)."""
    channel = str(args.get("channel") or args.get("channel_id") or "")
    if channel.startswith("D"):
        return int(channel[1:])
    thread = args.get("thread_ts")
    if not thread and (message := slack.messages.all.get(str(args.get("ts")))) is not None:
        thread = message.thread_ts
    return int(float(thread)) - BASE_TS if thread else None


def event_for(n: int, *, threaded: bool) -> dict[str, Any]:
    """Conversation ``n``: a DM from its own user in its own DM channel, or an @mention that
    starts a thread in one shared channel (native streaming)."""
    ts = f"{BASE_TS + n}.000100"
    if threaded:
        return mention(f"q{n}", ts=ts, channel="C000001", user=f"U{n:06d}")
    return dm(f"q{n}", ts=ts, user=f"U{n:06d}", channel=f"D{n:06d}")


async def send(slack: FakeSlack, n: int, *, threaded: bool = False) -> None:
    await slack.socket.send("events_api", event_for(n, threaded=threaded))


async def open_loop(slack: FakeSlack, tracker: Tracker, spec: dict[str, Any]) -> None:
    """Conversations arrive at an even pace over ``ramp`` seconds, whatever difybot does."""
    count, ramp = int(spec["n"]), float(spec.get("ramp", 0.0))
    threaded = int(spec.get("threaded", 0))
    start = time.perf_counter()
    for n in range(count):
        wait = start + ramp * n / count - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tracker.asked(n, time.perf_counter())
        await send(slack, n, threaded=n < threaded)


async def closed_loop(slack: FakeSlack, tracker: Tracker, spec: dict[str, Any]) -> None:
    """``window`` conversations in flight; a new one starts as soon as one is answered."""
    count, window = int(spec["n"]), int(spec.get("window", 100))
    slots = asyncio.Semaphore(window)
    tracker.on_final = lambda _: slots.release()
    for n in range(count):
        await slots.acquire()
        tracker.asked(n, time.perf_counter())
        await send(slack, n)


async def run(spec: dict[str, Any]) -> None:
    shape = to_shape(spec["shape"])
    total = shape.bursts * shape.chunks
    tracker = Tracker(total, interval=float(spec["interval"]))
    tiers = RateTiers(clock=time.perf_counter) if spec.get("tiers") else None
    slack = FakeSlack(clock=time.perf_counter, update_limit=10**9, tiers=tiers)
    track_calls(slack, tracker)
    dify = FakeDify(mode="advanced-chat")
    dify.compose = lambda query: shape.answer(int(query.lstrip("q")))
    dify.on_chunk = lambda turn, i: tracker.written(_number(turn), i, time.perf_counter())
    await dify.start()
    async with slack:
        print(json.dumps({"dify": dify.base_url, "key": dify.api_key, "slack": slack.url}))
        sys.stdout.flush()
        replicas = int(spec.get("replicas", 1))  # wait for every replica's connection
        slack.socket.spread = replicas > 1
        await slack.until(lambda: len(slack.socket.sockets) >= replicas, CONNECT_TIMEOUT, "difybot")
        print(json.dumps({"event": "start"}), flush=True)
        started = time.perf_counter()
        drive = closed_loop if spec["mode"] == "closed" else open_loop
        runner = asyncio.create_task(drive(slack, tracker, spec))
        peak = await _wait_answered(tracker, dify, int(spec["n"]), float(spec["timeout"]))
        runner.cancel()
        elapsed = (tracker.last_final or time.perf_counter()) - started
        result = tracker.result(elapsed=elapsed, limited=[c.method for c in slack.limited])
        result["peak_streams"] = peak
        print(json.dumps({"event": "result", **result}), flush=True)
        # Keep the fakes up until the harness has stopped difybot (it closes our stdin): a
        # Socket Mode connection that vanished under a running difybot is logged as an error.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await dify.close()


async def _wait_answered(tracker: Tracker, dify: FakeDify, count: int, limit: float) -> int:
    """Until every conversation has its final answer (or ``limit`` s); the peak open streams."""
    deadline, peak = time.perf_counter() + limit, 0
    while tracker.finals < count and time.perf_counter() < deadline:
        peak = max(peak, dify.active_streams)
        await asyncio.sleep(0.05)
    return peak


def _number(turn: Turn) -> int:
    return int(turn.query.lstrip("q"))


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
