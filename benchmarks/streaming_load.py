"""End-to-end streaming load: a real ``difybot serve`` between the fake Dify and the fake Slack.

    .venv/bin/python -m benchmarks.streaming_load [--n 10,100,500,1000] [--short 3000]

Per N, a fresh difybot process (Socket Mode, SQLite in a temp folder, STREAM_EDIT_INTERVAL=1.0 as
Slack's default) gets N DMs, each from its own user, arriving evenly at ``--rate`` per second, so
that all N answers stream at once at the peak. Each answer: 0.3-0.8 s to the first token, two
bursts of 30 chunks ~50 ms apart, a 2.2 s tool pause between them. The fakes run in their own
process; see ``load_track`` for what counts as overhead. Slack's budgets are lifted here (their
own benchmark is ``slack_budget``). Then ``--short`` one-chunk conversations, ``--window``
at a time, for conversations per second. Writes ``benchmarks/results/streaming_load.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.harness import run_scenario

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "STREAM_EDIT_INTERVAL": "1.0",  # Slack's default (ReplyOptions.min_interval)
    "SLACK_UPDATE_BUDGET_PER_MINUTE": "1000000",
    "SLACK_BUDGET_SCALE": "10000",  # 500 DMs in 2.5 s would exceed Slack's posts per minute
    "LOG_LEVEL": "INFO",
}
STREAM_SHAPE = {"ttft": [0.3, 0.8], "bursts": 2, "chunks": 30, "gap": [0.03, 0.07], "pause": 2.2}
SHORT_SHAPE = {"ttft": [0.0, 0.0], "bursts": 1, "chunks": 1, "gap": [0.0, 0.0], "pause": 0.0}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def summarize(name: str, n: int, raw: dict[str, Any]) -> dict[str, Any]:
    completed = raw["completed"] or 1
    overhead, lag = raw.pop("overhead"), raw.pop("lag")
    by_kind = {
        kind: {"p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000, "n": len(v)}
        for kind, v in raw.pop("overhead_by_kind").items()
    }
    return {
        "name": name,
        "n": n,
        "completed": raw["completed"],
        "peak_streams": raw["peak_streams"],
        "overhead_p50_ms": percentile(overhead, 50) * 1000,
        "overhead_p99_ms": percentile(overhead, 99) * 1000,
        "overhead_samples": len(overhead),
        "overhead_by_kind": by_kind,  # first text, text after a pause, the final answer
        "lag_p50_ms": percentile(lag, 50) * 1000,
        "lag_p99_ms": percentile(lag, 99) * 1000,
        "conversations_per_s": raw["completed"] / raw["elapsed"] if raw["elapsed"] else 0.0,
        "cpu_ms_per_conversation": raw["cpu"] / completed * 1000,
        "peak_rss_mb": raw["peak_rss_mb"],
        "slack_calls_per_conversation": raw["calls"] / completed,
        "errors": raw["errors"] + raw["refused"],
    }


def streaming(n: int, rate: float, profile: Path | None) -> dict[str, Any]:
    ramp = n / rate
    spec = {"mode": "open", "n": n, "ramp": ramp, "shape": STREAM_SHAPE, "interval": 1.0,
            "timeout": ramp + 60}  # fmt: skip
    where = profile / f"stream-{n}.folded" if profile else None
    return summarize("stream", n, run_scenario(spec, SETTINGS, profile=where))


def short(n: int, window: int, profile: Path | None) -> dict[str, Any]:
    spec = {"mode": "closed", "n": n, "window": window, "shape": SHORT_SHAPE, "interval": 1.0,
            "timeout": 120}  # fmt: skip
    where = profile / "short.folded" if profile else None
    return summarize(f"short w={window}", n, run_scenario(spec, SETTINGS, profile=where))


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'run':>12} {'N':>5} {'done':>5} {'peak':>5} {'ovh p50':>8} {'ovh p99':>8} "
            f"{'lag p50':>8} {'lag p99':>8} {'conv/s':>7} {'CPU ms/c':>8} {'RSS MB':>7} "
            f"{'calls/c':>7} {'err':>4}")  # fmt: skip
    print(head)
    for r in rows:
        print(
            f"{r['name']:>12} {r['n']:>5} {r['completed']:>5} {r['peak_streams']:>5} "
            f"{r['overhead_p50_ms']:>8.2f} {r['overhead_p99_ms']:>8.2f} "
            f"{r['lag_p50_ms']:>8.1f} {r['lag_p99_ms']:>8.1f} {r['conversations_per_s']:>7.1f} "
            f"{r['cpu_ms_per_conversation']:>8.2f} {r['peak_rss_mb']:>7.1f} "
            f"{r['slack_calls_per_conversation']:>7.2f} {r['errors']:>4}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10,100,500,1000", help="concurrent conversations")
    parser.add_argument("--rate", type=float, default=200.0, help="arrivals per second")
    parser.add_argument("--short", type=int, default=3000, help="short conversations (0: skip)")
    parser.add_argument("--window", type=int, default=200, help="short conversations in flight")
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks into this folder")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(x) for x in args.n.split(",") if x):
        rows.append(streaming(n, args.rate, args.profile))
        print_table(rows[-1:])
    if args.short:
        rows.append(short(args.short, args.window, args.profile))
    if not args.profile:  # a sampled run's figures are not the ones to keep
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "streaming_load.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\nN conversations, each a DM streamed by chat.update; ms = milliseconds")
    print("ovh: Dify chunk written -> first Slack call showing it, where nothing holds it back")
    print("lag: the same for every chunk, including the 1 s edit interval; peak: open streams\n")
    print_table(rows)


if __name__ == "__main__":
    main()
