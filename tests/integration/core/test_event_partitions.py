"""`job_events` by day on PostgreSQL: the migration moves an existing trail across, maintenance
keeps partitions ahead, and old days leave by dropping a partition once their jobs are gone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from core import partitions
from core.db import Database
from core.migrate import alembic_config, upgrade
from core.retention import prune_within
from core.settings import Settings
from core.tables import JobEvent, utcnow
from tests.support import services
from tests.support.pipeline_jobs import insert_jobs, job_row, new_api_key

BEFORE = "20261203_0003"
NOW = utcnow()


def _seed_old_schema(url: str) -> list[tuple[int, str, dt.datetime]]:
    """An api key, two jobs and events on three days, written as the old schema had them."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    days = [NOW - dt.timedelta(days=40), NOW - dt.timedelta(days=2), NOW]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO api_keys (id, name, tenant, key_prefix, key_hash, scopes, "
                "webhook_secret, created_at) VALUES ('key_1', 'k', 't', 'p', 'h', '[]', 's', "
                ":now)"
            ),
            {"now": NOW.replace(tzinfo=None) if "sqlite" in url else NOW},
        )
        for job in ("job_1", "job_2"):
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (id, api_key_id, status, provider, model, action, params, "
                    "images, priority, created_at, updated_at, attempts, polls, progress) "
                    "VALUES (:id, 'key_1', 'queued', 'flux', 'flux-2-pro', 'generate', '{}', "
                    "'[]', 0, :now, :now, 0, 0, 0)"
                ),
                {"id": job, "now": NOW.replace(tzinfo=None) if "sqlite" in url else NOW},
            )
        for n, at in enumerate(days * 2):
            connection.execute(
                sa.text(
                    "INSERT INTO job_events (job_id, at, to_status, reason) "
                    "VALUES (:job, :at, 'queued', :reason)"
                ),
                {
                    "job": f"job_{1 + n % 2}",
                    "at": at.replace(tzinfo=None) if "sqlite" in url else at,
                    "reason": f"r{n}",
                },
            )
        rows = connection.execute(sa.text("SELECT id, reason, at FROM job_events ORDER BY id"))
        seeded = [(int(row[0]), str(row[1]), row[2]) for row in rows]
    engine.dispose()
    return seeded


