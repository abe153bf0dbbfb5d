"""result files: outputs copied into our storage, and each job's archive state

Revision ID: 20261203_0004
Revises: 20261203_0003
Create Date: 2026-12-03 22:30:00

Jobs that succeeded before this revision are marked `skipped`: their upstream links are
most likely gone already, so there is nothing left to copy.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_0004"
down_revision: str | None = "20261203_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARCHIVE_DUE = "archive_state = 'pending'"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("archive_state", sa.String(length=16), nullable=True))
    op.add_column("jobs", sa.Column("archive_due_at", _utc(), nullable=True))
    op.add_column("jobs", sa.Column("archive_lease_until", _utc(), nullable=True))
    op.add_column(
        "jobs", sa.Column("archive_attempts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("archive_error", sa.Text(), nullable=True))
    op.execute("UPDATE jobs SET archive_state = 'skipped' WHERE status = 'succeeded'")
    op.create_index(
        "ix_jobs_archive_due",
        "jobs",
        ["archive_due_at"],
        unique=False,
        postgresql_where=sa.text(ARCHIVE_DUE),
        sqlite_where=sa.text(ARCHIVE_DUE),
    )
    op.create_table(
        "result_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("output_index", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("copied_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_result_files_api_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_result_files_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_files")),
        sa.UniqueConstraint(
            "job_id", "output_index", name=op.f("uq_result_files_job_id_output_index")
        ),
    )
    op.create_index(
        op.f("ix_result_files_api_key_id_copied_at"),
        "result_files",
        ["api_key_id", "copied_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_result_files_api_key_id_copied_at"), table_name="result_files")
    op.drop_table("result_files")
    op.drop_index("ix_jobs_archive_due", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("archive_error")
        batch.drop_column("archive_attempts")
        batch.drop_column("archive_lease_until")
        batch.drop_column("archive_due_at")
        batch.drop_column("archive_state")
