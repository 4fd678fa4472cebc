"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "access_tokens",
        sa.Column("name", sa.String(length=191), nullable=False),
        sa.Column("token", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_access_tokens")),
    )
    op.create_table(
        "conversations",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("workspace", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=256), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("dify_user", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_platform_workspace", ["platform", "workspace"], unique=False
        )
        batch_op.create_index("ix_conversations_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(length=255), nullable=False),
        sa.Column("conversation_key", sa.String(length=512), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("reply_state", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("message_key", name=op.f("uq_inbound_messages_message_key")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbound_messages_conversation", ["conversation_key", "status", "id"], unique=False
        )
        batch_op.create_index("ix_inbound_messages_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_inbound_messages_status_lease", ["status", "lease_until"], unique=False
        )

    op.create_table(
        "wechat_answers",
        sa.Column("id", sa.String(length=191), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=191), nullable=True),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("pushes", sa.Integer(), nullable=False),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("handoff", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_answers")),
    )
    with op.batch_alter_table("wechat_answers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wechat_answers_account_user", ["account", "user_id"], unique=False
        )
        batch_op.create_index("ix_wechat_answers_created_at", ["created_at"], unique=False)

    op.create_table(
        "wecom_streams",
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("msg_id", sa.String(length=191), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("response_url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_wecom_streams")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_wecom_streams_msg_id")),
    )
    with op.batch_alter_table("wecom_streams", schema=None) as batch_op:
        batch_op.create_index("ix_wecom_streams_created_at", ["created_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("wecom_streams", schema=None) as batch_op:
        batch_op.drop_index("ix_wecom_streams_created_at")

    op.drop_table("wecom_streams")
    with op.batch_alter_table("wechat_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_wechat_answers_created_at")
        batch_op.drop_index("ix_wechat_answers_account_user")

    op.drop_table("wechat_answers")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_status_lease")
        batch_op.drop_index("ix_inbound_messages_created_at")
        batch_op.drop_index("ix_inbound_messages_conversation")

    op.drop_table("inbound_messages")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_updated_at")
        batch_op.drop_index("ix_conversations_platform_workspace")

    op.drop_table("conversations")
    op.drop_table("access_tokens")
