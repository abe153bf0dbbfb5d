"""Claiming due rows, on PostgreSQL and SQLite: fair order, compare-and-set leases, no overlap."""

from __future__ import annotations

import datetime as dt
import threading

from core import claims
from core.db import Database
from core.tables import QUEUED, RUNNING, utcnow
from tests.support.pipeline_jobs import insert_batch, insert_jobs, job_row, new_api_key


def candidate_ids(db: Database, *, limit: int, now: dt.datetime | None = None) -> list[str]:
    with db.session() as session:
        return [
            job.id for job in claims.submit_candidates(session, now=now or utcnow(), limit=limit)
        ]


def test_a_single_job_is_offered_before_a_big_batch_queued_earlier(db: Database) -> None:
    big_key, small_key = new_api_key(db, "bulk"), new_api_key(db, "single")
    earlier = utcnow() - dt.timedelta(minutes=5)
    insert_batch(db, big_key, [job_row(big_key, created_at=earlier) for _ in range(300)])
    [single] = insert_jobs(db, [job_row(small_key)])
    assert single in candidate_ids(db, limit=2)


def test_batches_take_turns(db: Database) -> None:
    key = new_api_key(db)
    first = insert_batch(db, key, [job_row(key) for _ in range(20)])
    second = insert_batch(db, key, [job_row(key) for _ in range(20)])
    offered = candidate_ids(db, limit=10)
    with db.read_session() as session:
        from core.tables import Job

        batches = [session.get_one(Job, job_id).batch_id for job_id in offered]
    assert batches.count(first) == batches.count(second) == 5


def test_higher_priority_goes_first_within_a_tenant(db: Database) -> None:
    key = new_api_key(db)
    now = utcnow()
    low = insert_jobs(db, [job_row(key, created_at=now - dt.timedelta(seconds=10))])
    high = insert_jobs(db, [job_row(key, priority=5, created_at=now)])
    assert candidate_ids(db, limit=1) == high
    assert candidate_ids(db, limit=2) == high + low


def test_jobs_not_yet_due_are_not_offered(db: Database) -> None:
    key = new_api_key(db)
    row = job_row(key)
    row["due_at"] = utcnow() + dt.timedelta(minutes=1)
    insert_jobs(db, [row])
    assert candidate_ids(db, limit=10) == []


def test_a_lease_is_won_once(db: Database) -> None:
    key = new_api_key(db)
    job_ids = insert_jobs(db, [job_row(key) for _ in range(3)])
    now = utcnow()
    until = now + dt.timedelta(minutes=1)
    with db.session() as session:
        won = claims.lease_jobs(session, job_ids, status=QUEUED, owner="a", now=now, until=until)
    with db.session() as session:
        again = claims.lease_jobs(session, job_ids, status=QUEUED, owner="b", now=now, until=until)
    assert sorted(job.id for job in won) == sorted(job_ids)
    assert again == []
    assert candidate_ids(db, limit=10) == []


def test_an_abandoned_submit_is_never_offered_again(db: Database) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    past = utcnow() - dt.timedelta(minutes=5)
    with db.session() as session:
        claims.lease_jobs(session, [job_id], status=QUEUED, owner="dead", now=past, until=past)
    assert candidate_ids(db, limit=10) == []
    with db.session() as session:
        assert [job.id for job in claims.abandoned_submits(session, now=utcnow(), limit=10)] == [
            job_id
        ]


def _running(key: str, *, due: dt.datetime) -> dict[str, object]:
    row = job_row(key)
    row.update(status=RUNNING, upstream_task_id="task-1", submitted_at=due, due_at=due)
    return row


def test_a_running_job_whose_poller_died_is_polled_again(db: Database) -> None:
    key = new_api_key(db)
    past = utcnow() - dt.timedelta(minutes=5)
    [job_id] = insert_jobs(db, [_running(key, due=past)])
    with db.session() as session:
        claims.claim_due(session, status=RUNNING, owner="dead", now=past, until=past, limit=10)
    now = utcnow()
    with db.session() as session:
        claimed = claims.claim_due(
            session, status=RUNNING, owner="alive", now=now, until=now, limit=10
        )
    assert [job.id for job in claimed] == [job_id]
    assert claimed[0].lease_owner == "alive"


def test_only_our_own_lease_lets_us_record_an_outcome(db: Database) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    now = utcnow()
    with db.session() as session:
        claims.lease_jobs(
            session, [job_id], status=QUEUED, owner="a", now=now, until=now + dt.timedelta(1)
        )
    with db.session() as session:
        assert claims.hold_leases(session, [job_id], status=QUEUED, owner="b") == set()
        assert claims.hold_leases(session, [job_id], status=QUEUED, owner="a") == {job_id}


def test_concurrent_pollers_on_postgresql_claim_disjoint_rows(pg_db: Database) -> None:
    key = new_api_key(pg_db)
    past = utcnow() - dt.timedelta(seconds=1)
    insert_jobs(pg_db, [_running(key, due=past) for _ in range(200)])
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        now = utcnow()
        with pg_db.session() as session:
            jobs = claims.claim_due(
                session,
                status=RUNNING,
                owner=owner,
                now=now,
                until=now + dt.timedelta(minutes=1),
                limit=80,
            )
        results[owner] = [job.id for job in jobs]

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [job_id for ids in results.values() for job_id in ids]
    assert len(claimed) == len(set(claimed)) == 200


def test_running_counts_are_per_provider(db: Database) -> None:
    key = new_api_key(db)
    now = utcnow()
    insert_jobs(db, [_running(key, due=now) for _ in range(3)])
    row = _running(key, due=now)
    row.update(model="mj-v7", provider="midjourney", action="imagine")
    insert_jobs(db, [row, job_row(key)])
    with db.read_session() as session:
        assert claims.running_counts(session) == {"flux": 3, "midjourney": 1}
