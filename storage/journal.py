"""The inbound journal: platform messages recorded before the ack, deduplicated, leased, ordered.

A row is written (``record``) before the platform is acknowledged; its unique ``message_key``
turns every redelivery (platform retries, a second replica receiving the same event) into a
no-op. A replica answers a row only after ``claim`` gives it the lease, which it renews while
answering; ``claim`` refuses while an older message of the same conversation is unfinished, so a
conversation's messages are answered in arrival order on any replica, and the first message of a
new conversation can never race a second one into a fork. A replica that dies leaves a lease that
expires; ``orphans`` lists those rows so another replica can claim them and finish the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from bot.stores import JournalEntry, State, StateChange
from storage.db import insert_for
from storage.tables import inbound_messages as t
from storage.units import Database

OPEN = ("pending", "running")


_older = aliased(t)
_OPEN_BEFORE = exists().where(  # an older message of the same conversation is still open
    _older.c.conversation_key == t.c.conversation_key,
    _older.c.id < t.c.id,
    _older.c.status.in_(OPEN),
)
# Built once: the hot statements only take parameters (building one costs more than running it).
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
CLAIM = (
    update(t)
    .where(
        t.c.id.in_(_IDS),
        t.c.status.in_(OPEN),
        or_(t.c.owner == bindparam("me"), t.c.owner.is_(None), t.c.lease_until < bindparam("now")),
        ~_OPEN_BEFORE,
    )
    .values(
        status="running",
        owner=bindparam("me"),
        lease_until=bindparam("until"),
        attempts=t.c.attempts + 1,
        updated_at=bindparam("now"),
    )
    .returning(t.c.id)
)
RENEW = (
    update(t)
    .where(t.c.id.in_(_IDS), t.c.owner == bindparam("me"), t.c.status.in_(OPEN))
    .values(lease_until=bindparam("until"), updated_at=bindparam("now"))
    .returning(t.c.id)
)
NOT_OURS = select(t.c.id).where(
    t.c.id.in_(_IDS), or_(~t.c.status.in_(OPEN), t.c.owner != bindparam("me"))
)
FINISH = (
    update(t)
    .where(t.c.id == bindparam("entry"), t.c.owner == bindparam("me"))
    .values(status=bindparam("outcome"), lease_until=None, updated_at=bindparam("now"))
)
RELEASE = (
    update(t)
    .where(t.c.id == bindparam("entry"), t.c.owner == bindparam("me"), t.c.status.in_(OPEN))
    .values(status="pending", owner=None, lease_until=None, updated_at=bindparam("now"))
)
RELEASE_OWNED = (
    update(t)
    .where(t.c.owner == bindparam("me"), t.c.status.in_(OPEN))
    .values(status="pending", owner=None, lease_until=None, updated_at=bindparam("now"))
)
SAVE_STATE = update(t).where(t.c.id == bindparam("entry")).values(reply_state=bindparam("state"))
SAVE_RUN = update(t).where(t.c.id == bindparam("entry")).values(dify_run=bindparam("run"))
MARK_SHOWN = update(t).where(t.c.id == bindparam("entry")).values(shown=True)
KNOWN = select(t.c.id).where(t.c.message_key == bindparam("key"))
STATE = select(t.c.reply_state).where(t.c.id == bindparam("entry"))
KEEP = update(t).where(t.c.id == bindparam("entry")).values(keep_until=bindparam("until"))


class Journal:
    """Implements ``bot.stores.Journal`` and ``bot.stores.ReplyStates``. ``clock`` returns Unix
    seconds; ``lease`` is how long a replica may stay silent."""

    def __init__(
        self, db: Database, *, lease: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._units = db.units
        self.lease = lease
        self._clock = clock
        insert = insert_for(db.engine)(t)
        self._record = insert.on_conflict_do_nothing(index_elements=[t.c.message_key]).returning(
            t.c.id
        )

    async def record(
        self,
        message_key: str,
        *,
        conversation_key: str,
        platform: str,
        message: dict[str, Any],
        reply: dict[str, Any],
        owner: str,
        place: str = "",
        done: bool = False,
    ) -> tuple[int, bool]:
        """Write the message unless its key is known; (row id, True if it was new). ``done``:
        recorded only so that its redeliveries are dropped (nobody answers it)."""
        now = self._now()
        values = {
            "message_key": message_key,
            "conversation_key": conversation_key,
            "platform": platform,
            "message": _dump(message),
            "reply": _dump(reply),
            "status": "done" if done else "pending",
            "owner": owner,
            "lease_until": None if done else now + timedelta(seconds=self.lease),
            "attempts": 0,
            "place": place,
            "created_at": now,
            "updated_at": now,
        }

        def record(conn: Connection) -> tuple[int, bool]:
            inserted = conn.execute(self._record, values).scalar()
            if inserted is not None:
                return int(inserted), True
            return int(conn.execute(KNOWN, {"key": message_key}).scalar_one()), False

        return await self._units.run(record)

    async def claim(self, entry_id: int, owner: str) -> bool:
        """Take (or keep) the lease, if the row is open, its lease is ours or expired, and no
        older message of its conversation is still open."""
        return entry_id in await self.claim_many([entry_id], owner)

    async def claim_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """``claim`` for many rows in one statement; the ids now running under ``owner``."""
        return await self._ids(CLAIM, entry_ids, owner)

    async def renew(self, entry_id: int, owner: str) -> bool:
        """Extend our lease (running or waiting); False if the row is no longer ours."""
        return entry_id in await self.renew_many([entry_id], owner)

    async def renew_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """Extend our leases in one statement; the ids that are still ours."""
        return await self._ids(RENEW, entry_ids, owner)

    async def not_ours(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        """Of these ids, the ones finished or taken by another replica."""
        return await self._ids(NOT_OURS, entry_ids, owner)

    async def finish(self, entry_id: int, owner: str, *, failed: bool = False) -> None:
        outcome = "failed" if failed else "done"
        params = {"entry": entry_id, "me": owner, "outcome": outcome, "now": self._now()}
        await self._units.run(lambda conn: conn.execute(FINISH, params).rowcount)

    async def release(self, entry_id: int, owner: str) -> None:
        """Give the message back (shutdown): another replica may take it at once."""
        params = {"entry": entry_id, "me": owner, "now": self._now()}
        await self._units.run(lambda conn: conn.execute(RELEASE, params).rowcount)

    async def release_owned(self, owner: str) -> int:
        """Give back every open message ``owner`` holds: a replica that restarts under its old
        id does this before it takes any message, so what its last life left is answered at
        once (by whichever replica sweeps first) instead of after the leases run out."""
        params = {"me": owner, "now": self._now()}
        return await self._units.run(lambda conn: conn.execute(RELEASE_OWNED, params).rowcount)

    async def mark_shown(self, entry_id: int) -> None:
        """Some of the answer is on the user's screen: a replica taking over says it restarts."""
        await self._units.run(lambda conn: conn.execute(MARK_SHOWN, {"entry": entry_id}).rowcount)

    async def save_reply_state(self, entry_id: int, state: State) -> None:
        params = {"entry": entry_id, "state": _dump(state)}
        await self._units.run(lambda conn: conn.execute(SAVE_STATE, params).rowcount)

    async def save_run(self, entry_id: int, run: State) -> None:
        """The Dify run answering the entry, and the text shown so far (``bot.stores``)."""
        params = {"entry": entry_id, "run": _dump(run)}
        await self._units.run(lambda conn: conn.execute(SAVE_RUN, params).rowcount)

    async def get(self, entry_id: int) -> JournalEntry | None:
        query = select(t).where(t.c.id == entry_id)
        row = await self._units.run(lambda conn: conn.execute(query).mappings().first())
        return None if row is None else _entry(row)

    async def orphans(self, *, platforms: Iterable[str], limit: int = 100) -> list[JournalEntry]:
        """Open messages of ``platforms`` whose lease ran out (their replica died or let go),
        oldest first. Only platforms the caller can answer: another platform's orphans wait for
        a replica that runs it, and never fill this page."""
        now = self._now()
        query = (
            select(t)
            .where(t.c.status.in_(OPEN), or_(t.c.lease_until.is_(None), t.c.lease_until < now))
            .where(t.c.platform.in_(list(platforms)))
            .order_by(t.c.id)
            .limit(limit)
        )
        rows = await self._units.run(lambda conn: conn.execute(query).mappings().all())
        return [_entry(row) for row in rows]

    async def prune(self, *, older_than: float) -> int:
        """Forget finished messages older than ``older_than`` seconds (the dedup window), but
        not one kept longer (``keep``)."""
        cutoff = datetime.fromtimestamp(self._clock() - older_than, UTC)
        statement = delete(t).where(
            and_(~t.c.status.in_(OPEN), t.c.updated_at < cutoff),
            or_(t.c.keep_until.is_(None), t.c.keep_until < self._now()),
        )
        return await self._units.run(lambda conn: conn.execute(statement).rowcount)

    # ---- bot.stores.ReplyStates ----------------------------------------------------------------

    async def change(self, entry_id: int, change: StateChange) -> State | None:
        """Read, change and write the reply state in one transaction, the row locked (``FOR
        UPDATE`` on PostgreSQL; SQLite has one writer), so two replicas never both take the same
        part of an answer."""
        read = STATE.with_for_update()

        def apply(conn: Connection) -> State | None:
            stored = conn.execute(read, {"entry": entry_id}).scalar()
            state = change(orjson.loads(stored) if stored else None)
            conn.execute(SAVE_STATE, {"entry": entry_id, "state": _dump_state(state)})
            return state

        return await self._units.run(apply)

    async def recent(self, place: str, *, since: float) -> list[JournalEntry]:
        after = datetime.fromtimestamp(since, UTC)
        query = select(t).where(t.c.place == place, t.c.created_at > after).order_by(t.c.id)
        rows = await self._units.run(lambda conn: conn.execute(query).mappings().all())
        return [_entry(row) for row in rows]

    async def keep(self, entry_id: int, *, until: float) -> None:
        params = {"entry": entry_id, "until": datetime.fromtimestamp(until, UTC)}
        await self._units.run(lambda conn: conn.execute(KEEP, params).rowcount)

    async def _ids(self, statement: Any, entry_ids: Iterable[int], owner: str) -> set[int]:
        ids = list(entry_ids)
        if not ids:
            return set()
        now = self._now()
        params = {"ids": ids, "me": owner, "now": now, "until": now + timedelta(seconds=self.lease)}
        return await self._units.run(
            lambda conn: {int(i) for i in conn.execute(statement, params).scalars()}
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _dump_state(state: State | None) -> str | None:
    return None if state is None else _dump(state)


def _entry(row: Any) -> JournalEntry:
    state, run = row["reply_state"], row["dify_run"]
    return JournalEntry(
        id=int(row["id"]),
        message_key=row["message_key"],
        conversation_key=row["conversation_key"],
        platform=row["platform"],
        message=orjson.loads(row["message"]),
        reply=orjson.loads(row["reply"]),
        reply_state=orjson.loads(state) if state else None,
        run=orjson.loads(run) if run else None,
        status=row["status"],
        owner=row["owner"],
        attempts=int(row["attempts"]),
        shown=bool(row["shown"]),
        place=row["place"],
        created_at=row["created_at"].timestamp(),
        lease_until=row["lease_until"],
    )
