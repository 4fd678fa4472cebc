"""followed threads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "followed_threads",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_followed_threads")),
    )
    with op.batch_alter_table("followed_threads", schema=None) as batch_op:
        batch_op.create_index("ix_followed_threads_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("followed_threads", schema=None) as batch_op:
        batch_op.drop_index("ix_followed_threads_expires_at")

    op.drop_table("followed_threads")
