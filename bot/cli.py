"""The ``difybot`` command: ``serve`` (every configured adapter), ``chat`` (the terminal), and the
admin commands ``check``, ``conversations list|reset`` and ``db upgrade|current``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from bot.config import Settings, load_database_settings, load_routes, load_settings
from bot.errors import ConfigError
from bot.logs import setup_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


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
    check = commands.add_parser("check", help="check every setting against the real services")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _add_conversations(commands)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply pending migrations (for DATABASE_AUTO_MIGRATE=false)")
    db.add_parser("current", help="print the schema revision of the database and of this version")
    return parser


def _add_conversations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bot.admin import add_filters

    parser = commands.add_parser("conversations", help="list or forget stored conversations")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="stored conversations, most recently used first")
    add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    reset = actions.add_parser("reset", help="forget conversations: their next message starts anew")
    add_filters(reset)
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("db", "conversations"):  # no Dify key needed for these
            database = load_database_settings()
            setup_logging(database.log_level if args.command == "db" else "WARNING", [])
            return asyncio.run(_database(args, database.database_url))
        settings = load_settings()
        level = settings.log_level if args.command == "serve" else "WARNING"
        setup_logging(level, _secrets(settings), fmt=settings.log_format)
        return asyncio.run(_run(args, settings))
    except ConfigError as exc:
        print(f"difybot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _secrets(settings: Settings) -> list[str]:
    """Every secret to scrub from logs: the settings' and the routed apps' keys."""
    try:
        routed = [spec.api_key for spec in load_routes(settings).extra_apps]
    except ConfigError:
        routed = []  # serve reports the routes file; check shows it as a failed line
    return [*settings.secrets(), *routed]


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command
    if command == "check":
        from bot.admin import check_command, make_console

        return await check_command(settings, as_json=args.json, out=make_console())
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


async def _database(args: argparse.Namespace, url: str) -> int:
    from storage.db import create_engine
    from storage.migrate import current_revision, head_revision, upgrade
    from storage.units import dispose

    engine = create_engine(url)
    try:
        if args.command == "conversations":
            return await _conversations(args, engine)
        if args.db == "upgrade":
            before, after = await upgrade(engine)
            was = f" (was {before or 'empty'})" if before != after else ""
            print(f"database at {after}{was}")
            return 0
        current, head = await current_revision(engine), head_revision()
        print(f"database: {current or 'empty'}, this version: {head}")
        return 0 if current == head else 1
    finally:
        await dispose(engine)


async def _conversations(args: argparse.Namespace, engine: AsyncEngine) -> int:
    from bot.admin import list_command, make_console, reset_command
    from storage.conversations import ConversationStore
    from storage.migrate import ensure_schema

    await ensure_schema(engine, auto_migrate=False)  # an old schema: say `db upgrade` first
    store = ConversationStore(engine)
    run = list_command if args.action == "list" else reset_command
    return await run(store, args, out=make_console())


if __name__ == "__main__":
    raise SystemExit(main())
