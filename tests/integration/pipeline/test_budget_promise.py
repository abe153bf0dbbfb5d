"""A budget is a promise: claims and cancels racing on PostgreSQL never deadlock and never commit
more points than a budget allows, and every job MetaChat may charge keeps counting whatever
became of it. The submit claim asks the limiter before it locks anything and costs the same
few statements whatever the number of jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, select, text, update

from core.budget import settle_costs
from core.cancel import cancel_job
from core.db import Database
from core.limiter import Grant
from core.maintenance import time_out_job
from core.settings import Settings
from core.tables import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    ApiKey,
    Batch,
    Job,
    utcnow,
)
from core.transitions import transition
from tests.support import pipeline_upstream as up
from tests.support.budget_races import (
    batch_totals,
    cancel_batch_as_the_api_does,
    cancel_job_as_the_api_does,
    claim,
    claim_contexts,
    key_totals,
    race,
)
from tests.support.pipeline_jobs import (
    insert_batch,
    insert_jobs,
    job,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    pump_context,
)
from worker.submit import SubmitReport, run_submit_pump

SettingsFor = Callable[..., Settings]
ROUNDS = 60


@pytest.fixture
def settings(settings_for: SettingsFor, db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url)


@pytest.fixture
def pg_settings(settings_for: SettingsFor, pg_url: str) -> Settings:
    return pipeline_settings(settings_for, pg_url)


def _limit_key(db: Database, key_id: str, **limits: int | None) -> None:
    with db.session() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**limits))


def _limit_batch(db: Database, batch_id: str, max_points: int) -> None:
    with db.session() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(max_points=max_points))


def _priced(key: str, points: int, **values: Any) -> dict[str, Any]:
    row = job_row(key, **values)
    row["estimated_points"] = points
    return row


def submit(
    db: Database, settings: Settings, reply: up.Reply | up.Recorder, *, owner: str | None = None
) -> SubmitReport:
    recorder = reply if isinstance(reply, up.Recorder) else up.Recorder(reply)

    async def main() -> SubmitReport:
        async with pump_context(db, settings, transport=recorder.transport, owner=owner) as ctx:
            return await run_submit_pump(ctx)

    return asyncio.run(main())


def test_cancels_racing_claims_on_a_budgeted_batch_never_deadlock(
    pg_db: Database, pg_settings: Settings
) -> None:
    rng = random.Random(12)
    with claim_contexts(pg_db, pg_settings, ["pump-a", "pump-b", "pump-c"]) as pumps:
        for _ in range(ROUNDS):
            key = new_api_key(pg_db)
            _limit_key(pg_db, key, max_points_total=400)
            rows = [_priced(key, rng.choice((5, 10, 20))) for _ in range(30)]
            batch_id = insert_batch(pg_db, key, rows)
            _limit_batch(pg_db, batch_id, 150)
            one = rng.choice(rows)["id"]
            outcome = race(
                [partial(claim, pump) for pump in pumps]
                + [
                    partial(cancel_batch_as_the_api_does, pg_db, batch_id),
                    partial(cancel_job_as_the_api_does, pg_db, one),
                ]
            )
            assert outcome.errors == [], outcome.errors
            ended = jobs(pg_db, [row["id"] for row in rows])
            for row in ended:
                claimed = row.status == QUEUED and row.lease_owner is not None
                assert row.status in (CANCELLED, FAILED) or claimed, row.status
                assert row.status != FAILED or row.error_code == "budget_exceeded"
            held = batch_totals(pg_db, batch_id)
            assert held.committed == held.held <= 150
            assert key_totals(pg_db, key).committed == held.held


def test_concurrent_submit_pumps_never_commit_more_than_the_budget(
    pg_db: Database, pg_settings: Settings
) -> None:
    rng = random.Random(7)
    owners = [f"pump-{n}" for n in range(4)]
    for _ in range(20):
        key = new_api_key(pg_db)
        budget = rng.randint(40, 120)
        _limit_key(pg_db, key, max_points_total=budget, max_points_daily=budget - 5)
        batches = [
            insert_batch(pg_db, key, [_priced(key, rng.randint(1, 25)) for _ in range(12)])
            for _ in range(2)
        ]
        _limit_batch(pg_db, batches[0], budget // 2)
        insert_jobs(pg_db, [_priced(key, rng.randint(1, 25)) for _ in range(12)])
        outcome = race(
            [partial(submit, pg_db, pg_settings, up.submitted(), owner=owner) for owner in owners]
        )
        assert outcome.errors == []
        with pg_db.read_session() as session:
            sent = session.scalars(
                select(Job.points_held).where(Job.api_key_id == key, Job.status == RUNNING)
            ).all()
            in_first = session.scalars(
                select(Job.points_held).where(Job.batch_id == batches[0], Job.status == RUNNING)
            ).all()
        assert sent, "nothing was submitted at all"
        assert sum(sent) <= budget - 5
        assert sum(in_first) <= budget // 2
        assert key_totals(pg_db, key).committed == sum(sent)


def test_a_job_cancelled_while_running_still_counts(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    _limit_key(db, key, max_points_total=100)
    [first] = insert_jobs(db, [_priced(key, 60)])
    submit(db, settings, up.submitted("task-a"))
    with db.session() as session:
        cancel_job(session, first)
    [second] = insert_jobs(db, [_priced(key, 50)])
    calls = up.Recorder(up.submitted("task-b"))
    submit(db, settings, calls)
    assert (job(db, first).status, job(db, second).error_code) == (CANCELLED, "budget_exceeded")
    assert calls.requests == []


def test_a_submit_uncertain_job_still_counts(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    _limit_key(db, key, max_points_total=100)
    [first] = insert_jobs(db, [_priced(key, 60)])
    submit(db, settings, up.raises(httpx.ReadTimeout))
    assert job(db, first).error_code == "submit_uncertain"
    [second] = insert_jobs(db, [_priced(key, 50)])
    submit(db, settings, up.submitted())
    assert job(db, second).error_code == "budget_exceeded"


def test_a_rejected_submit_gives_its_points_back(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    _limit_key(db, key, max_points_total=100)
    [first] = insert_jobs(db, [_priced(key, 60)])
    submit(db, settings, up.refused())
    assert job(db, first).error_code == "upstream_rejected"
    [second] = insert_jobs(db, [_priced(key, 50)])
    submit(db, settings, up.submitted())
    assert job(db, second).status == RUNNING
    assert key_totals(db, key).committed == 50


def test_a_timed_out_job_counts_until_its_late_cost_is_known(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    _limit_key(db, key, max_points_total=100)
    [first] = insert_jobs(db, [_priced(key, 60, deadline_seconds=1)])
    submit(db, settings, up.submitted("task-slow"))
    later = utcnow() + dt.timedelta(minutes=5)
    with db.session() as session:
        # what the poll pump does when the last poll after the deadline finds the task going
        row = session.get(Job, first)
        assert row is not None
        time_out_job(
            session,
            first,
            submitted_at=row.submitted_at,
            deadline_at=row.deadline_at,
            upstream_task_id=row.upstream_task_id,
            now=later,
            reconcile_at=later,
        )
    assert job(db, first).status == TIMED_OUT
    [second] = insert_jobs(db, [_priced(key, 50)])
    submit(db, settings, up.submitted())
    assert job(db, second).error_code == "budget_exceeded"
    # the reconcile pass finds the task finished after all, and cheaper than feared
    with db.session() as session:
        transition(
            session,
            first,
            from_status=TIMED_OUT,
            to_status=SUCCEEDED,
            reason="late_success",
            values={"cost_points": 30},
        )
        settle_costs(session, [first])
    [third] = insert_jobs(db, [_priced(key, 50)])
    submit(db, settings, up.submitted())
    assert job(db, third).status == RUNNING
    assert key_totals(db, key).committed == 80


def test_the_limiter_is_asked_while_no_row_is_locked(
    pg_db: Database, pg_settings: Settings
) -> None:
    key = new_api_key(pg_db)
    _limit_key(pg_db, key, max_points_total=1000)
    ids = [row["id"] for row in [_priced(key, 10) for _ in range(3)]]
    batch_id = insert_batch(pg_db, key, [_priced(key, 10, job_id=job_id) for job_id in ids])
    _limit_batch(pg_db, batch_id, 1000)
    probes: list[str] = []
    with claim_contexts(pg_db, pg_settings, ["pump"]) as [ctx]:
        acquire = ctx.limiter.acquire

        def slow_redis(provider: str, job_ids: Any, *, running: int) -> Grant:
            # another session must be able to take every row the claim is about to use
            with pg_db.engine.connect() as other:
                for table, where in (("jobs", "id = ANY(:ids)"), ("batches", "id = :b")):
                    other.execute(
                        text(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE NOWAIT"),
                        {"ids": list(job_ids), "b": batch_id},
                    )
                other.execute(
                    text("SELECT 1 FROM api_keys WHERE id = :k FOR UPDATE NOWAIT"), {"k": key}
                )
                other.rollback()
            probes.append(provider)
            return acquire(provider, job_ids, running=running)

        ctx.limiter.acquire = slow_redis  # type: ignore[method-assign]
        assert len(claim(ctx)) == 3
    assert probes == ["flux"]


def test_a_grant_the_claim_did_not_use_is_given_back(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, provider_max_in_flight={"default": 1})
    key = new_api_key(db)
    created = utcnow() - dt.timedelta(seconds=10)
    [taken] = insert_jobs(db, [_priced(key, 10, created_at=created)])
    [waiting] = insert_jobs(db, [_priced(key, 10)])
    with claim_contexts(db, settings, ["pump"]) as [ctx]:
        acquire = ctx.limiter.acquire

        def then_another_pump_takes_it(provider: str, job_ids: Any, *, running: int) -> Grant:
            grant = acquire(provider, job_ids, running=running)
            with db.session() as session:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(grant.job_ids))
                    .values(lease_owner="other", lease_until=utcnow() + dt.timedelta(minutes=1))
                )
            return grant

        ctx.limiter.acquire = then_another_pump_takes_it  # type: ignore[method-assign]
        # the only in-flight slot went to a job the claim then could not lease
        assert claim(ctx) == []
        ctx.limiter.acquire = acquire  # type: ignore[method-assign]
        assert [item.job_id for item in claim(ctx)] == [waiting]
    assert job(db, taken).lease_owner == "other"


def test_a_budget_used_up_spends_no_limiter_grant(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, provider_rate_per_second={"flux": 0.1})
    poor, rich = new_api_key(db, "poor"), new_api_key(db, "rich")
    _limit_key(db, poor, max_points_total=5)
    created = utcnow() - dt.timedelta(seconds=10)
    refused = insert_jobs(db, [_priced(poor, 10, created_at=created) for _ in range(3)])
    [paying] = insert_jobs(db, [_priced(rich, 10)])
    submit(db, settings, up.submitted())
    # the bucket holds one flux token: it went to the job that could be paid for
    assert {job(db, job_id).error_code for job_id in refused} == {"budget_exceeded"}
    assert job(db, paying).status == RUNNING


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []
    engines: list[Engine] = list({id(e): e for e in (db.engine, db.read_engine)}.values())

    def count(*args: Any) -> None:
        verb = str(args[2]).split()[0]
        if verb != "BEGIN":  # SQLite's own transaction start
            seen.append(verb)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def _mixed_claim(db: Database, settings: Settings, per_kind: int) -> list[str]:
    """A claim over `per_kind` jobs of each kind: sendable in two batches and a key with
    budgets and unpriced models, refused by a budget, follow-ups waiting for or failing with
    their source, with pending costs to settle."""
    key, other = new_api_key(db), new_api_key(db)
    _limit_key(db, key, max_points_total=10**6, max_points_daily=10**6)
    rows = [job_row(key, model=m) for _ in range(per_kind) for m in ("flux-2-pro", "z-image-turbo")]
    batch_a = insert_batch(db, key, rows[: len(rows) // 2])
    insert_batch(db, other, [_priced(other, 5) for _ in range(per_kind)])
    _limit_batch(db, batch_a, 10**6)
    tight = insert_batch(db, key, [_priced(key, 40) for _ in range(per_kind)])
    _limit_batch(db, tight, 50)
    insert_jobs(db, rows[len(rows) // 2 :])
    running = job_row(key, model="mj-v7")
    running.update(status=RUNNING, upstream_task_id="grid")
    failed = job_row(key, model="mj-v7")
    failed.update(status=FAILED, error_code="upstream_rejected")
    costed = job_row(key)
    costed.update(status=SUCCEEDED, upstream_task_id="t", cost_points=7, finished_at=utcnow())
    insert_jobs(db, [running, failed] + [dict(costed, id=f"job_c{n}") for n in range(per_kind)])
    follow = {"model": "mj-v7", "action": "split", "source_index": 1}
    insert_jobs(db, [job_row(key, source_job_id=running["id"], **follow) for _ in range(per_kind)])
    insert_jobs(db, [job_row(key, source_job_id=failed["id"], **follow) for _ in range(per_kind)])
    with claim_contexts(db, settings, ["pump"]) as [ctx], counting_statements(db) as seen:
        work = claim(ctx)
    assert len(work) >= per_kind  # the claim did real work
    return seen


def test_a_claim_costs_the_same_statements_for_ten_jobs_or_a_hundred(
    db_url: str, settings_for: SettingsFor
) -> None:
    settings = pipeline_settings(
        settings_for, db_url, submit_batch_size=1000, metachat_max_connections=1000
    )
    counts = []
    for per_kind in (2, 20):
        database = Database(db_url)
        try:
            with database.session() as session:
                session.execute(text("DELETE FROM job_events"))
                session.execute(text("DELETE FROM webhook_deliveries"))
                session.execute(text("DELETE FROM jobs"))
            counts.append(_mixed_claim(database, settings, per_kind))
        finally:
            database.dispose()
    small, large = counts
    assert len(small) == len(large), (small, large)
    assert len(small) <= 20, small
