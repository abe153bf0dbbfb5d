"""The state machine: compare-and-set transitions, audit rows, the webhook outbox."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from core.db import Database
from core.tables import Job, JobEvent, WebhookDelivery
from core.transitions import IllegalTransition, transition, transition_held
from tests.support.core_rows import make_job, make_key


def test_a_transition_moves_the_job_and_writes_an_event(db: Database) -> None:
    key = make_key(db)
    job_id = make_job(db, key.id)
    with db.session() as session:
        job = transition(
            session,
            job_id,
            from_status="queued",
            to_status="running",
            reason="submitted",
            values={"upstream_task_id": "up-1"},
        )
        assert job is not None and job.status == "running"
    with db.read_session() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
        assert [(e.from_status, e.to_status, e.reason) for e in events] == [
            ("queued", "running", "submitted")
        ]
        assert session.get_one(Job, job_id).upstream_task_id == "up-1"


def test_a_stale_transition_loses_and_leaves_no_trace(db: Database) -> None:
    key = make_key(db)
    job_id = make_job(db, key.id, status="running")
    with db.session() as session:
        assert (
            transition(
                session, job_id, from_status="queued", to_status="cancelled", reason="cancel"
            )
            is None
        )
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 0
        assert session.get_one(Job, job_id).status == "running"


def test_only_one_of_two_racing_writers_finishes_a_job(pg_db: Database) -> None:
    key = make_key(pg_db)
    job_id = make_job(pg_db, key.id, status="running", webhook_url="https://example.com/h")
    barrier = threading.Barrier(2)
    wins: list[bool] = []

    def finish(to_status: str) -> None:
        with pg_db.session() as session:
            barrier.wait(timeout=10)
            won = transition(
                session, job_id, from_status="running", to_status=to_status, reason="race"
            )
            wins.append(won is not None)

    threads = [threading.Thread(target=finish, args=(s,)) for s in ("succeeded", "failed")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(wins) == [False, True]
    with pg_db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 1
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_a_terminal_transition_queues_the_webhook_in_the_same_transaction(db: Database) -> None:
    key = make_key(db)
    job_id = make_job(db, key.id, status="running", webhook_url="https://example.com/h")
    with pytest.raises(RuntimeError), db.session() as session:
        transition(session, job_id, from_status="running", to_status="succeeded", reason="done")
        raise RuntimeError("crash before commit")
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        assert session.get_one(Job, job_id).status == "running"
    with db.session() as session:
        transition(session, job_id, from_status="running", to_status="succeeded", reason="done")
    with db.read_session() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert delivery.event_type == "job.succeeded"
        assert delivery.job_id == job_id
        assert '"status":"succeeded"' in delivery.payload
        finished = session.get_one(Job, job_id)
        assert finished.finished_at is not None and finished.lease_until is None


def test_cancel_from_either_active_status_records_the_status_it_left(db: Database) -> None:
    key = make_key(db)
    job_id = make_job(db, key.id, status="running")
    with db.session() as session:
        transition(
            session,
            job_id,
            from_status=("queued", "running"),
            to_status="cancelled",
            reason="cancel",
        )
    with db.read_session() as session:
        event = session.scalars(select(JobEvent)).one()
        assert (event.from_status, event.to_status) == ("running", "cancelled")


def test_a_transition_the_state_machine_forbids_is_refused(db: Database) -> None:
    key = make_key(db)
    job_id = make_job(db, key.id, status="succeeded")
    with pytest.raises(IllegalTransition), db.session() as session:
        transition(session, job_id, from_status="succeeded", to_status="running", reason="x")


def test_held_rows_move_together_with_one_event_each(db: Database) -> None:
    key = make_key(db)
    job_ids = [make_job(db, key.id) for _ in range(3)]
    with db.session() as session:
        moved = transition_held(
            session,
            [
                {"id": job_id, "upstream_task_id": f"up-{n}", "detail": {"n": n}}
                for n, job_id in enumerate(job_ids)
            ],
            from_status="queued",
            to_status="running",
            reason="submitted",
            shared={"attempts": Job.attempts + 1},
        )
    assert moved == 3
    with db.read_session() as session:
        jobs = {job.id: job for job in session.scalars(select(Job))}
        events = session.scalars(select(JobEvent).order_by(JobEvent.id)).all()
    assert [jobs[j].upstream_task_id for j in job_ids] == ["up-0", "up-1", "up-2"]
    assert {jobs[j].status for j in job_ids} == {"running"}
    assert {jobs[j].attempts for j in job_ids} == {1}
    assert [(e.job_id, e.detail) for e in events] == [(j, {"n": n}) for n, j in enumerate(job_ids)]


def test_a_held_move_that_finds_a_row_gone_rolls_back(db: Database) -> None:
    key = make_key(db)
    queued = make_job(db, key.id)
    cancelled = make_job(db, key.id, status="cancelled")
    with pytest.raises(RuntimeError), db.session() as session:
        transition_held(
            session,
            [{"id": queued}, {"id": cancelled}],
            from_status="queued",
            to_status="running",
            reason="submitted",
        )
    with db.read_session() as session:
        assert session.get_one(Job, queued).status == "queued"
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 0


def test_a_bulk_terminal_move_queues_the_webhooks_of_the_jobs_that_have_one(
    db: Database,
) -> None:
    key = make_key(db)
    hooked = [
        make_job(db, key.id, status="running", webhook_url="https://example.com/h")
        for _ in range(3)
    ]
    plain = make_job(db, key.id, status="running")
    with db.session() as session:
        moved = transition_held(
            session,
            [{"id": job_id, "cost_points": 8} for job_id in [*hooked, plain]],
            from_status="running",
            to_status="succeeded",
            reason="upstream_succeeded",
        )
    assert moved == 4
    with db.read_session() as session:
        jobs = session.scalars(select(Job)).all()
        assert {(job.status, job.cost_points) for job in jobs} == {("succeeded", 8)}
        assert all(job.finished_at is not None and job.lease_owner is None for job in jobs)
        deliveries = session.scalars(select(WebhookDelivery)).all()
        assert sorted(d.job_id or "" for d in deliveries) == sorted(hooked)
        assert {d.event_type for d in deliveries} == {"job.succeeded"}
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 4


def test_a_bulk_move_the_state_machine_forbids_is_refused(db: Database) -> None:
    with pytest.raises(IllegalTransition), db.session() as session:
        transition_held(
            session, [{"id": "job_x"}], from_status="succeeded", to_status="running", reason="x"
        )
