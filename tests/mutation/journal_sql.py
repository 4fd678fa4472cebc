"""Hand-made mutants of the journal's module-level SQL, which mutmut leaves alone.

The statements that make answers effectively-once (CLAIM, RENEW, NOT_OURS, FINISH, RELEASE...)
are built once at import, outside any function, so mutmut never changes them. Each mutant below
changes one clause of ``storage/journal.py`` as text; the script applies it to a copy of the tree,
runs the journal's tests there (stopping at the first failure) and counts the mutant killed if
they fail. A clean copy must pass first. A mutant whose text no longer matches the source fails
the script: update the list with the statements.

    .venv/bin/python -m tests.mutation.journal_sql             # the journal's tests
    .venv/bin/python -m tests.mutation.journal_sql --suite     # then survivors against all tests

PostgreSQL runs too when TEST_DATABASE_URL is set (mutants run one at a time, so one database is
enough).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = Path("storage/journal.py")
COPIED = ["difybot", "bot", "storage", "adapters", "tests", "pyproject.toml", "manifest.yml",
          "docker", ".env.example", ".dockerignore"]  # fmt: skip
# RELEASE and RELEASE_OWNED share their values; this tail names RELEASE alone.
_RELEASE_END = ' updated_at=bindparam("now"))\n)\nRELEASE_OWNED'
JOURNAL_TESTS = ["tests/test_journal.py", "tests/test_leasing.py", "tests/test_reliability.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    old: str
    new: str


def drop(name: str, line: str) -> Mutant:
    """A mutant that deletes one whole line (a condition or a value) of a statement."""
    return Mutant(name, line, "")


MUTANTS = [
    # _OPEN_BEFORE: an older message of the same conversation is still open
    drop(
        "order: any conversation holds", "    _older.c.conversation_key == t.c.conversation_key,\n"
    ),
    Mutant("order: a row holds itself", "_older.c.id < t.c.id", "_older.c.id <= t.c.id"),
    Mutant("order: newer rows hold older", "_older.c.id < t.c.id", "_older.c.id > t.c.id"),
    drop("order: finished rows hold", "    _older.c.status.in_(OPEN),\n"),
    # CLAIM
    Mutant(
        "claim: ids ignored", "        t.c.id.in_(_IDS),\n        t.c.status", "        t.c.status"
    ),
    Mutant("claim: finished rows", "        t.c.status.in_(OPEN),\n        or_(", "        or_("),
    drop("claim: no order", "        ~_OPEN_BEFORE,\n"),
    Mutant("claim: not its own owner", 'or_(t.c.owner == bindparam("me"), ', "or_("),
    Mutant(
        "claim: not a released row", "t.c.owner.is_(None), t.c.lease_until <", "t.c.lease_until <"
    ),
    Mutant("claim: not an expired lease", ', t.c.lease_until < bindparam("now")),', "),"),
    Mutant(
        "claim: live leases",
        't.c.lease_until < bindparam("now")',
        't.c.lease_until > bindparam("now")',
    ),
    Mutant(
        "claim: at the lease's last instant",
        't.c.lease_until < bindparam("now")',
        't.c.lease_until <= bindparam("now")',
    ),
    Mutant("claim: stays pending", 'status="running",', 'status="pending",'),
    drop("claim: owner kept", '        owner=bindparam("me"),\n'),
    drop("claim: lease not extended", '        lease_until=bindparam("until"),\n'),
    Mutant("claim: attempts not counted", "attempts=t.c.attempts + 1,", "attempts=t.c.attempts,"),
    # RENEW
    Mutant(
        "renew: ids ignored",
        '.where(t.c.id.in_(_IDS), t.c.owner == bindparam("me"), t.c.status',
        '.where(t.c.owner == bindparam("me"), t.c.status',
    ),
    Mutant(
        "renew: any owner",
        't.c.id.in_(_IDS), t.c.owner == bindparam("me"), t.c.status.in_(OPEN))\n    .values(lease',
        "t.c.id.in_(_IDS), t.c.status.in_(OPEN))\n    .values(lease",
    ),
    Mutant(
        "renew: finished rows",
        't.c.owner == bindparam("me"), t.c.status.in_(OPEN))\n    .values(lease',
        't.c.owner == bindparam("me"))\n    .values(lease',
    ),
    Mutant(
        "renew: lease not extended",
        '.values(lease_until=bindparam("until"), updated_at',
        ".values(updated_at",
    ),
    # NOT_OURS
    Mutant("not_ours: ids ignored", "    t.c.id.in_(_IDS), or_(~t.c.status", "    or_(~t.c.status"),
    Mutant(
        "not_ours: finished not named",
        'or_(~t.c.status.in_(OPEN), t.c.owner != bindparam("me"))',
        't.c.owner != bindparam("me")',
    ),
    Mutant(
        "not_ours: taken not named",
        'or_(~t.c.status.in_(OPEN), t.c.owner != bindparam("me"))',
        "~t.c.status.in_(OPEN)",
    ),
    Mutant(
        "not_ours: both needed",
        'or_(~t.c.status.in_(OPEN), t.c.owner != bindparam("me"))',
        'and_(~t.c.status.in_(OPEN), t.c.owner != bindparam("me"))',
    ),
    Mutant(
        "not_ours: open rows named",
        "or_(~t.c.status.in_(OPEN), t.c.owner !=",
        "or_(t.c.status.in_(OPEN), t.c.owner !=",
    ),
    # FINISH
    Mutant(
        "finish: any owner",
        '.where(t.c.id == bindparam("entry"), t.c.owner == bindparam("me"))\n',
        '.where(t.c.id == bindparam("entry"))\n',
    ),
    Mutant(
        "finish: lease kept",
        'status=bindparam("outcome"), lease_until=None,',
        'status=bindparam("outcome"),',
    ),
    Mutant("finish: always done", 'status=bindparam("outcome")', 'status="done"'),
    Mutant(
        "finish: time not stamped",
        'lease_until=None, updated_at=bindparam("now"))\n)\nRELEASE = (',
        "lease_until=None)\n)\nRELEASE = (",
    ),
    # RELEASE
    Mutant(
        "release: any owner",
        't.c.id == bindparam("entry"), t.c.owner == bindparam("me"), t.c.status',
        't.c.id == bindparam("entry"), t.c.status',
    ),
    Mutant(
        "release: finished rows",
        'bindparam("me"), t.c.status.in_(OPEN))\n'
        '    .values(status="pending", owner=None, lease_until=None,' + _RELEASE_END,
        'bindparam("me"))\n    .values(status="pending", owner=None, lease_until=None,'
        + _RELEASE_END,
    ),
    Mutant(
        "release: still running",
        '.values(status="pending", owner=None, lease_until=None,' + _RELEASE_END,
        ".values(owner=None, lease_until=None," + _RELEASE_END,
    ),
    Mutant(
        "release: owner kept",
        'status="pending", owner=None, lease_until=None,' + _RELEASE_END,
        'status="pending", lease_until=None,' + _RELEASE_END,
    ),
    Mutant(
        "release: lease kept",
        "owner=None, lease_until=None," + _RELEASE_END,
        "owner=None," + _RELEASE_END,
    ),
    # SAVE_STATE, KNOWN
    Mutant(
        "save state: every row",
        'SAVE_STATE = update(t).where(t.c.id == bindparam("entry"))',
        "SAVE_STATE = update(t)",
    ),
    Mutant(
        "known: another key",
        't.c.message_key == bindparam("key")',
        't.c.message_key != bindparam("key")',
    ),
]


def mutated(source: str, mutant: Mutant) -> str:
    count = source.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name!r}: its text occurs {count} times in {MODULE}")
    return source.replace(mutant.old, mutant.new)


def copy_tree(target: Path) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", ".hypothesis")
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)


def run_tests(tree: Path, tests: list[str]) -> tuple[bool, str]:
    """(passed, the first failing test or ''), running the copy's code, not the checkout's."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    failed = [
        line.split()[1] for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))
    ]
    return done.returncode == 0, failed[0] if failed else ""


