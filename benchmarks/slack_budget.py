"""Slack's rate limits under load: 100 concurrent replies in one workspace, in real time.

    .venv/bin/python -m benchmarks.slack_budget [--replies 100] [--threaded 50] [--seconds 30]

A real ``difybot serve`` (default settings: SLACK_UPDATE_BUDGET_PER_MINUTE=45, Slack's 1 s edit
interval) answers ``--replies`` questions arriving within one second: ``--threaded`` of them are
@mentions in a channel (native streaming in the thread), the rest DMs (chat.update). Every answer
streams for about ``--seconds`` (10 chunks/s). The fake Slack enforces the floor of each tier per
workspace over a rolling minute (``tests/fakes/slack_tiers.py``): chat.update and chat.delete 50,
chat.startStream and chat.stopStream 20, chat.appendStream 100, chat.postMessage 300 and 60 per
channel, assistant.threads.setStatus 60 per channel. Real time, no compressed clock.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.harness import run_scenario

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--threaded", type=int, default=50, help="of them, in channel threads")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each answer")
    args = parser.parse_args()
    chunks = max(int(args.seconds * 10), 1)
    shape = {"ttft": [0.5, 1.0], "bursts": 1, "chunks": chunks, "gap": [0.08, 0.12]}
    spec = {"mode": "open", "n": args.replies, "ramp": 1.0, "threaded": args.threaded,
            "shape": shape, "interval": 1.0, "tiers": True,
            "timeout": args.seconds + 180}  # fmt: skip
    raw = run_scenario(spec, {"LOG_LEVEL": "INFO"})
    limited: dict[str, int] = raw["limited"]
    row: dict[str, Any] = {
        "replies": args.replies,
        "threaded": args.threaded,
        "answer_s": args.seconds,
        "http_429": sum(limited.values()),
        "http_429_by_method": limited,
        "longest_gap_s": raw["longest_gap"],
        "median_longest_gap_s": raw["gap_p50"],
        "final_after_last_chunk_p50_s": raw["final_late_p50"],
        "final_after_last_chunk_max_s": raw["final_late_max"],
        "first_visible_max_s": raw["first_visible_max"],
        "finals": raw["completed"],
        "slack_calls": raw["calls"],
        "refused_calls": raw["refused"],
        "elapsed_s": raw["elapsed"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "slack_budget.json").write_text(json.dumps(row, indent=2) + "\n")
    print(f"{args.replies} replies in one workspace ({args.threaded} in threads, native"
          f" streaming; the rest DMs, chat.update), answers of ~{args.seconds:.0f} s;"
          " real time\n")  # fmt: skip
    print(f"{'HTTP 429 received':36} {row['http_429']:>8}   {limited or ''}")
    print(f"{'longest gap between visible updates':36} {row['longest_gap_s']:>8.1f} s")
    print(f"{'  median over the replies':36} {row['median_longest_gap_s']:>8.1f} s")
    print(f"{'longest wait for the first sign':36} {row['first_visible_max_s']:>8.1f} s")
    late = f"{row['final_after_last_chunk_p50_s']:.1f} s median, "
    late += f"{row['final_after_last_chunk_max_s']:.1f} s at most"
    print(f"{'final shown after the last chunk':36} {late:>8}")
    print(f"{'finals delivered':36} {row['finals']:>8} / {args.replies}")
    print(f"{'Slack calls (refused)':36} {row['slack_calls']:>8} ({row['refused_calls']})")
    print(f"{'until the last final':36} {row['elapsed_s']:>8.1f} s")


if __name__ == "__main__":
    main()
