"""pending Human Input forms; the Dify run answering each journal entry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Forms a Dify run waits on, shown to a user: kept in the database so that a click works after a
restart and on any replica, and claimed by one conditional UPDATE so it is submitted once.
The journal keeps the Chatflow/Workflow run answering each message (and the text shown), so a
replica taking it over, or an answer whose stream was cut, reattaches to that run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_forms",
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("conversation_key", sa.String(length=512), nullable=False),
        sa.Column("dify_user", sa.String(length=255), nullable=False),
        sa.Column("workflow_run_id", sa.String(length=64), nullable=False),
        sa.Column("asker", sa.String(length=255), nullable=False),
        sa.Column("native", sa.Boolean(), nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("shown", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=64), server_default="", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_pending_forms")),
    )
    with op.batch_alter_table("pending_forms", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pending_forms_conversation", ["conversation_key", "status"], unique=False
        )
        batch_op.create_index("ix_pending_forms_updated_at", ["updated_at"], unique=False)
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dify_run", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("dify_run")
    with op.batch_alter_table("pending_forms", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_forms_updated_at")
        batch_op.drop_index("ix_pending_forms_conversation")
    op.drop_table("pending_forms")
