"""The replica registry: which process answers under each REPLICA_ID, known by its heartbeat.

REPLICA_ID is what the journal's leases are owned by, so a replica that restarts under the same
id can take back the answers it left at once instead of waiting for their leases to run out.
That is only safe if no live process uses the id too (two processes on one host share a host
name): each process beats every second; a process joining under an id whose last beat is older
than ``stale`` seconds takes the id (and its leftovers), one whose holder keeps beating runs
under a suffixed id of its own, like a new replica. A process that stops cleanly says so, so its
successor need not wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, select, update

from storage.db import insert_for
from storage.tables import replicas as t
from storage.units import Database

log = logging.getLogger(__name__)

STALE = 3.0  # seconds without a beat after which a process is taken for gone (it beats each 1 s)
_GONE = datetime.fromtimestamp(0, UTC)
_ROW = select(t.c.instance, t.c.seen_at).where(t.c.replica_id == bindparam("id"))
_BEAT = (
    update(t)
    .where(t.c.replica_id == bindparam("id"), t.c.instance == bindparam("me"))
    .values(seen_at=bindparam("now"))
)
_TAKE = (
    update(t)
    .where(
        t.c.replica_id == bindparam("id"),
        t.c.instance == bindparam("was"),
        t.c.seen_at == bindparam("seen"),
    )
    .values(instance=bindparam("me"), seen_at=bindparam("now"))
)


class Membership:
    """This process's place in the registry: ``replica_id`` to own leases under, ``returning``
    when the id was used before (what its journal entries still hold is ours to finish)."""

    def __init__(
        self, registry: ReplicaRegistry, replica_id: str, instance: str, *, returning: bool
    ) -> None:
        self._registry = registry
        self.replica_id = replica_id
        self.instance = instance
        self.returning = returning

    async def beat(self) -> bool:
        """False if another process has taken the id meanwhile (we were silent too long)."""
        return await self._registry.beat(self.replica_id, self.instance)

    async def leave(self) -> None:
        await self._registry.leave(self.replica_id, self.instance)


class ReplicaRegistry:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._units = db.units
        self._clock = clock
        self._sleep = sleep
        insert = insert_for(db.engine)(t)
        self._insert = insert.on_conflict_do_nothing(index_elements=[t.c.replica_id])

    async def join(self, replica_id: str, *, stale: float = STALE) -> Membership:
        """Run under ``replica_id`` once no live process holds it (waiting at most ``stale``
        seconds for a silent holder to count as gone), else under a suffixed id."""
        instance = uuid.uuid4().hex
        first: tuple[str, datetime] | None = None
        while True:
            row = await self._row(replica_id)
            if row is None:
                if await self._claim_new(replica_id, instance):
                    return Membership(self, replica_id, instance, returning=False)
                continue
            if self._clock() - row[1].timestamp() >= stale:
                if await self._take(replica_id, instance, row):
                    return Membership(self, replica_id, instance, returning=True)
                continue
            if first is not None and row != first:
                break  # its holder beats: a live process already runs under this id
            first = first or row
            await self._sleep(min(0.25, stale))
        own = f"{replica_id}-{instance[:8]}"
        log.warning(
            "REPLICA_ID %s is in use by a running process; this one runs as %s "
            "(give each replica its own REPLICA_ID)", replica_id, own,
        )  # fmt: skip
        await self._claim_new(own, instance)
        return Membership(self, own, instance, returning=False)

    async def beat(self, replica_id: str, instance: str) -> bool:
        params = {"id": replica_id, "me": instance, "now": self._at()}
        return bool(await self._units.run(lambda conn: conn.execute(_BEAT, params).rowcount))

    async def leave(self, replica_id: str, instance: str) -> None:
        params = {"id": replica_id, "me": instance, "now": _GONE}
        await self._units.run(lambda conn: conn.execute(_BEAT, params).rowcount)

    async def _row(self, replica_id: str) -> tuple[str, datetime] | None:
        def read(conn: Connection) -> tuple[str, datetime] | None:
            row = conn.execute(_ROW, {"id": replica_id}).first()
            return None if row is None else (str(row[0]), row[1])

        return await self._units.run(read)

    async def _claim_new(self, replica_id: str, instance: str) -> bool:
        values = {"replica_id": replica_id, "instance": instance, "seen_at": self._at()}
        return bool(await self._units.run(lambda conn: conn.execute(self._insert, values).rowcount))

    async def _take(self, replica_id: str, instance: str, was: tuple[str, datetime]) -> bool:
        params = {"id": replica_id, "was": was[0], "seen": was[1], "me": instance,
                  "now": self._at()}  # fmt: skip
        return bool(await self._units.run(lambda conn: conn.execute(_TAKE, params).rowcount))

    def _at(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
