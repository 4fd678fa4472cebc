"""Run the fake Dify on its own, to try difybot without a Dify server.

    python -m tests.fakes                          # runs until Ctrl-C; prints the command to use
    python -m tests.fakes .venv/bin/difybot chat   # runs that command against it, then stops

It answers every message with ``echo: <message>``, streamed word by word (``--human-input``:
every Chatflow or Workflow run pauses at a Human Input form, the captured Review node, instead).
It listens on a free port (``--port`` to choose one) and hands the command DIFY_API_BASE and
DIFY_API_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys

from tests.fakes.dify import FakeDify, HumanFlow


def word_chunks(text: str) -> list[str]:
    words = f"echo: {text}".split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


async def run(args: argparse.Namespace) -> int:
    flow = None
    if args.human_input:
        flow = HumanFlow.captured_workflow() if args.mode == "workflow" else HumanFlow()
    fake = FakeDify(mode=args.mode, chunk_delay=args.delay, flow=flow, close_delay=1.0)
    fake.echo = word_chunks  # stream visibly, one word at a time
    await fake.start(port=args.port)
    settings = {"DIFY_API_BASE": fake.base_url, "DIFY_API_KEY": fake.api_key}
    try:
        if args.command:
            return await _run_command(args.command, settings)
        shown = " ".join(f"{name}={value}" for name, value in settings.items())
        print(f"fake Dify at {fake.base_url}; in another terminal, chat with it:", flush=True)
        print(f"  {shown} .venv/bin/difybot chat", flush=True)
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return 0
    finally:
        await fake.close()


async def _run_command(command: list[str], settings: dict[str, str]) -> int:
    """The command in the foreground, on this terminal, with the fake's settings added."""
    try:
        child = await asyncio.create_subprocess_exec(*command, env={**os.environ, **settings})
    except OSError as exc:
        print(f"cannot run {shlex.join(command)}: {exc.strerror}", file=sys.stderr)
        return 127
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C is the child's to handle
    try:
        return await child.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (any free one)")
    parser.add_argument("--mode", default="advanced-chat", help="the app mode /info reports")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds between chunks")
    parser.add_argument(
        "--human-input", action="store_true", help="pause every run at a Human Input form"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a command to run against it")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
