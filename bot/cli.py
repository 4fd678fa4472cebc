"""The ``difybot`` command: ``serve`` (every configured adapter) and ``chat`` (the terminal)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.config import Settings, load_database_settings, load_settings
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
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply pending migrations (for DATABASE_AUTO_MIGRATE=false)")
    db.add_parser("current", help="print the schema revision of the database and of this version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "db":
            database = load_database_settings()
            setup_logging(database.log_level, [])
            return asyncio.run(_database(args.db, database.database_url))
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


async def _database(command: str, url: str) -> int:
    from storage.db import create_engine
    from storage.migrate import current_revision, head_revision, upgrade

    engine = create_engine(url)
    try:
        if command == "upgrade":
            before, after = await upgrade(engine)
            was = f" (was {before or 'empty'})" if before != after else ""
            print(f"database at {after}{was}")
            return 0
        current, head = await current_revision(engine), head_revision()
        print(f"database: {current or 'empty'}, this version: {head}")
        return 0 if current == head else 1
    finally:
        await engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
