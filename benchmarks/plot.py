"""Overhead p99 and peak RSS against N, from ``benchmarks/results/streaming_load.json``.

    .venv/bin/python -m benchmarks.plot

Writes ``benchmarks/results/streaming_load.png`` (run ``benchmarks.streaming_load`` first).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
OVERHEAD_TARGET_MS = 5.0  # p99 at 500 streams
RSS_TARGET_MB = 250.0  # at 1,000 streams


def main() -> None:
    rows = json.loads((RESULTS / "streaming_load.json").read_text())
    rows = sorted((r for r in rows if r["name"] == "stream"), key=lambda r: r["n"])
    if not rows:
        raise SystemExit("no streaming rows in streaming_load.json")
    n = [r["n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    left.plot(n, [r["overhead_p99_ms"] for r in rows], "o-", label="p99")
    left.plot(n, [r["overhead_p50_ms"] for r in rows], "s--", label="p50")
    left.axhline(OVERHEAD_TARGET_MS, color="tab:red", linestyle=":", label="p99 target")
    left.set(xscale="log", yscale="log", xlabel="concurrent streams (N)",
             ylabel="ms", title="Dify chunk written → Slack call showing it")  # fmt: skip
    left.legend()
    right.plot(n, [r["peak_rss_mb"] for r in rows], "o-", color="tab:green", label="peak RSS")
    right.axhline(RSS_TARGET_MB, color="tab:red", linestyle=":", label="target")
    top = max(RSS_TARGET_MB * 1.2, *right.get_ylim())
    right.set(xscale="log", xlabel="concurrent streams (N)", ylabel="MB",
              title="difybot peak RSS", ylim=(0, top))  # fmt: skip
    right.legend()
    fig.suptitle("difybot serve, Slack Socket Mode, loopback fakes, 2 cores")
    out = RESULTS / "streaming_load.png"
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
