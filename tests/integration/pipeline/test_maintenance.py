"""Maintenance: abandoned submits, expired leases, deadlines, finished batches, pruning."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, insert, select

from core.cancel import cancel_batch, retry_batch
from core.db import Database
from core.maintenance import run_maintenance
from core.settings import Settings
from core.tables import (
    BATCH_CANCELLED,
    BATCH_COMPLETED,
    BATCH_RUNNING,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Batch,
    IdempotencyKey,
    Job,
    JobEvent,
    WebhookDelivery,
    utcnow,
)
from core.transitions import transition
from tests.support.pipeline_jobs import (
    insert_batch,
    insert_jobs,
    job,
    job_row,
    new_api_key,
    pipeline_settings,
)

SettingsFor = Callable[..., Settings]


@pytest.fixture
def settings(settings_for: SettingsFor, db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url)


def abandoned(key: str, *, ago: float = 120.0, sent: bool = True) -> dict[str, object]:
    """A queued job whose submitter held it and vanished ``ago`` seconds ago, after marking it
    sent (``sent``) or before."""
    row = job_row(key)
    lease_until = utcnow() - dt.timedelta(seconds=ago)
    row.update(lease_owner="dead-host:123", lease_until=lease_until)
    row["submit_sent_at"] = lease_until - dt.timedelta(seconds=30) if sent else None
    return row


def test_an_abandoned_submit_never_marked_sent_is_queued_again(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [abandoned(key, sent=False)])
    report = run_maintenance(db, settings)
    row = job(db, job_id)
    assert (report.abandoned_requeued, report.abandoned_failed) == (1, 0)
    assert (row.status, row.lease_owner, row.due_at is not None) == (QUEUED, None, True)


def test_an_abandoned_submit_fails_as_uncertain_instead_of_being_sent_twice(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [abandoned(key)])
    report = run_maintenance(db, settings)
    row = job(db, job_id)
    assert report.abandoned_failed == 1
    assert (row.status, row.error_code, row.lease_owner) == (FAILED, "submit_uncertain", None)


def test_an_abandoned_submit_is_queued_again_when_resubmitting_is_allowed(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(update={"resubmit_on_uncertain": True})
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [abandoned(key)])
    run_maintenance(db, settings)
    row = job(db, job_id)
    assert (row.status, row.lease_owner) == (QUEUED, None)


def test_a_submit_still_in_progress_is_left_alone(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [abandoned(key, ago=-60.0)])
    run_maintenance(db, settings)
    assert (job(db, job_id).status, job(db, job_id).lease_owner) == (QUEUED, "dead-host:123")


def running(key: str, *, deadline_in: float, lease: float | None = None) -> dict[str, object]:
    now = utcnow()
    row = job_row(key)
    row.update(
        status=RUNNING,
        upstream_task_id="t-1",
        submitted_at=now - dt.timedelta(seconds=60),
        due_at=now + dt.timedelta(seconds=30),
        deadline_at=now + dt.timedelta(seconds=deadline_in),
    )
    if lease is not None:
        row.update(lease_owner="someone", lease_until=now + dt.timedelta(seconds=lease))
    return row


def test_an_expired_poll_lease_is_released(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [running(key, deadline_in=600, lease=-5)])
    assert run_maintenance(db, settings).leases_cleared == 1
    assert job(db, job_id).lease_owner is None


def test_a_running_job_past_its_deadline_gets_a_last_poll_instead_of_timing_out(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    unpolled = running(key, deadline_in=-1)
    unpolled["due_at"] = None  # no poll is coming for it
    [late, fine, busy] = insert_jobs(
        db,
        [unpolled, running(key, deadline_in=600), running(key, deadline_in=-1, lease=30)],
    )
    before = utcnow()
    report = run_maintenance(db, settings)
    assert (report.last_polls, report.timed_out) == (1, 0)
    row = job(db, late)
    # due now: the poll pump decides (tests/integration/pipeline/test_poll_pump.py)
    assert row.status == RUNNING
    assert row.due_at is not None and row.due_at <= utcnow()
    assert row.due_at >= before
    assert job(db, fine).status == job(db, busy).status == RUNNING
    # asked once: the next pass has nothing to do
    assert run_maintenance(db, settings).last_polls == 0


def test_a_failed_last_poll_keeps_its_own_retry_within_the_grace(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    retrying = running(key, deadline_in=-1)
    retrying["due_at"] = utcnow() + dt.timedelta(seconds=3)  # the poll pump's back-off
    stuck = running(key, deadline_in=-1)
    stuck["due_at"] = utcnow() + dt.timedelta(hours=1)  # no poll would come in time
    [kept, asked] = insert_jobs(db, [retrying, stuck])
    assert run_maintenance(db, settings).last_polls == 1
    assert job(db, kept).due_at == retrying["due_at"]
    due = job(db, asked).due_at
    assert due is not None and due <= utcnow()


def test_a_running_job_with_no_task_id_times_out_at_its_deadline(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    row = running(key, deadline_in=-1)
    row["upstream_task_id"] = None
    [job_id] = insert_jobs(db, [row])
    assert run_maintenance(db, settings).timed_out == 1
    assert (job(db, job_id).status, job(db, job_id).error_code) == (TIMED_OUT, "deadline_exceeded")


def test_a_batch_completes_once_nothing_is_queued_or_running(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    done = job_row(key)
    done.update(status=SUCCEEDED, finished_at=utcnow(), due_at=None)
    still = job_row(key)
    finished_batch = insert_batch(db, key, [dict(done)], webhook_url="https://hooks.example.com/b")
    busy_batch = insert_batch(db, key, [dict(done, id=done["id"] + "x"), still])
    assert run_maintenance(db, settings).batches_completed == 1
    with db.read_session() as session:
        finished = session.get_one(Batch, finished_batch)
        busy = session.get_one(Batch, busy_batch)
        deliveries = list(
            session.scalars(
                select(WebhookDelivery.event_type).where(WebhookDelivery.batch_id == finished_batch)
            )
        )
    assert (finished.status, busy.status) == (BATCH_COMPLETED, BATCH_RUNNING)
    assert finished.finished_at is not None
    assert deliveries == ["batch.completed"]
    # completing is done once: a second pass queues no second webhook
    assert run_maintenance(db, settings).batches_completed == 0


def test_a_cancelled_batch_is_finished_when_its_last_running_job_ends(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    running = job_row(key)
    running.update(status=RUNNING, upstream_task_id="up-1")
    batch_id = insert_batch(db, key, [running], webhook_url="https://hooks.example.com/b")
    with db.session() as session:
        batch = session.get_one(Batch, batch_id)
        cancel_batch(session, batch)
    assert run_maintenance(db, settings).batches_completed == 0  # its job still runs
    with db.session() as session:
        transition(session, running["id"], from_status=RUNNING, to_status=SUCCEEDED, reason="t")
    assert run_maintenance(db, settings).batches_completed == 1
    assert run_maintenance(db, settings).batches_completed == 0
    with db.read_session() as session:
        batch = session.get_one(Batch, batch_id)
        events = list(
            session.scalars(
                select(WebhookDelivery.event_type).where(WebhookDelivery.batch_id == batch_id)
            )
        )
    assert (batch.status, batch.finished_at is not None) == (BATCH_CANCELLED, True)
    assert events.count("batch.completed") == 1


def test_a_batch_being_retried_is_not_completed_under_the_retry(
    pg_db: Database, settings_for: SettingsFor, pg_url: str
) -> None:
    settings = pipeline_settings(settings_for, pg_url)
    key = new_api_key(pg_db)
    failed = job_row(key)
    failed.update(status=FAILED, finished_at=utcnow(), due_at=None)
    batch_id = insert_batch(pg_db, key, [failed])
    retry_holds_lock = threading.Event()
    maintenance_done = threading.Event()

    def retry() -> None:
        with pg_db.session() as session:
            batch = session.scalars(
                select(Batch).where(Batch.id == batch_id).with_for_update()
            ).one()
            retry_batch(session, batch)
            retry_holds_lock.set()
            maintenance_done.wait(timeout=30)

    worker = threading.Thread(target=retry)
    worker.start()
    assert retry_holds_lock.wait(timeout=30)
    assert run_maintenance(pg_db, settings).batches_completed == 0
    maintenance_done.set()
    worker.join(timeout=30)
    assert run_maintenance(pg_db, settings).batches_completed == 0
    with pg_db.read_session() as session:
        assert session.get_one(Batch, batch_id).status == BATCH_RUNNING


def test_old_rows_are_pruned_and_recent_ones_kept(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    long_ago = utcnow() - dt.timedelta(days=40)
    old = job_row(key)
    old.update(status=SUCCEEDED, finished_at=long_ago, due_at=None)
    recent = job_row(key)
    recent.update(status=FAILED, finished_at=utcnow(), due_at=None)
    active = job_row(key, created_at=long_ago)
    old_id, recent_id, active_id = insert_jobs(db, [old, recent, active])
    with db.session() as session:
        session.execute(
            insert(JobEvent),
            [
                {"job_id": old_id, "at": long_ago, "to_status": SUCCEEDED, "reason": "x"},
                {"job_id": recent_id, "at": utcnow(), "to_status": FAILED, "reason": "x"},
            ],
        )
        session.execute(
            insert(IdempotencyKey),
            [
                {
                    "api_key_id": key,
                    "key": name,
                    "method_path": "POST /v1/jobs",
                    "request_hash": "0" * 64,
                    "response_status": 202,
                    "response_body": {},
                    "created_at": at,
                }
                for name, at in (("old", long_ago), ("new", utcnow()))
            ],
        )
    report = run_maintenance(db, settings)
    assert report.pruned == {"jobs": 1, "job_events": 1, "idempotency_keys": 1}
    with db.read_session() as session:
        left = set(session.scalars(select(Job.id)))
        event_jobs = set(session.scalars(select(JobEvent.job_id)))
        keys = set(session.scalars(select(IdempotencyKey.key)))
    assert left == {recent_id, active_id}
    assert event_jobs == {recent_id}
    assert keys == {"new"}


def test_maintenance_with_nothing_to_do_changes_nothing(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key)])
    report = run_maintenance(db, settings)
    assert (report.abandoned_failed, report.timed_out, report.batches_completed) == (0, 0, 0)
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 0


def test_an_abandoned_submit_whose_task_id_was_noted_is_recovered_as_running(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    row = abandoned(key)
    row["upstream_task_id"] = "task-noted"
    [job_id] = insert_jobs(db, [row])
    report = run_maintenance(db, settings)
    recovered = job(db, job_id)
    assert report.abandoned_recovered == 1
    assert (recovered.status, recovered.upstream_task_id, recovered.attempts) == (
        RUNNING,
        "task-noted",
        1,
    )
    assert recovered.lease_owner is None
    assert recovered.due_at is not None and recovered.deadline_at is not None
    with db.read_session() as session:
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job_id)))
    assert reasons == ["submit_recovered"]
