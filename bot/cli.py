"""The ``difybot`` command: ``serve`` (every configured adapter) and ``chat`` (the terminal)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import setup_logging


def _version() -> str:
    try:
        return version("difybot")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difybot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"difybot {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP server and every configured adapter")
    commands.add_parser("chat", help="chat with the Dify app in this terminal (or via a pipe)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level if args.command == "serve" else "WARNING",
                      settings.secrets())  # fmt: skip
        return asyncio.run(_run(args.command, settings))
    except ConfigError as exc:
        print(f"difybot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(command: str, settings: Settings) -> int:
    if command == "serve":
        from bot.app import serve

        await serve(settings)
        return 0
    from adapters.console import run_console
    from bot.app import build_core

    core = await build_core(settings)
    try:
        await run_console(core.dispatcher)
    finally:
        await core.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
