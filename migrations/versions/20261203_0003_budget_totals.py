"""budget totals: running points on keys and batches, each job's hold

Revision ID: 20261203_0003
Revises: 20261203_0002
Create Date: 2026-12-03 09:00:00

The totals are filled from the rows present: a job holds its cost when known, else its estimate
when it reached (or may have reached) MetaChat, else nothing. Jobs pruned before this revision
are not in the totals: nothing is left to count them from.
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_0003"
down_revision: str | None = "20261203_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSETTLED = (
    "(cost_points IS NOT NULL AND cost_points <> points_held) OR (points_held <> 0 "
    "AND status = 'failed' AND upstream_task_id IS NULL "
    "AND COALESCE(error_code, '') NOT IN ('submit_uncertain', 'invalid_upstream_response'))"
)
COSTED = "cost_points IS NOT NULL"

# What a job held under the rules of core/budget.py, from its row alone.
HELD = """
CASE
  WHEN cost_points IS NOT NULL THEN cost_points
  WHEN upstream_task_id IS NOT NULL
    OR status IN ('running', 'timed_out')
    OR error_code IN ('submit_uncertain', 'invalid_upstream_response')
    OR (status = 'queued' AND lease_owner IS NOT NULL)
  THEN COALESCE(estimated_points, 0)
  ELSE 0
END
"""


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("points_committed", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "api_keys", sa.Column("points_today", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("api_keys", sa.Column("points_day", sa.Date(), nullable=True))
    op.add_column(
        "batches",
        sa.Column("points_committed", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "jobs", sa.Column("points_held", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("points_held_on", sa.Date(), nullable=True))
    _backfill()
    op.create_index(
        "ix_jobs_points_unsettled",
        "jobs",
        ["api_key_id"],
        unique=False,
        postgresql_where=sa.text(UNSETTLED),
        sqlite_where=sa.text(UNSETTLED),
    )
    op.create_index(
        "ix_jobs_costed_model_finished_at",
        "jobs",
        ["model", "finished_at"],
        unique=False,
        postgresql_where=sa.text(COSTED),
        sqlite_where=sa.text(COSTED),
    )


def _backfill() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        day_of = "(COALESCE(submitted_at, created_at) AT TIME ZONE 'UTC')::date"
    else:  # SQLite keeps naive UTC text
        day_of = "date(COALESCE(submitted_at, created_at))"
    op.execute(f"UPDATE jobs SET points_held = {HELD}")
    op.execute(f"UPDATE jobs SET points_held_on = {day_of} WHERE points_held <> 0")
    today = dt.datetime.now(dt.UTC).date()
    bind.execute(
        sa.text(
            "UPDATE api_keys SET points_day = :today, "
            "points_committed = COALESCE((SELECT SUM(points_held) FROM jobs "
            "  WHERE jobs.api_key_id = api_keys.id), 0), "
            "points_today = COALESCE((SELECT SUM(points_held) FROM jobs "
            "  WHERE jobs.api_key_id = api_keys.id AND jobs.points_held_on = :today), 0)"
        ).bindparams(sa.bindparam("today", today, type_=sa.Date()))
    )
    op.execute(
        "UPDATE batches SET points_committed = COALESCE((SELECT SUM(points_held) FROM jobs "
        "WHERE jobs.batch_id = batches.id), 0)"
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_costed_model_finished_at", table_name="jobs")
    op.drop_index("ix_jobs_points_unsettled", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("points_held_on")
        batch.drop_column("points_held")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("points_committed")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("points_day")
        batch.drop_column("points_today")
        batch.drop_column("points_committed")
