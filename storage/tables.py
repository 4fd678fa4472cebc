"""Every table difybot stores, as SQLAlchemy Core definitions shared by the app and migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Dialect, Index, MetaData, String, Table
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic migrations can refer to (and drop) them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type: SQLAlchemy stores the wall-clock fields and reads them back naive.
    Converting to UTC on the way in and tagging UTC on the way out makes both backends agree, and
    keeps SQLite's text timestamps comparable in ``WHERE`` and ``ORDER BY``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


conversations = Table(
    "conversations",
    metadata,
    Column("key", String(512), primary_key=True),  # ConversationKey.as_str()
    Column("app", String(64), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("workspace", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("scope_id", String(256), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("dify_user", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_conversations_platform_workspace", "platform", "workspace"),
    Index("ix_conversations_updated_at", "updated_at"),
)