@pytest.fixture(params=["postgresql", "sqlite"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated only up to the revision before the partitioned trail."""
    if request.param == "sqlite":
        url = services.sqlite_url(tmp_path)
        upgrade(url, BEFORE)
        yield url
        return
    if not services.postgres_available():
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    with services.postgres_database() as url:
        upgrade(url, BEFORE)
        yield url


def test_the_migration_keeps_every_event_and_their_ids(old_database: str) -> None:
    seeded = _seed_old_schema(old_database)
    upgrade(old_database)
    db = Database(old_database)
    try:
        with db.session() as session:
            kept = [
                (event.id, event.reason)
                for event in session.scalars(sa.select(JobEvent).order_by(JobEvent.id))
            ]
            assert kept == [(event_id, reason) for event_id, reason, _ in seeded]
            session.add(JobEvent(job_id="job_1", at=NOW, to_status="running", reason="new"))
            session.flush()
            assert max(session.scalars(sa.select(JobEvent.id))) > seeded[-1][0]
            if db.sqlite:
                return
            assert partitions.is_partitioned(session)
            names = {p.name for p in partitions.day_partitions(session)}
            default_rows = session.scalar(
                sa.text(f"SELECT count(*) FROM {partitions.DEFAULT_PARTITION}")
            )
        expected = {partitions.day_partition(at.date()).name for _, _, at in seeded}
        ahead = {
            partitions.day_partition(NOW.date() + dt.timedelta(days=n)).name
            for n in range(partitions.PARTITIONS_AHEAD + 1)
        }
        assert expected | ahead <= names
        assert default_rows == 0
    finally:
        db.dispose()


def test_the_migration_can_be_undone(old_database: str) -> None:
    seeded = _seed_old_schema(old_database)
    upgrade(old_database)
    engine = sa.create_engine(old_database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        command.downgrade(_config(old_database, connection), BEFORE)
    with engine.connect() as connection:
        reasons = list(connection.execute(sa.text("SELECT reason FROM job_events ORDER BY id")))
        fks = sa.inspect(connection).get_foreign_keys("job_events")
    engine.dispose()
    assert [row[0] for row in reasons] == [reason for _, reason, _ in seeded]
    assert [fk["referred_table"] for fk in fks] == ["jobs"]


def _config(url: str, connection: sa.Connection) -> Any:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    return config


def _event(db: Database, job_id: str, at: dt.datetime, reason: str = "x") -> None:
    with db.session() as session:
        session.execute(
            sa.insert(JobEvent).values(job_id=job_id, at=at, to_status="queued", reason=reason)
        )


def _where(db: Database, reason: str) -> str:
    with db.read_session() as session:
        return str(
            session.scalar(
                sa.text("SELECT tableoid::regclass::text FROM job_events WHERE reason = :r"),
                {"r": reason},
            )
        )


def test_maintenance_keeps_partitions_ready_ahead(pg_db: Database, settings_for: Any) -> None:
    settings: Settings = settings_for(pg_db.url)
    later = NOW + dt.timedelta(days=30)
    prune_within(pg_db, settings, now=later)
    with pg_db.read_session() as session:
        names = {p.name for p in partitions.day_partitions(session)}
    for offset in range(partitions.PARTITIONS_AHEAD + 1):
        assert partitions.day_partition(later.date() + dt.timedelta(days=offset)).name in names


def test_an_event_beyond_the_partitions_waits_in_the_default_and_moves_into_its_day(
    pg_db: Database,
) -> None:
    key = new_api_key(pg_db)
    [job_id] = insert_jobs(pg_db, [job_row(key)])
    far = NOW + dt.timedelta(days=60)
    _event(pg_db, job_id, far, reason="far")
    assert _where(pg_db, "far") == partitions.DEFAULT_PARTITION
    assert partitions.ensure_partitions(pg_db, now=far, ahead=0) == [
        partitions.day_partition(far.date()).name
    ]
    assert _where(pg_db, "far") == partitions.day_partition(far.date()).name


def test_an_old_day_goes_only_after_the_jobs_that_finished_before_its_end(
    pg_db: Database, settings_for: Any
) -> None:
    settings: Settings = settings_for(pg_db.url)
    key = new_api_key(pg_db)
    old_day = NOW - dt.timedelta(days=settings.retention_days + 5)
    with pg_db.session() as session:
        partitions.create_partition(session, partitions.day_partition(old_day.date()))
    old = job_row(key, created_at=old_day)
    old.update(status="succeeded", finished_at=old_day, due_at=None)
    recent = job_row(key)
    recent.update(status="succeeded", finished_at=NOW, due_at=None)
    old_id, recent_id = insert_jobs(pg_db, [old, recent])
    _event(pg_db, old_id, old_day, reason="old")
    _event(pg_db, recent_id, NOW, reason="recent")

    # while another transaction holds the old job, it stays, and so does its day
    with pg_db.session() as holder:
        holder.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": old_id})
        report = prune_within(pg_db, settings, now=NOW)
        assert "jobs" not in report.rows and report.partitions_dropped == 0
        assert _where(pg_db, "old") == partitions.day_partition(old_day.date()).name

    report = prune_within(pg_db, settings, now=NOW)
    assert report.rows.get("jobs") == 1 and report.partitions_dropped == 1
    with pg_db.read_session() as session:
        assert set(session.scalars(sa.select(JobEvent.reason))) == {"recent"}
        names = {p.name for p in partitions.day_partitions(session)}
    assert partitions.day_partition(old_day.date()).name not in names


def test_a_pass_stops_at_its_budget_and_the_next_ones_finish(
    db: Database, settings_for: Any
) -> None:
    settings: Settings = settings_for(db.url)
    key = new_api_key(db)
    long_ago = NOW - dt.timedelta(days=settings.retention_days + 1)
    rows = []
    for _ in range(30):
        row = job_row(key, created_at=long_ago)
        row.update(status="failed", finished_at=long_ago, due_at=None)
        rows.append(row)
    insert_jobs(db, rows)
    first = prune_within(db, settings, now=NOW, budget_seconds=0, limit=10)
    assert first.rows.get("jobs") == 10 and first.more
    passes = 1
    while prune_within(db, settings, now=NOW, budget_seconds=0, limit=10).more:
        passes += 1
        assert passes < 10
    with db.read_session() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM jobs")) == 0


def test_a_drop_that_cannot_have_its_lock_waits_for_a_later_pass(
    pg_db: Database, settings_for: Any
) -> None:
    settings: Settings = settings_for(pg_db.url)
    old_day = NOW - dt.timedelta(days=settings.retention_days + 5)
    partition = partitions.day_partition(old_day.date())
    with pg_db.session() as session:
        partitions.create_partition(session, partition)
    with pg_db.session() as reader:
        # a long transaction that read the trail holds a lock the drop must wait for
        reader.execute(sa.text("SELECT count(*) FROM job_events"))
        report = prune_within(pg_db, settings, now=NOW)
        assert report.partitions_dropped == 0
        assert report.more  # the worker comes back soon
    assert prune_within(pg_db, settings, now=NOW).partitions_dropped == 1
    with pg_db.read_session() as session:
        assert partition.name not in {p.name for p in partitions.day_partitions(session)}


def test_an_old_day_goes_in_the_same_pass_as_its_last_jobs(
    pg_db: Database, settings_for: Any
) -> None:
    settings: Settings = settings_for(pg_db.url)
    key = new_api_key(pg_db)
    old_day = NOW - dt.timedelta(days=settings.retention_days + 3)
    partition = partitions.day_partition(old_day.date())
    with pg_db.session() as session:
        partitions.create_partition(session, partition)
    rows = []
    for _ in range(25):
        row = job_row(key, created_at=old_day)
        row.update(status="succeeded", finished_at=old_day, due_at=None)
        rows.append(row)
    for job_id in insert_jobs(pg_db, rows):
        _event(pg_db, job_id, old_day)
    # the jobs take three chunks; the day is looked at again after each
    report = prune_within(pg_db, settings, now=NOW, budget_seconds=60, limit=10)
    assert (report.rows.get("jobs"), report.partitions_dropped, report.more) == (25, 1, False)
