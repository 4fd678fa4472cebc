"""Which Dify conversation each chat place continues: the ``conversations`` table."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    true,
)

from bot.models import ConversationKey, Scope
from storage.db import insert_for
from storage.tables import conversations
from storage.units import Database

GET = select(conversations.c.conversation_id, conversations.c.updated_at).where(
    conversations.c.key == bindparam("key")
)


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """One row of the ``conversations`` table."""

    key: str
    app: str
    platform: str
    workspace: str
    scope: Scope
    scope_id: str
    conversation_id: str
    dify_user: str
    created_at: datetime
    updated_at: datetime


class ConversationStore:
    """Maps a ``ConversationKey`` to its Dify conversation id, shared by every replica.

    ``idle_expiry`` (seconds, 0 = never) forgets a conversation nobody used for that long, so the
    next message starts a fresh one. ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        db: Database,
        *,
        idle_expiry: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._units = db.units
        self._idle_expiry = idle_expiry
        self._clock = clock
        # INSERT .. ON CONFLICT is one atomic statement on both backends, so two replicas writing
        # the same key at once both succeed; a SELECT-then-INSERT would race on the primary key.
        insert = insert_for(db.engine)(conversations)
        self._upsert = insert.on_conflict_do_update(
            index_elements=[conversations.c.key],
            set_={
                "conversation_id": insert.excluded.conversation_id,
                "dify_user": insert.excluded.dify_user,
                "updated_at": insert.excluded.updated_at,
            },
        )

    async def get(self, key: ConversationKey) -> str | None:
        """The conversation id to continue, or None (none stored, or idle for too long)."""
        params = {"key": key.as_str()}
        row = await self._units.run(lambda conn: conn.execute(GET, params).mappings().first())
        if row is None:
            return None
        if not self._is_expired(row["updated_at"]):
            return str(row["conversation_id"])
        # Only delete what is still stale: another replica may have refreshed the row meanwhile.
        await self._delete(
            conversations.c.key == key.as_str(), conversations.c.updated_at < self._cutoff()
        )
        return None

    async def set(self, key: ConversationKey, conversation_id: str, *, dify_user: str) -> None:
        """Store ``conversation_id`` for ``key``; the last writer wins."""
        now = self._now()
        values = {
            "key": key.as_str(),
            "app": key.app,
            "platform": key.platform,
            "workspace": key.workspace,
            "scope": key.scope.value,
            "scope_id": key.scope_id,
            "conversation_id": conversation_id,
            "dify_user": dify_user,
            "created_at": now,
            "updated_at": now,
        }
        await self._units.run(lambda conn: conn.execute(self._upsert, values).rowcount)

    async def delete(self, key: ConversationKey) -> bool:
        """Forget ``key``; True if it was stored."""
        return await self._delete(conversations.c.key == key.as_str()) > 0

    async def list(
        self,
        *,
        platform: str | None = None,
        workspace: str | None = None,
        limit: int = 100,
        **people: str | None,
    ) -> builtins.list[StoredConversation]:
        """Stored conversations, most recently used first. ``people``: ``app``, ``user``,
        ``channel`` filters (see ``delete_where``)."""
        where = _matching(platform=platform, workspace=workspace, **people)
        query = (
            select(conversations)
            .where(where)
            .order_by(conversations.c.updated_at.desc(), conversations.c.key)
            .limit(limit)
        )
        rows = await self._units.run(lambda conn: conn.execute(query).mappings().all())
        return [to_stored(row) for row in rows]

    async def count(self, **filters: str | None) -> int:
        """How many conversations match every given filter (see ``delete_where``)."""
        query = select(func.count()).select_from(conversations).where(_matching(**filters))
        return int(await self._units.run(lambda conn: conn.execute(query).scalar_one()))

    async def delete_where(
        self,
        *,
        platform: str | None = None,
        workspace: str | None = None,
        scope_id: str | None = None,
        app: str | None = None,
        user: str | None = None,
        channel: str | None = None,
    ) -> int:
        """Forget every conversation matching all given filters (no filter: all); the count.

        ``user`` matches the conversations that user asks in (their own, and the ones Dify
        knows them as); ``channel`` the ones of that channel, its threads, and its per-user
        slash-command conversations."""
        return await self._delete(
            _matching(
                platform=platform,
                workspace=workspace,
                scope_id=scope_id,
                app=app,
                user=user,
                channel=channel,
            )
        )

    async def _delete(self, *conditions: ColumnElement[bool]) -> int:
        statement = delete(conversations).where(*conditions)
        return await self._units.run(lambda conn: conn.execute(statement).rowcount)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _cutoff(self) -> datetime:
        return datetime.fromtimestamp(self._clock() - self._idle_expiry, UTC)

    def _is_expired(self, updated_at: datetime) -> bool:
        return self._idle_expiry > 0 and updated_at < self._cutoff()


def _matching(
    *, user: str | None = None, channel: str | None = None, **columns: str | None
) -> ColumnElement[bool]:
    """Rows whose columns equal every filter that is not None, of that user and channel."""
    given = {name: value for name, value in columns.items() if value is not None}
    conditions = [conversations.c[name] == value for name, value in given.items()]
    scope_id, dify_user = conversations.c.scope_id, conversations.c.dify_user
    if user is not None:  # scope ids: "U1" (user), "U1@C1" (a user's /dify in a channel)
        conditions.append(
            or_(
                scope_id == user,
                scope_id.startswith(f"{user}@", autoescape=True),
                dify_user.endswith(f":{user}", autoescape=True),
            )
        )
    if channel is not None:  # scope ids: "C1" (channel), "C1:ts" (thread), "U1@C1"
        conditions.append(
            or_(
                scope_id == channel,
                scope_id.startswith(f"{channel}:", autoescape=True),
                scope_id.endswith(f"@{channel}", autoescape=True),
            )
        )
    return and_(true(), *conditions)


def to_stored(row: RowMapping) -> StoredConversation:
    return StoredConversation(
        key=row["key"],
        app=row["app"],
        platform=row["platform"],
        workspace=row["workspace"],
        scope=Scope(row["scope"]),
        scope_id=row["scope_id"],
        conversation_id=row["conversation_id"],
        dify_user=row["dify_user"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
