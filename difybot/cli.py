"""The ``difybot`` command line: the parser, and each command's start through the startup funnel.

Only argparse is imported up front, so ``difybot --version`` and ``--help`` answer at once; each
command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difybot.config import CoreSettings as Settings
    from storage.units import Database

DESCRIPTION = (
    "Put a Dify app into Slack, Feishu/Lark, DingTalk, Telegram, LINE, WeChat, WeCom and the "
    "terminal, with answers streamed live. "
    "Settings come from the environment or a .env file in the working directory (see README)."
)
# The platforms a conversation can belong to (``--platform``); bot.platforms is the source.
PLATFORM_NAMES = (
    "console", "dingtalk", "feishu", "line", "slack", "telegram", "wechat", "wecom", "wecom_bot",
)  # fmt: skip
FILTERS = ("platform", "workspace", "app", "user", "channel")


class VersionAction(argparse.Action):
    """``--version`` reads the installed package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("difybot")
        except PackageNotFoundError:  # running from a source tree
            found = "0+unknown"
        print(f"difybot {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="difybot",
        description=DESCRIPTION,
        epilog="Exit status: 2 for a configuration mistake, 1 when something difybot needs "
        "cannot be reached (or a check failed). `difybot COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(commands, "serve", "run the HTTP server and every configured platform",
             "Listen on HOST:PORT for webhooks, /healthz, /readyz and /metrics, and run every "
             "platform whose credentials are set, until SIGTERM or Ctrl-C.")  # fmt: skip
    _command(commands, "chat", "chat with the Dify app in this terminal (or through a pipe)",
             "Ask the Dify app from the terminal, answers streaming in. Type /help for the "
             "commands. Piped questions are answered one per line; the exit status is 1 if "
             "any of them got no answer.")  # fmt: skip
    check = _command(commands, "check", "check every setting against the real services",
                     "Ask Dify, the database and every configured platform whether the settings "
                     "work; one line each, with a fix for each failure. Exit status 1 if any "
                     "failed.")  # fmt: skip
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _add_conversations(commands)
    db = _command(commands, "db", "show or upgrade the database schema",
                  "The schema of the database at DATABASE_URL.")  # fmt: skip
    actions = db.add_subparsers(dest="db", required=True, metavar="ACTION")
    _command(
        actions,
        "upgrade",
        "apply pending migrations (for DATABASE_AUTO_MIGRATE=false)",
        "Bring the database to this version's schema (replicas may run it together).",
    )
    _command(
        actions,
        "current",
        "print the schema revision of the database and of this version",
        "Exit status 1 when the database is not at this version's revision.",
    )
    return parser


if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def _command(commands: Subcommands, name: str, summary: str, details: str) -> Any:
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}"
                               f"{summary[1:]}. {details}")  # fmt: skip


def _add_conversations(commands: Subcommands) -> None:
    parser = _command(
        commands,
        "conversations",
        "list or forget stored conversations",
        "The Dify conversation each user, thread or channel continues in.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _command(
        actions,
        "list",
        "stored conversations, most recently used first",
        "Filters combine; --json prints every field.",
    )
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    reset = _command(
        actions,
        "reset",
        "forget conversations: their next message starts anew",
        "Asks first unless --yes; with no filter, forgets every conversation.",
    )
    _add_filters(reset)
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", choices=PLATFORM_NAMES, help="one platform's conversations")
    parser.add_argument("--workspace", help="Slack team id, WeChat app id, WeCom corp or bot id")
    parser.add_argument("--app", help="the route name of the Dify app (default: every app)")
    parser.add_argument("--user", help="a platform user id (their DMs and slash commands)")
    parser.add_argument("--channel", help="a channel id (the channel and its threads)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from difybot.startup import funnel

    return funnel(lambda: _start(args), as_json=getattr(args, "json", False))


def _start(args: argparse.Namespace) -> int:
    from bot.ops.logs import setup_logging
    from difybot.config import load_database_settings, load_settings

    if args.command in ("db", "conversations"):  # no Dify key needed for these
        database = load_database_settings()
        setup_logging(database.log_level if args.command == "db" else "WARNING", [])
        _warn_about(database.notices())
        return asyncio.run(_database(args, database.database_url))
    settings = load_settings()
    level = settings.log_level if args.command == "serve" else "WARNING"
    secrets = _secrets(settings)
    setup_logging(level, secrets, fmt=settings.log_format)
    _warn_about(settings.notices())
    if args.command == "chat" and sys.stdin.isatty() and sys.stdout.isatty():
        # The chat's screen is the user's: warnings go to a file, not between the answers.
        setup_logging(level, secrets, fmt=settings.log_format, path=chat_log())
    return asyncio.run(_run(args, settings))


def chat_log() -> Path:
    from platformdirs import user_log_path

    return user_log_path("difybot", appauthor=False) / "chat.log"


def _warn_about(notices: list[str]) -> None:
    """Settings that load but look like a mistake (a misspelt name in .env): one line each."""
    import logging

    for notice in notices:
        logging.getLogger("difybot.config").warning("%s", notice)


def _secrets(settings: Settings) -> list[str]:
    """Every secret to scrub from logs: the settings' and the routed apps' keys."""
    from bot.errors import ConfigError
    from difybot.config import load_routes

    try:
        routed = [spec.api_key for spec in load_routes(settings).extra_apps]
    except ConfigError:
        routed = []  # serve reports the routes file; check shows it as a failed line
    return [*settings.secrets(), *routed]


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command
    if command == "check":
        from difybot.admin import check_command, make_console

        return await check_command(settings, as_json=args.json, out=make_console())
    if command == "serve":
        from difybot.serve import serve

        await serve(settings)
        return 0
    from difybot.chat import chat

    return await chat(settings)


async def _database(args: argparse.Namespace, url: str) -> int:
    from storage.db import create_engine, reach
    from storage.migrate import current_revision, head_revision, upgrade
    from storage.units import Database

    db = Database(create_engine(url))
    engine = db.engine
    try:
        await reach(engine)
        if args.command == "conversations":
            return await _conversations(args, db)
        if args.db == "upgrade":
            before, after = await upgrade(engine)
            was = f" (was {before or 'empty'})" if before != after else ""
            print(f"database at {after}{was}")
            return 0
        current, head = await current_revision(engine), head_revision()
        print(f"database: {current or 'empty'}, this version: {head}")
        return 0 if current == head else 1
    finally:
        await db.close()


async def _conversations(args: argparse.Namespace, db: Database) -> int:
    from difybot.admin import list_command, make_console, reset_command
    from storage.conversations import ConversationStore
    from storage.migrate import ensure_schema

    await ensure_schema(db.engine, auto_migrate=False)  # an old schema: say `db upgrade` first
    store = ConversationStore(db)
    run = list_command if args.action == "list" else reset_command
    return await run(store, args, out=make_console())


if __name__ == "__main__":
    sys.exit(main())
