"""submit trail in the jobs row

Revision ID: 20261203_0002
Revises: 20261201_0001
Create Date: 2026-12-03 09:00:00

A worker marks a round of submits as sent in the database just before the requests leave, so
crash recovery tells "never left" from "maybe sent" without anything outside the database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_0002"
down_revision: str | None = "20261201_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("submit_sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("submit_sent_at")
