"""What the shared delivery budgets cost the database: token-bucket takes per second.

    .venv/bin/python -m benchmarks.budget_store --database postgresql+asyncpg://... [--seconds 10]

``--tasks`` concurrent tasks (replies) each take a token from one of ``--keys`` buckets in a
loop, through ``storage.budgets.SqlBudgets`` on the engine difybot builds (pool of 5 + 10), for
``--seconds``; one process stands for one replica (``--processes`` run side by side). Prints
takes per second and their latency. Figures in README "Performance".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time

from storage.budgets import SqlBudgets
from storage.db import create_engine, init_db
from storage.units import Database


async def load(url: str, *, tasks: int, keys: int, seconds: float) -> dict[str, float]:
    db = Database(create_engine(url))
    budgets = SqlBudgets(db)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        key = f"bench/T1/chat.update/{n % keys}"
        while (start := time.perf_counter()) < deadline:
            await budgets.take(key, rate=1000.0, burst=1000.0)
            latencies.append(time.perf_counter() - start)

    try:
        await asyncio.gather(*(worker(n) for n in range(tasks)))
    finally:
        await db.close()
    latencies.sort()
    return {
        "takes": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def one_process(args: tuple[str, int, int, float]) -> dict[str, float]:
    url, tasks, keys, seconds = args
    return asyncio.run(load(url, tasks=tasks, keys=keys, seconds=seconds))


async def prepare(url: str) -> None:
    db = Database(create_engine(url))
    try:
        await init_db(db.engine)
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--keys", type=int, default=1, help="1: every take on one row")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(prepare(args.database))
    work = [(args.database, args.tasks, args.keys, args.seconds)] * args.processes
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        rows = pool.map(one_process, work)
    total = sum(row["per_second"] for row in rows)
    print(json.dumps({"processes": args.processes, "tasks": args.tasks, "keys": args.keys,
                      "takes_per_second": round(total), "per_process": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
