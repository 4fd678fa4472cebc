"""The admin commands' terminal side: ``check`` and ``conversations list|reset``, shown with rich
(or as JSON with ``--json``), with a spinner while they work and a confirmation before a reset."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Column, Table

from adapters.spec import Check
from difybot.checks import run_checks
from difybot.config import CoreSettings
from storage.conversations import ConversationStore, StoredConversation

FILTERS = ("platform", "workspace", "app", "user", "channel")
UNLIMITED_WIDTH = 10_000  # columns: a piped table is never wrapped


def make_console(*, stderr: bool = False) -> Console:
    """Soft wrap: a line is one record however narrow the terminal (or pipe) is."""
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


@contextmanager
def working(console: Console, text: str, *, quiet: bool) -> Iterator[None]:
    """A spinner on a terminal while a long operation runs; nothing when piped or --json."""
    status = console.status(text) if console.is_terminal and not quiet else nullcontext()
    with status:
        yield


async def check_command(settings: CoreSettings, *, as_json: bool, out: Console) -> int:
    """One line per check; exit 1 when any failed."""
    with working(make_console(stderr=True), "Checking every configured service…", quiet=as_json):
        checks = await run_checks(settings)
    ok = all(check.ok for check in checks)
    if as_json:
        out.print_json(json.dumps({"ok": ok, "checks": [c.to_json() for c in checks]}))
    else:
        for check in checks:
            out.print(to_line(check))
    return 0 if ok else 1


def to_line(check: Check) -> str:
    if check.ok:
        return f"[green]✓[/green] {escape(check.name)}: {escape(check.detail)}"
    fix = f" [yellow]→ fix:[/yellow] {escape(check.fix)}" if check.fix else ""
    return f"[red]✗[/red] {escape(check.name)}: {escape(check.detail)}{fix}"


def filters_of(args: argparse.Namespace) -> dict[str, str | None]:
    return {name: getattr(args, name) for name in FILTERS}


async def list_command(store: ConversationStore, args: argparse.Namespace, *, out: Console) -> int:
    rows = await store.list(limit=args.limit, **filters_of(args))
    if args.json:
        out.print_json(json.dumps([to_json(row) for row in rows]))
        return 0
    if not rows:
        out.print("no stored conversation matches")
        return 0
    # Ids are copied into other commands: never cut one (the other columns give way on a narrow
    # terminal); piped, the table is as wide as its longest row, not rich's default 80 columns.
    short = [Column(name, no_wrap=True) for name in ("app", "platform", "workspace", "scope")]
    widths = {"id": max(len(r.scope_id) for r in rows),
              "Dify conversation": max(len(r.conversation_id) for r in rows)}  # fmt: skip
    ids = [Column(name, no_wrap=True, min_width=width) for name, width in widths.items()]
    table = Table(*short, *ids, Column("last used", no_wrap=True))
    if not out.is_terminal:
        out.width = UNLIMITED_WIDTH
    for row in rows:
        used = row.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
        table.add_row(row.app, row.platform, row.workspace, row.scope.value, row.scope_id,
                      row.conversation_id, used)  # fmt: skip
    out.print(table)
    return 0


async def reset_command(store: ConversationStore, args: argparse.Namespace, *, out: Console) -> int:
    """Forget the matching conversations (their next message starts a new one), after a yes."""
    filters = filters_of(args)
    count = await store.count(**filters)
    if count and not args.yes and not _confirmed(count, filters, out):
        out.print("nothing forgotten")
        return 1
    with working(
        make_console(stderr=True), f"Forgetting {count} conversation(s)…", quiet=args.json
    ):
        deleted = await store.delete_where(**filters) if count else 0
    if args.json:
        out.print_json(json.dumps({"deleted": deleted}))
    else:
        out.print(f"forgot {deleted} conversation(s); their next message starts a new one")
    return 0


def _confirmed(count: int, filters: dict[str, str | None], out: Console) -> bool:
    given = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "no filter: ALL"
    question = f"Forget {count} stored conversation(s) ({escape(given)})?"
    try:
        return Confirm.ask(question, console=out, default=False)
    except EOFError:  # no answer (stdin closed): no
        return False


def to_json(row: StoredConversation) -> dict[str, Any]:
    return {
        "app": row.app,
        "platform": row.platform,
        "workspace": row.workspace,
        "scope": row.scope.value,
        "scope_id": row.scope_id,
        "conversation_id": row.conversation_id,
        "dify_user": row.dify_user,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
