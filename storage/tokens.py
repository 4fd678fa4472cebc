"""Platform access tokens shared by every replica: the ``access_tokens`` table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import insert_for
from storage.tables import access_tokens


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token and when it stops working (Unix seconds)."""

    token: str
    expires_at: float


class TokenStore:
    """Keeps one access token per name (``wechat:<appid>``, ``wecom:<corp>:<agent>``).

    WeChat's ``/cgi-bin/token`` invalidates the previous token on every call, so replicas that each
    fetched their own would knock each other out (40001). Storing the token here means one fetch
    serves all of them; ``stable_token`` makes a rare double fetch harmless too.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def get(self, name: str) -> StoredToken | None:
        """The stored token, expired or not (the caller decides with its own margin)."""
        query = select(access_tokens.c.token, access_tokens.c.expires_at).where(
            access_tokens.c.name == name
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredToken(token=row.token, expires_at=row.expires_at.timestamp())

    async def put(self, name: str, token: str, *, expires_at: float) -> None:
        """Store ``token`` for ``name``; the last writer wins (any fresh token is good)."""
        values = {
            "name": name,
            "token": token,
            "expires_at": datetime.fromtimestamp(expires_at, UTC),
            "updated_at": datetime.fromtimestamp(self._clock(), UTC),
        }
        insert = insert_for(self._engine)
        statement = insert(access_tokens).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[access_tokens.c.name],
            set_={
                "token": statement.excluded.token,
                "expires_at": statement.excluded.expires_at,
                "updated_at": statement.excluded.updated_at,
            },
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def discard(self, name: str, token: str) -> None:
        """Forget ``token`` if it is still the stored one (a replica may have replaced it)."""
        condition = (access_tokens.c.name == name) & (access_tokens.c.token == token)
        async with self._engine.begin() as conn:
            await conn.execute(delete(access_tokens).where(condition))
