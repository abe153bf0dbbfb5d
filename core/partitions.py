"""Day partitions of `job_events` on PostgreSQL, so the trail leaves by dropping a table.

`job_events` is range-partitioned by event time (``at``): one partition per UTC day, named
``job_events_pYYYYMMDD``, and ``job_events_default`` for anything no day partition covers (a
safety net: an insert never fails for want of a partition). Maintenance keeps
`PARTITIONS_AHEAD` days ready and drops a day once it is older than the retention and no job
finished before its end is left (job pruning has caught up with it), so a kept job never loses
an event written at or after it finished (the ``retried`` mark that `core.cancel` reads is such
an event). The default partition is pruned by plain deletes.

Every DDL statement waits a bounded time for its lock and gives up otherwise (the next pass
tries again): attaching takes a SHARE UPDATE EXCLUSIVE lock on `job_events`, which writers do
not conflict with, and waits up to `LOCK_TIMEOUT`; dropping takes an ACCESS EXCLUSIVE one, held
for the moment the drop takes, and waits only `DROP_LOCK_TIMEOUT`, since writers queue behind
its request. (``DETACH PARTITION CONCURRENTLY`` would not block them, but PostgreSQL refuses it
while a default partition exists.) A partition is made as a plain table and then attached,
never with ``CREATE TABLE ... PARTITION OF``, which would lock every writer out while the
default partition is scanned.

SQLite has no partitions: there `job_events` is a plain table pruned with its jobs.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.db import Database

log = logging.getLogger(__name__)

PARENT = "job_events"
DEFAULT_PARTITION = "job_events_default"
PARTITIONS_AHEAD = 7
LOCK_TIMEOUT = "2s"
# A drop's lock request queues writers of events behind it while it waits: keep the wait short.
DROP_LOCK_TIMEOUT = "500ms"
_DAY_NAME = re.compile(r"^job_events_p(\d{8})$")


@dataclass(frozen=True)
class DayPartition:
    """One day partition: rows with ``start <= at < end``."""

    name: str
    start: dt.datetime
    end: dt.datetime


def day_partition(day: dt.date) -> DayPartition:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return DayPartition(f"{PARENT}_p{day:%Y%m%d}", start, start + dt.timedelta(days=1))


def is_partition_name(name: str) -> bool:
    """True for the tables that are partitions of `job_events` (not in the table metadata)."""
    return name == DEFAULT_PARTITION or _DAY_NAME.match(name) is not None


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` filter: partitions are made at run time, not by the models."""
    return not (type_ == "table" and name is not None and is_partition_name(name))


def is_partitioned(session: Session) -> bool:
    """Whether `job_events` is a partitioned table here (PostgreSQL after the migration)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    kind = session.scalar(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": PARENT}
    )
    return bool(kind == "p")


def day_partitions(session: Session) -> list[DayPartition]:
    """The day partitions attached to `job_events`, oldest first."""
    names = session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    )
    days = sorted(
        dt.datetime.strptime(match.group(1), "%Y%m%d").date()
        for name in names
        if (match := _DAY_NAME.match(name))
    )
    return [day_partition(day) for day in days]


def _lock_timeout(session: Session, timeout: str = LOCK_TIMEOUT) -> None:
    session.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))


def create_partition(session: Session, partition: DayPartition) -> None:
    """Make one day partition: a plain table, the default partition's rows of that day moved
    into it, then attached (the caller's transaction commits all of it or none)."""
    _lock_timeout(session)
    bounds = {"start": partition.start, "end": partition.end}
    session.execute(
        text(
            f"CREATE TABLE {partition.name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING "
            f"CONSTRAINTS, CONSTRAINT {partition.name}_bounds "
            f"CHECK (at >= '{partition.start.isoformat()}' AND at < '{partition.end.isoformat()}'))"
        )
    )
    session.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE at >= :start AND at < :end "  # noqa: S608 (names made here from dates)
            f"RETURNING *) INSERT INTO {partition.name} SELECT * FROM moved"
        ),
        bounds,
    )
    # the CHECK constraint spares ATTACH a scan of the new table; then it is redundant
    session.execute(
        text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {partition.name} FOR VALUES FROM "
            f"('{partition.start.isoformat()}') TO ('{partition.end.isoformat()}')"
        )
    )
    session.execute(text(f"ALTER TABLE {partition.name} DROP CONSTRAINT {partition.name}_bounds"))


def ensure_partitions(
    db: Database, *, now: dt.datetime, ahead: int = PARTITIONS_AHEAD
) -> list[str]:
    """Create the day partitions of today and the next `ahead` days that are missing, each in
    a transaction of its own; a lock not had within `LOCK_TIMEOUT` ends the pass (the next one
    tries again)."""
    with db.read_session() as session:
        existing = {partition.name for partition in day_partitions(session)}
    created: list[str] = []
    for offset in range(ahead + 1):
        partition = day_partition(now.date() + dt.timedelta(days=offset))
        if partition.name in existing:
            continue
        try:
            with db.session() as session:
                create_partition(session, partition)
        except OperationalError as error:
            log.warning("could not create %s this pass: %s", partition.name, error.orig)
            break
        created.append(partition.name)
    if created:
        log.info("job_events partitions created: %s", ", ".join(created))
    return created


def droppable_partitions(session: Session, *, cutoff: dt.datetime) -> list[DayPartition]:
    """Day partitions wholly older than `cutoff` with no job left that finished before their
    end (job pruning has passed them), oldest first."""
    candidates = [p for p in day_partitions(session) if p.end <= cutoff]
    if not candidates:
        return []
    # finished jobs are pruned oldest first (`core.retention`): one index probe bounds them all
    oldest_kept = session.scalar(text("SELECT min(finished_at) FROM jobs"))
    if oldest_kept is None:
        return candidates
    return [p for p in candidates if p.end <= oldest_kept]


def drop_partition(session: Session, partition: DayPartition) -> int:
    """Drop one day partition; returns its (estimated) row count. The caller commits."""
    _lock_timeout(session, DROP_LOCK_TIMEOUT)
    rows = session.scalar(
        text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": partition.name},
    )
    session.execute(text(f"DROP TABLE {partition.name}"))
    return max(int(rows or 0), 0)


def prune_default_partition(session: Session, *, cutoff: dt.datetime, limit: int) -> int:
    """Delete up to `limit` rows older than `cutoff` from the default partition."""
    result = session.execute(
        text(
            f"DELETE FROM {DEFAULT_PARTITION} WHERE ctid = ANY(ARRAY("  # noqa: S608 (a constant)
            f"SELECT ctid FROM {DEFAULT_PARTITION} WHERE at < :cutoff LIMIT :limit))"
        ),
        {"cutoff": cutoff, "limit": limit},
    )
    return int(getattr(result, "rowcount", 0) or 0)
