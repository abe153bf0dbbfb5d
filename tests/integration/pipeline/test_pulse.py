"""The pulse beat sends: one read tells which pumps have work (`claims.due_work`), on both
databases, and nothing that is not due (or is leased elsewhere) counts as work."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert

from core import claims
from core.db import Database
from core.ids import new_id
from core.tables import DELIVERY_PENDING, RUNNING, WebhookDelivery
from tests.support.pipeline_jobs import insert_jobs, job_row, new_api_key
from tests.support.pipeline_statements import counting

WINDOW = dt.timedelta(seconds=0.9)


def _due(db: Database, now: dt.datetime) -> tuple[claims.DueWork, int]:
    with counting(db) as log, db.read_session() as session:
        found = claims.due_work(session, now=now)
    return found, len([s for s in log.statements if not s.upper().startswith("BEGIN")])


def _delivery(
    db: Database, key: str, *, due_at: dt.datetime, leased_until: dt.datetime | None
) -> None:
    with db.session() as session:
        session.execute(
            insert(WebhookDelivery).values(
                id=new_id("whd"),
                api_key_id=key,
                event_type="job.succeeded",
                url="https://example.test/hook",
                payload="{}",
                state=DELIVERY_PENDING,
                due_at=due_at,
                lease_until=leased_until,
                lease_owner="elsewhere" if leased_until else None,
            )
        )


def test_nothing_due_is_no_work_in_one_read(db: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    key = new_api_key(db)
    later = now + dt.timedelta(hours=1)
    queued = job_row(key)
    queued["due_at"] = later
    running = job_row(key)
    running.update(status=RUNNING, upstream_task_id="t-1", submitted_at=now, due_at=later)
    insert_jobs(db, [queued, running])
    _delivery(db, key, due_at=later, leased_until=None)
    _delivery(db, key, due_at=now - dt.timedelta(seconds=5), leased_until=later)
    copying = job_row(key)  # an archive leased by another process is not this pulse's work
    copying.update(
        status="succeeded",
        upstream_task_id="t-2",
        submitted_at=now,
        finished_at=now,
        archive_state="pending",
        archive_due_at=now - dt.timedelta(seconds=5),
        archive_lease_until=later,
    )
    insert_jobs(db, [copying])

    found, reads = _due(db, now)
    assert reads == 1
    assert found.kinds(now=now, within=WINDOW) == []
    assert found.submit is False and found.deliver is False and found.archive is False
    assert found.poll_at is not None and abs((found.poll_at - later).total_seconds()) < 1


def test_each_pumps_due_work_is_seen(db: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    key = new_api_key(db)
    queued = job_row(key)
    queued["due_at"] = now - dt.timedelta(seconds=1)
    running = job_row(key)
    soon = now + dt.timedelta(seconds=0.5)
    running.update(status=RUNNING, upstream_task_id="t-1", submitted_at=now, due_at=soon)
    insert_jobs(db, [queued, running])
    _delivery(db, key, due_at=now - dt.timedelta(seconds=1), leased_until=None)

    succeeded = job_row(key)
    succeeded.update(
        status="succeeded",
        upstream_task_id="t-2",
        submitted_at=now,
        finished_at=now,
        archive_state="pending",
        archive_due_at=now - dt.timedelta(seconds=1),
    )
    insert_jobs(db, [succeeded])

    found, reads = _due(db, now)
    assert reads == 1
    # a poll falling due within the pulse's window counts: the poll pump waits for it
    assert found.kinds(now=now, within=WINDOW) == ["submit", "poll", "deliver", "archive"]
    assert found.kinds(now=now, within=dt.timedelta(0)) == ["submit", "deliver", "archive"]
