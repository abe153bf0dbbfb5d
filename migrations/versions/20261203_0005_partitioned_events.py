"""job_events partitioned by day on PostgreSQL; no foreign key from job_events to jobs

Revision ID: 20261203_0005
Revises: 20261203_0004
Create Date: 2026-12-03 22:30:00

PostgreSQL: the table is rebuilt as ``PARTITION BY RANGE (at)`` with primary key (id, at), a
default partition, and one partition per UTC day that holds events plus today and the next
seven days; every row is copied across in this transaction and the old table dropped. The copy
takes the time of an ``INSERT ... SELECT`` of the whole trail (docs/operations.md gives a
measured rate) while writers of events wait: run it in a maintenance window on a large install.
Event ids keep counting from where they were.

SQLite: only the foreign key to jobs goes (the table stays unpartitioned).
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_0005"
down_revision: str | None = "20261203_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAYS_AHEAD = 7
OLD = "job_events_unpartitioned"
COLUMNS = "id, job_id, at, from_status, to_status, reason, detail"
FK = "fk_job_events_job_id_jobs"


def _day_partition(day: dt.date) -> str:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    return (
        f"CREATE TABLE job_events_p{day:%Y%m%d} PARTITION OF job_events "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def _set_sequence(table: str) -> None:
    op.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("job_events") as batch:
            batch.drop_constraint(FK, type_="foreignkey")
        return
    sequence = bind.scalar(sa.text("SELECT pg_get_serial_sequence('job_events', 'id')"))
    op.execute(f"ALTER TABLE job_events RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_job_events TO pk_{OLD}")
    op.execute(f"ALTER TABLE {OLD} DROP CONSTRAINT {FK}")
    op.execute(f"ALTER INDEX ix_job_events_job_id_id RENAME TO ix_{OLD}_job_id_id")
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} RENAME TO {OLD}_id_seq")
    op.execute(
        """
        CREATE TABLE job_events (
            id BIGSERIAL NOT NULL,
            job_id VARCHAR(32) NOT NULL,
            at TIMESTAMP WITH TIME ZONE NOT NULL,
            from_status VARCHAR(16),
            to_status VARCHAR(16) NOT NULL,
            reason VARCHAR(64) NOT NULL,
            detail JSONB,
            CONSTRAINT pk_job_events PRIMARY KEY (id, at)
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute("CREATE INDEX ix_job_events_job_id_id ON job_events (job_id, id)")
    op.execute("CREATE TABLE job_events_default PARTITION OF job_events DEFAULT")
    days = set(
        bind.scalars(
            sa.text(f"SELECT DISTINCT (at AT TIME ZONE 'UTC')::date FROM {OLD}")
        ).all()
    )
    today = dt.datetime.now(dt.UTC).date()
    days |= {today + dt.timedelta(days=offset) for offset in range(DAYS_AHEAD + 1)}
    for day in sorted(days):
        op.execute(_day_partition(day))
    op.execute(f"INSERT INTO job_events ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    _set_sequence("job_events")
    op.execute(f"DROP TABLE {OLD}")
    op.execute("ANALYZE job_events")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("job_events") as batch:
            batch.create_foreign_key(FK, "jobs", ["job_id"], ["id"], ondelete="CASCADE")
        return
    op.execute(f"ALTER TABLE job_events RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_job_events TO pk_{OLD}")
    op.execute(f"ALTER INDEX ix_job_events_job_id_id RENAME TO ix_{OLD}_job_id_id")
    op.execute(f"ALTER SEQUENCE job_events_id_seq RENAME TO {OLD}_id_seq")
    op.execute(
        """
        CREATE TABLE job_events (
            id BIGSERIAL NOT NULL,
            job_id VARCHAR(32) NOT NULL,
            at TIMESTAMP WITH TIME ZONE NOT NULL,
            from_status VARCHAR(16),
            to_status VARCHAR(16) NOT NULL,
            reason VARCHAR(64) NOT NULL,
            detail JSONB,
            CONSTRAINT pk_job_events PRIMARY KEY (id)
        )
        """
    )
    # events whose job was pruned (they wait for their partition to go) cannot come back
    op.execute(
        f"INSERT INTO job_events ({COLUMNS}) SELECT {COLUMNS} FROM {OLD} e "
        "WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = e.job_id)"
    )
    _set_sequence("job_events")
    op.execute(f"DROP TABLE {OLD}")
    op.execute(
        f"ALTER TABLE job_events ADD CONSTRAINT {FK} FOREIGN KEY (job_id) "
        "REFERENCES jobs (id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX ix_job_events_job_id_id ON job_events (job_id, id)")
