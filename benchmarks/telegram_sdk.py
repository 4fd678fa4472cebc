"""What aiogram would cost difybot: import time, RSS, and client CPU per Bot API call.

    .venv/bin/python -m benchmarks.telegram_sdk [--calls 2000] [--rounds 3]

Each figure comes from a fresh process. Imports: difybot's own startup imports (the CLI, the
adapters, slack-bolt and slack-sdk, which ``difybot serve`` loads), then aiogram on top.
Calls: sendMessage (parse_mode HTML) followed by editMessageText, against the fake Bot API
(tests/fakes/telegram.py, flood limits off) running in its own process; the client's CPU time
only. "aiohttp + json" is what an adapter does without a Bot API library: one POST of a JSON
body, the answer read as a dict. aiogram needs the dev extra (it is not a runtime dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import pinned

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import difybot.cli, adapters, slack_bolt, slack_sdk"
IMPORT_PROBE = """
import gc, sys, time
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith('VmRSS'))
t0 = time.perf_counter(); {baseline}; t1 = time.perf_counter(); r1 = rss()
{extra}
t2 = time.perf_counter(); gc.collect()
print(t1 - t0, r1, t2 - t1, rss() - r1)
"""
AIOGRAM_IMPORTS = (
    "import aiogram; from aiogram import Bot, Dispatcher; "
    "from aiogram.webhook.aiohttp_server import SimpleRequestHandler"
)


def import_cost(rounds: int) -> tuple[float, float, float, float]:
    """Medians of (baseline s, baseline MiB, aiogram s, aiogram MiB) over fresh processes."""
    samples = []
    for _ in range(rounds):
        code = IMPORT_PROBE.format(baseline=BASELINE, extra=AIOGRAM_IMPORTS)
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=pinned(1),
        )
        samples.append([float(x) for x in out.stdout.split()])
    base_s, base_mib, aiogram_s, aiogram_mib = (
        statistics.median(column) for column in zip(*samples, strict=True)
    )
    return base_s, base_mib, aiogram_s, aiogram_mib


async def serve() -> None:
    """The fake Bot API, until stdin closes; prints its base URL, token and a chat id."""
    from tests.fakes.telegram import FakeTelegram
    from tests.fakes.telegram_flood import FloodLimits

    async with FakeTelegram(limits=FloodLimits.off()) as tg:
        chat = tg.inbound.private_chat()
        print(json.dumps({"base": tg.base_url, "token": tg.token, "chat": chat.id}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def client(kind: str, base: str, token: str, chat: int, calls: int) -> dict[str, float]:
    text = "<b>Dify</b> answers with <i>formatting</i> and a <code>snippet</code> " * 4
    if kind == "aiogram":
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base)))

        async def round_trip(n: int) -> None:
            sent = await bot.send_message(chat, f"{n} {text}", parse_mode="HTML")
            await bot.edit_message_text(
                f"{n} {text}!", chat_id=chat, message_id=sent.message_id, parse_mode="HTML"
            )

        close = bot.session.close
    else:
        import aiohttp

        session = aiohttp.ClientSession()

        async def call(method: str, body: dict[str, Any]) -> Any:
            async with session.post(f"{base}/bot{token}/{method}", json=body) as response:
                return (await response.json())["result"]

        async def round_trip(n: int) -> None:
            sent = await call(
                "sendMessage", {"chat_id": chat, "text": f"{n} {text}", "parse_mode": "HTML"}
            )
            await call(
                "editMessageText",
                {
                    "chat_id": chat,
                    "message_id": sent["message_id"],
                    "text": f"{n} {text}!",
                    "parse_mode": "HTML",
                },
            )

        close = session.close
    await round_trip(0)  # warm: connection, first-use imports
    start = time.process_time()
    for n in range(1, calls // 2 + 1):
        await round_trip(n)
    cpu = time.process_time() - start
    await close()
    return {"calls": calls, "cpu": cpu}


def measure(kind: str, server: dict[str, Any], calls: int) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.telegram_sdk",
        "--client",
        kind,
        json.dumps(server),
        str(calls),
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        preexec_fn=pinned(1),
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", nargs=3, metavar=("KIND", "SERVER", "CALLS"))
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    if args.client:
        kind, server, calls = args.client[0], json.loads(args.client[1]), int(args.client[2])
        result = asyncio.run(client(kind, server["base"], server["token"], server["chat"], calls))
        print(json.dumps(result))
        return
    base_s, base_mib, aiogram_s, aiogram_mib = import_cost(args.rounds)
    print(f"imports (median of {args.rounds} fresh processes):")
    print(f"  difybot serve's own: {base_s * 1000:6.0f} ms, RSS {base_mib:5.0f} MiB")
    print(f"  aiogram on top:      {aiogram_s * 1000:6.0f} ms, RSS +{aiogram_mib:4.0f} MiB")
    fake = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.telegram_sdk", "--serve"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(0),
    )
    assert fake.stdout is not None and fake.stdin is not None
    server = json.loads(fake.stdout.readline())
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):  # round-robin: both clients see the machine's drift
            for kind in ("aiogram", "aiohttp"):
                cpu = measure(kind, server, args.calls)["cpu"]
                best[kind] = min(best.get(kind, cpu), cpu)
    finally:
        fake.stdin.close()
        fake.wait(timeout=10)
    print(
        f"\nclient CPU per call (sendMessage + editMessageText, {args.calls} calls, best of "
        f"{args.rounds}):"
    )
    for kind, label in (("aiogram", "aiogram 3 Bot"), ("aiohttp", "aiohttp + json")):
        print(f"  {label:15} {best[kind] / args.calls * 1e6:7.0f} µs")


if __name__ == "__main__":
    main()