def check_isolation(tree: Path) -> None:
    """The copy, not the installed checkout, must be what the tests import."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    probe = "import storage.journal as j; print(j.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=tree, env=env, capture_output=True, text=True
    )
    if not where.stdout.strip().startswith(str(tree)):
        raise SystemExit(f"the tests would import {where.stdout.strip()}, not the mutated copy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", nargs="+", default=JOURNAL_TESTS, help="what to run per mutant")
    parser.add_argument("--suite", action="store_true", help="run survivors against every test")
    parser.add_argument("--only", help="run the mutants whose name contains this")
    args = parser.parse_args()
    source = (REPO / MODULE).read_text(encoding="utf-8")
    mutants = [m for m in MUTANTS if not args.only or args.only in m.name]
    for mutant in mutants:
        mutated(source, mutant)  # every mutant still matches the source, before any run
    backends = "SQLite and PostgreSQL" if os.environ.get("TEST_DATABASE_URL") else "SQLite"
    tests = " ".join(args.tests)
    print(f"{len(mutants)} mutants of {MODULE}'s statements; tests: {tests} ({backends})")
    with tempfile.TemporaryDirectory(prefix="journal-sql-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        check_isolation(tree)
        passed, first = run_tests(tree, args.tests)
        if not passed:
            raise SystemExit(f"the unmutated copy fails its tests ({first}): fix that first")
        survivors = run_all(tree, source, mutants, args.tests)
        if args.suite and survivors:
            print(f"\n{len(survivors)} survivors against the whole suite:")
            survivors = run_all(tree, source, survivors, ["tests"])
        (tree / MODULE).write_text(source, encoding="utf-8")
    killed = len(mutants) - len(survivors)
    print(f"\nkilled {killed} of {len(mutants)}: {100 * killed / len(mutants):.0f} %")
    for mutant in survivors:
        print(f"  survived: {mutant.name}")


def run_all(tree: Path, source: str, mutants: list[Mutant], tests: list[str]) -> list[Mutant]:
    survivors = []
    for mutant in mutants:
        (tree / MODULE).write_text(mutated(source, mutant), encoding="utf-8")
        started = time.monotonic()
        passed, first = run_tests(tree, tests)
        took = time.monotonic() - started
        verdict = "SURVIVED" if passed else f"killed by {first}"
        print(f"  {mutant.name:<40} {took:5.1f} s  {verdict}", flush=True)
        if passed:
            survivors.append(mutant)
    return survivors


if __name__ == "__main__":
    main()
