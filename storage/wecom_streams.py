"""The WeCom AI bot's answers in progress: the ``wecom_streams`` table.

WeCom polls for a stream's newest content with refresh callbacks that may land on any replica,
so the text the answering replica has so far lives here, not in its memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import RowMapping, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import insert_for
from storage.tables import wecom_streams


@dataclass(frozen=True, slots=True)
class StoredStream:
    """One answer as WeCom's stream shows it."""

    stream_id: str
    msg_id: str
    content: str
    finished: bool
    response_url: str
    created_at: float


class StreamStore:
    """Stream state keyed by our stream id, unique per WeCom message id (retries join)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def open(
        self, msg_id: str, stream_id: str, *, response_url: str
    ) -> tuple[StoredStream, bool]:
        """The stream for ``msg_id``: a new one with ``stream_id`` (True), or the existing one."""
        now = self._now()
        values = {
            "stream_id": stream_id,
            "msg_id": msg_id,
            "content": "",
            "finished": False,
            "response_url": response_url,
            "created_at": now,
            "updated_at": now,
        }
        insert = insert_for(self._engine)
        statement = insert(wecom_streams).values(values).on_conflict_do_nothing()
        async with self._engine.begin() as conn:
            created = (await conn.execute(statement)).rowcount == 1
            query = select(wecom_streams).where(wecom_streams.c.msg_id == msg_id)
            row = (await conn.execute(query)).mappings().one()
        return _to_stream(row), created

    async def get(self, stream_id: str) -> StoredStream | None:
        query = select(wecom_streams).where(wecom_streams.c.stream_id == stream_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _to_stream(row)

    async def write(self, stream_id: str, content: str, *, finished: bool = False) -> None:
        """Replace the content; a finished stream is never changed again."""
        statement = (
            update(wecom_streams)
            .where(wecom_streams.c.stream_id == stream_id, wecom_streams.c.finished.is_(False))
            .values(content=content, finished=finished, updated_at=self._now())
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def prune(self, *, older_than: float) -> int:
        """Forget streams created more than ``older_than`` seconds ago; how many."""
        cutoff = datetime.fromtimestamp(self._clock() - older_than, UTC)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(wecom_streams).where(wecom_streams.c.created_at < cutoff)
            )
        return result.rowcount

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _to_stream(row: RowMapping) -> StoredStream:
    return StoredStream(
        stream_id=row["stream_id"],
        msg_id=row["msg_id"],
        content=row["content"],
        finished=bool(row["finished"]),
        response_url=row["response_url"],
        created_at=row["created_at"].timestamp(),
    )
