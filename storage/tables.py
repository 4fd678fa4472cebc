"""Every table difybot stores, as SQLAlchemy Core definitions shared by the app and migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
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


# ---- platform access tokens --------------------------------------------------------------------

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("name", String(191), primary_key=True),  # e.g. "wechat:<appid>", "wecom:<corp>:<agent>"
    Column("token", String(1024), nullable=False),  # WeChat asks for >= 512 characters of room
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# ---- reliability: the inbound journal ----------------------------------------------------------

# Every platform message, recorded before the platform is acked: the unique message key dedups
# platform retries across replicas; the lease says which replica answers it and until when, so a
# surviving replica can finish the answer of one that died; the id orders a conversation's messages.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("message_key", String(255), nullable=False, unique=True),
    Column("conversation_key", String(512), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("message", Text(), nullable=False),  # JSON: the IncomingMessage
    Column("reply", Text(), nullable=False),  # JSON: the adapter's description of where to answer
    Column("reply_state", Text(), nullable=True),  # JSON: e.g. the partial answer's message id
    Column("status", String(16), nullable=False),  # pending | running | done | failed
    Column("owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("attempts", Integer(), nullable=False, default=0),
    # Some of the answer was shown to the user (a replica taking over says it starts again).
    Column("shown", Boolean(), nullable=False, default=False, server_default=false()),
    # The chat place (the conversation key without its app): a platform finds the answers it
    # still owes someone there (WeChat's "send any message to get it").
    Column("place", String(512), nullable=False, default="", server_default=""),
    # Kept past the dedup window until then: an answer its user has not fetched yet.
    Column("keep_until", UTCDateTime(), nullable=True),
    # JSON: the Chatflow/Workflow run answering it and the text shown so far: a taker (or a
    # cut stream) reattaches to that run instead of asking Dify again.
    Column("dify_run", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_inbound_messages_conversation", "conversation_key", "status", "id"),
    Index("ix_inbound_messages_place", "place", "id"),
    Index("ix_inbound_messages_status_lease", "status", "lease_until"),
    Index("ix_inbound_messages_created_at", "created_at"),
)


# Threads a chat adapter follows (answered in without a new mention), shared by every replica:
# a follow-up may reach any of them. The owner is the Dify user the thread's conversation uses.
followed_threads = Table(
    "followed_threads",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_followed_threads_expires_at", "expires_at"),
)


# Which process answers under each replica id (REPLICA_ID): a restarted replica takes its id back
# (and the answers it left) once its last process stopped beating; a live one keeps it.
replicas = Table(
    "replicas",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("instance", String(32), nullable=False),  # random per process
    Column("seen_at", UTCDateTime(), nullable=False),  # the last heartbeat
)


# ---- webhooks ----------------------------------------------------------------------------------

# Signed callbacks seen in the last minutes (a hash of scope, timestamp, nonce and signature):
# a replayed request is refused on every replica. Rows outlive the timestamp window, then go.
seen_callbacks = Table(
    "seen_callbacks",
    metadata,
    Column("key", String(64), primary_key=True),  # sha256 hex
    Column("seen_at", UTCDateTime(), nullable=False),
    Index("ix_seen_callbacks_seen_at", "seen_at"),
)


# ---- Human Input forms ---------------------------------------------------------------------------

# Forms shown to users and not yet answered (or just answered): a click reaches any replica, even
# after a restart; the status moves open -> claimed by one conditional UPDATE, so two replicas
# that get the same click submit it once. Rows go once their form expired or was answered.
pending_forms = Table(
    "pending_forms",
    metadata,
    Column("ref", String(32), primary_key=True),  # ours, in the platform's buttons
    Column("token", String(255), nullable=False),  # Dify's form token: never sent to a platform
    Column("app", String(64), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("conversation_key", String(512), nullable=False),
    Column("dify_user", String(255), nullable=False),
    Column("workflow_run_id", String(64), nullable=False),
    Column("asker", String(255), nullable=False),
    Column("native", Boolean(), nullable=False),
    Column("form", Text(), nullable=False),  # JSON: the FormRequest
    Column("message", Text(), nullable=False),  # JSON: the question (IncomingMessage)
    Column("reply", Text(), nullable=False),  # JSON: the adapter's ``where``
    Column("entry_id", Integer(), nullable=False),  # the journal entry whose reply shows it
    Column("shown", Text(), nullable=False),  # the answer text above the form
    Column("status", String(16), nullable=False),  # open | claimed | submitted | expired
    Column("inputs", Text(), nullable=True),  # JSON: the text fallback's fields so far
    Column("answered_by", String(64), nullable=False, default="", server_default=""),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_pending_forms_conversation", "conversation_key", "status"),
    Index("ix_pending_forms_updated_at", "updated_at"),
)


# ---- delivery budgets ----------------------------------------------------------------------------

# Token buckets of rate-limited platform calls, shared by every replica (bot/delivery/scheduler.py):
# one row per platform/account/method[/channel]. Times are Unix seconds (float): a take is one
# atomic INSERT ... ON CONFLICT DO UPDATE ... RETURNING on the row.
delivery_budgets = Table(
    "delivery_budgets",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("tokens", Float(), nullable=False),
    Column("stamp", Float(), nullable=False),  # when ``tokens`` was counted
    Column("blocked_until", Float(), nullable=False, server_default="0"),
    Column("granted", Boolean(), nullable=False, server_default=false()),  # the last take's
    Index("ix_delivery_budgets_stamp", "stamp"),
)
