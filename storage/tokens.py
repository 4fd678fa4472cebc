"""Platform access tokens shared by every replica: the ``access_tokens`` table."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, select

from bot.stores import StoredToken
from storage.db import insert_for
from storage.tables import access_tokens as t
from storage.units import Database

GET = select(t.c.token, t.c.expires_at).where(t.c.name == bindparam("name"))


class TokenStore:
    """Implements ``bot.stores.TokenStore``: one access token per name (``wechat:<appid>``,
    ``wecom:<corp>:<agent>``, ``feishu:<app id>`` ...).

    WeChat's ``/cgi-bin/token`` invalidates the previous token on every call, so replicas that
    each fetched their own would knock each other out (40001). Storing the token here means one
    fetch serves all of them; ``stable_token`` makes a rare double fetch harmless too.
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._units = db.units
        self._clock = clock
        insert = insert_for(db.engine)(t)
        self._upsert = insert.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={
                "token": insert.excluded.token,
                "expires_at": insert.excluded.expires_at,
                "updated_at": insert.excluded.updated_at,
            },
        )

    async def get(self, name: str) -> StoredToken | None:
        """The stored token, expired or not (the caller decides with its own margin)."""

        def read(conn: Connection) -> StoredToken | None:
            row = conn.execute(GET, {"name": name}).first()
            return None if row is None else StoredToken(row.token, row.expires_at.timestamp())

        return await self._units.run(read)

    async def put(self, name: str, token: str, *, expires_at: float) -> None:
        """Store ``token`` for ``name``; the last writer wins (any fresh token is good)."""
        values = {
            "name": name,
            "token": token,
            "expires_at": datetime.fromtimestamp(expires_at, UTC),
            "updated_at": datetime.fromtimestamp(self._clock(), UTC),
        }
        await self._units.run(lambda conn: conn.execute(self._upsert, values).rowcount)

    async def discard(self, name: str, token: str) -> None:
        """Forget ``token`` if it is still the stored one (a replica may have replaced it)."""
        statement = delete(t).where(t.c.name == name, t.c.token == token)
        await self._units.run(lambda conn: conn.execute(statement).rowcount)
