"""one delivery path: WeChat and WeCom delivery state moves into the journal

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

The Official Account's answers and the WeCom AI bot's streams were kept in tables of their own;
their state is now the journal entry's reply state, so every platform's messages are recorded,
leased, taken over and finished the same way. What the old tables held is delivery state of
answers in flight (minutes); it is not carried over.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("place", sa.String(length=512), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("keep_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_inbound_messages_place", ["place", "id"], unique=False)
    with op.batch_alter_table("wecom_streams", schema=None) as batch_op:
        batch_op.drop_index("ix_wecom_streams_created_at")
    op.drop_table("wecom_streams")
    with op.batch_alter_table("wechat_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_wechat_answers_created_at")
        batch_op.drop_index("ix_wechat_answers_account_user")
    op.drop_table("wechat_answers")


def downgrade() -> None:
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
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_place")
        batch_op.drop_column("keep_until")
        batch_op.drop_column("place")
