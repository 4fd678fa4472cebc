"""Pending Human Input forms: the ``pending_forms`` table, shared by every replica.

A submit is done once across replicas: ``claim`` is one conditional UPDATE (``open`` →
``claimed``), and only the caller whose UPDATE changed the row goes on to Dify.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from bot.stores import PendingForm
from storage.tables import pending_forms as t
from storage.units import Database

KEEP_SETTLED = 86_400.0  # seconds an answered or expired form stays (a late click is told so)


class FormStore:
    """Implements ``bot.stores.FormStore``. ``clock`` returns Unix seconds."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._units = db.units
        self._clock = clock

    async def add(self, form: PendingForm) -> None:
        now = self._now()
        values = {
            "ref": form.ref,
            "token": form.token,
            "app": form.app,
            "platform": form.platform,
            "conversation_key": form.conversation_key,
            "dify_user": form.dify_user,
            "workflow_run_id": form.workflow_run_id,
            "asker": form.asker,
            "native": form.native,
            "form": _dump(form.form),
            "message": _dump(form.message),
            "reply": _dump(form.where),
            "entry_id": form.entry_id,
            "shown": form.shown,
            "status": form.status,
            "inputs": _dump(form.inputs) if form.inputs is not None else None,
            "answered_by": form.answered_by,
            "expires_at": _at(form.expires_at),
            "created_at": now,
            "updated_at": now,
        }
        await self._units.run(lambda conn: conn.execute(insert(t), values).rowcount)
        await self.prune()

    async def get(self, ref: str) -> PendingForm | None:
        return await self._one(select(t).where(t.c.ref == ref))

    async def open_in(self, conversation_key: str) -> PendingForm | None:
        query = (
            select(t)
            .where(t.c.conversation_key == conversation_key, t.c.status == "open")
            .where(t.c.native.is_(False))
            .order_by(t.c.created_at.desc())
            .limit(1)
        )
        return await self._one(query)

    async def answered(self, entry_id: int) -> PendingForm | None:
        return await self._one(select(t).where(t.c.answered_by == str(entry_id)))

    async def claim(self, ref: str, *, by: str) -> bool:
        statement = (
            update(t)
            .where(t.c.ref == ref, t.c.status == "open")
            .values(status="claimed", answered_by=by, updated_at=self._now())
        )
        changed = await self._units.run(lambda conn: conn.execute(statement).rowcount)
        return bool(changed)

    async def settle(self, ref: str, status: str, *, inputs: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": self._now()}
        if status == "open":
            values["answered_by"] = ""
        if inputs is not None:
            values["inputs"] = _dump(inputs)
        statement = update(t).where(t.c.ref == ref).values(**values)
        await self._units.run(lambda conn: conn.execute(statement).rowcount)

    async def gather(self, ref: str, inputs: dict[str, Any], *, native: bool | None = None) -> None:
        values: dict[str, Any] = {"inputs": _dump(inputs), "updated_at": self._now()}
        if native is not None:
            values["native"] = native
        statement = update(t).where(t.c.ref == ref).values(**values)
        await self._units.run(lambda conn: conn.execute(statement).rowcount)

    async def prune(self) -> int:
        """Forget forms answered or expired a day ago, and open ones a day past their expiry."""
        cutoff = self._now() - timedelta(seconds=KEEP_SETTLED)
        statement = delete(t).where(
            ((t.c.status != "open") & (t.c.updated_at < cutoff)) | (t.c.expires_at < cutoff)
        )
        return await self._units.run(lambda conn: conn.execute(statement).rowcount)

    async def _one(self, query: Any) -> PendingForm | None:
        row = await self._units.run(lambda conn: conn.execute(query).mappings().first())
        return None if row is None else _form(row)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _form(row: Any) -> PendingForm:
    inputs = row["inputs"]
    expires = row["expires_at"]
    return PendingForm(
        ref=row["ref"],
        token=row["token"],
        app=row["app"],
        platform=row["platform"],
        conversation_key=row["conversation_key"],
        dify_user=row["dify_user"],
        workflow_run_id=row["workflow_run_id"],
        asker=row["asker"],
        native=bool(row["native"]),
        form=orjson.loads(row["form"]),
        message=orjson.loads(row["message"]),
        where=orjson.loads(row["reply"]),
        entry_id=int(row["entry_id"]),
        shown=row["shown"],
        status=row["status"],
        inputs=orjson.loads(inputs) if inputs else None,
        expires_at=expires.timestamp() if expires is not None else None,
        answered_by=row["answered_by"],
    )
