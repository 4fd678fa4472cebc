"""replay memory, replica registry, shown answers

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_callbacks",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_callbacks")),
    )
    with op.batch_alter_table("seen_callbacks", schema=None) as batch_op:
        batch_op.create_index("ix_seen_callbacks_seen_at", ["seen_at"], unique=False)
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("replica_id", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shown", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("shown")
    op.drop_table("replicas")
    with op.batch_alter_table("seen_callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_seen_callbacks_seen_at")
    op.drop_table("seen_callbacks")
