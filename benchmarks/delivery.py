"""The delivery scheduler under a burst (issue 16's two targets), in real time.

    .venv/bin/python -m benchmarks.delivery burst [--runs 3]
    .venv/bin/python -m benchmarks.delivery replicas --database postgresql://... [--runs 3]

``burst``: one ``difybot serve`` (SQLite), 200 DMs within one second, each answered by a 20-chunk
Dify stream; the fake Slack enforces nothing, and difybot's Slack budgets are lifted (the burst
would pass Slack's real posts-per-minute). Target: every final visible ≤ 10 s after Dify's last
chunk for it (p99); ≥ 95 % of users see a sign of life within 2 s.

``replicas``: two ``difybot serve`` processes on one PostgreSQL database, one workspace, default
budgets; 100 DMs and 40 channel @mentions (native streams in threads) within 5 s, Slack's events
spread over both replicas' Socket Mode connections; the fake Slack enforces each method's tier
across both connections (``tests/fakes/slack_tiers.py``). Target: 0 HTTP 429, every final ≤ 60 s
after Dify's last chunk (p99), sign of life p99 ≤ 2 s. Calls per method are printed.

A sign of life is the first call a person sees: a placeholder post, a stream start, or a thread's
"thinking…" status. Each run appends its row to ``results/delivery.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.harness import (
    ROOT,
    _read_event,
    _stop,
    difybot_command,
    difybot_env,
)

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = {"ttft": [0.3, 0.8], "bursts": 1, "chunks": 20, "gap": [0.03, 0.07]}  # ~1 s answers
LIFTED = {"SLACK_UPDATE_BUDGET_PER_MINUTE": "1000000", "SLACK_BUDGET_SCALE": "10000"}


def run(spec: dict[str, Any], settings: dict[str, str], *, replicas: int, database: str) -> dict:
    """The fakes process and ``replicas`` difybot processes; the fakes' result."""
    with tempfile.TemporaryDirectory(prefix="difybot-delivery-") as tmp:
        folder = Path(tmp)
        fakes = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load_fakes", json.dumps(spec)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        bots: list[subprocess.Popen[str]] = []
        try:
            assert fakes.stdout is not None
            urls = _read_event(fakes.stdout, fakes, "listening")
            for i in range(replicas):
                env = difybot_env(urls, folder, settings)
                env["REPLICA_ID"] = f"bench-{i}"
                if database:
                    env["DATABASE_URL"] = database
                log = (folder / f"difybot-{i}.log").open("w")
                bots.append(
                    subprocess.Popen(difybot_command(), cwd=folder, env=env, stderr=log, text=True)
                )
                if i == 0 and replicas > 1:
                    time.sleep(3.0)  # the first one migrates the database alone
            _read_event(fakes.stdout, fakes, "difybot connected")
            result = _read_event(fakes.stdout, fakes, "the result")
            for bot in bots:
                _stop(bot)
            result["errors"] = sum(
                " ERROR " in line
                for i in range(replicas)
                for line in (folder / f"difybot-{i}.log").read_text(errors="replace").splitlines()
            )
            return result
        finally:
            for bot in bots:
                _stop(bot)
            if fakes.stdin is not None:
                fakes.stdin.close()
            _stop(fakes)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan
    )


def tenths(signs: dict[str, float], asked: int) -> list[float]:
    ordered = [signs[n] for n in sorted(signs, key=int)]
    size = max(asked // 10, 1)
    parts = [sorted(ordered[i : i + size]) for i in range(0, len(ordered), size)]
    return [round(part[len(part) // 2], 2) for part in parts if part]


def summarize(name: str, raw: dict[str, Any], asked: int, threads: int = 0) -> dict[str, Any]:
    signs: list[float] = raw["signs"]
    return {
        "scenario": name,
        "asked": asked,
        "finals": raw["completed"],
        "final_after_last_chunk_p50_s": raw["final_late_p50"],
        "final_after_last_chunk_p99_s": p99(raw["final_late"]),
        "final_after_last_chunk_max_s": raw["final_late_max"],
        "sign_of_life_p50_s": sorted(signs)[len(signs) // 2] if signs else math.nan,
        "sign_of_life_p99_s": p99(signs),
        "sign_of_life_within_2s": sum(s <= 2.0 for s in signs) / asked,
        "http_429": sum(raw["limited"].values()),
        "http_429_by_method": raw["limited"],
        "calls_by_method": raw["calls_by_method"],
        "sign_of_life_p99_threads_s": p99(
            [s for n, s in raw["sign_by_conversation"].items() if int(n) < threads]
        ),
        "sign_of_life_p99_dms_s": p99(
            [s for n, s in raw["sign_by_conversation"].items() if int(n) >= threads]
        ),
        "errors_logged": raw["errors"],
        # the median sign of life of each tenth of the conversations, in arrival order
        "sign_of_life_by_tenth_s": tenths(raw["sign_by_conversation"], asked),
        "elapsed_s": raw["elapsed"],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def burst() -> dict[str, Any]:
    spec = {"mode": "open", "n": 200, "ramp": 1.0, "threaded": 0, "shape": SHAPE,
            "interval": 1.0, "tiers": False, "timeout": 120}  # fmt: skip
    return summarize(
        "burst", run(spec, {**LIFTED, "LOG_LEVEL": "INFO"}, replicas=1, database=""), 200
    )


def two_replicas(database: str) -> dict[str, Any]:
    clean(database)
    # 40 mentions first (one channel, threads), then 100 DMs, all within 5 s
    spec = {"mode": "open", "n": 140, "ramp": 5.0, "threaded": 40, "shape": SHAPE,
            "interval": 1.0, "tiers": True, "timeout": 240, "replicas": 2}  # fmt: skip
    raw = run(spec, {"LOG_LEVEL": "INFO"}, replicas=2, database=database)
    return summarize("two replicas", raw, 140, threads=40)


def clean(database: str) -> None:
    """A fresh database for each run: the previous run's journal and buckets dropped."""

    async def drop() -> None:
        engine = create_async_engine(database)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(drop())


def show(row: dict[str, Any]) -> None:
    print(f"\n{row['scenario']}: {row['finals']}/{row['asked']} finals, {row['elapsed_s']:.1f} s")
    print(f"  final after Dify's last chunk  p50 {row['final_after_last_chunk_p50_s']:.2f} s"
          f"  p99 {row['final_after_last_chunk_p99_s']:.2f} s"
          f"  max {row['final_after_last_chunk_max_s']:.2f} s")  # fmt: skip
    print(f"  sign of life  p50 {row['sign_of_life_p50_s']:.2f} s"
          f"  p99 {row['sign_of_life_p99_s']:.2f} s"
          f"  within 2 s {row['sign_of_life_within_2s']:.1%}"
          f"  (p99 threads {row['sign_of_life_p99_threads_s']:.2f} s,"
          f" DMs {row['sign_of_life_p99_dms_s']:.2f} s)")  # fmt: skip
    print(f"  HTTP 429 {row['http_429']} {row['http_429_by_method'] or ''}"
          f"  errors logged {row['errors_logged']}")  # fmt: skip
    print(f"  calls {row['calls_by_method']}")
    print(f"  sign of life by tenth of the arrivals {row['sign_of_life_by_tenth_s']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["burst", "replicas"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default="", help="PostgreSQL URL (replicas)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "delivery.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    for _ in range(args.runs):
        row = burst() if args.scenario == "burst" else two_replicas(args.database)
        show(row)
        rows.append(row)
        path.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
