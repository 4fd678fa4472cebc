"""delivery budgets: token buckets of rate-limited platform calls, shared by replicas

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

One row per platform/account/method[/channel] (bot/delivery/scheduler.py). Rows are small and
rewritten on every rate-limited call; they hold nothing that must survive (a lost row is a full
bucket), so the downgrade simply drops the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_budgets",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), server_default="0", nullable=False),
        sa.Column("granted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_delivery_budgets")),
    )
    with op.batch_alter_table("delivery_budgets", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_budgets_stamp", ["stamp"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_budgets", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_budgets_stamp")
    op.drop_table("delivery_budgets")
