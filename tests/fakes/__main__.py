"""Run the fake Dify on its own for demos: ``python -m tests.fakes --port 5001``.

It answers every message with ``echo: <message>``, streamed word by word, so ``difybot chat`` (or
a platform adapter) can be tried without a Dify server. ``--human-input`` makes every Chatflow
or Workflow run pause at a Human Input form (the captured Review node) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.fakes.dify import FakeDify, HumanFlow


def word_chunks(text: str) -> list[str]:
    words = f"echo: {text}".split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


async def run(port: int, mode: str, delay: float, *, human_input: bool = False) -> None:
    flow = None
    if human_input:
        flow = HumanFlow.captured_workflow() if mode == "workflow" else HumanFlow()
    fake = FakeDify(mode=mode, chunk_delay=delay, flow=flow, close_delay=1.0)
    fake.echo = word_chunks  # stream visibly, one word at a time
    await fake.start(port=port)
    print(f"fake Dify on {fake.base_url}  (DIFY_API_KEY={fake.api_key}); Ctrl-C stops it")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--mode", default="advanced-chat")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds between chunks")
    parser.add_argument(
        "--human-input", action="store_true", help="pause every run at a Human Input form"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.port, args.mode, args.delay, human_input=args.human_input))


if __name__ == "__main__":
    main()
