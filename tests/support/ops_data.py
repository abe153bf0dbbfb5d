"""Hand-made operator datasets: jobs and deliveries with chosen times, so that every figure the
stats show (counts, percentiles, points, stuck jobs) is known in advance."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core import ids
from core.db import Database
from core.keys import CreatedKey, create_api_key
from core.tables import Batch, Job, JobEvent, WebhookDelivery

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(hh: int, mm: int, ss: float = 0.0, *, day: int = 1) -> dt.datetime:
    """A moment on 2026-12-`day` (UTC)."""
    return dt.datetime(2026, 12, day, hh, mm, tzinfo=dt.UTC) + dt.timedelta(seconds=ss)


def add_job(
    session: Session,
    api_key_id: str,
    *,
    status: str,
    provider: str,
    model: str,
    created_at: dt.datetime,
    action: str = "generate",
    submitted_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    **values: Any,
) -> Job:
    """Insert one job row; `values` are any other `Job` columns."""
    job = Job(
        id=values.pop("id", None) or ids.new_id(ids.JOB),
        api_key_id=api_key_id,
        status=status,
        provider=provider,
        model=model,
        action=action,
        prompt=values.pop("prompt", "a lighthouse at dawn"),
        params=values.pop("params", {}),
        images=values.pop("images", []),
        priority=values.pop("priority", 0),
        attempts=values.pop("attempts", 1 if submitted_at else 0),
        polls=values.pop("polls", 0),
        progress=values.pop("progress", 0),
        created_at=created_at,
        updated_at=finished_at or submitted_at or created_at,
        submitted_at=submitted_at,
        finished_at=finished_at,
        upstream_task_id=values.pop(
            "upstream_task_id", f"task-{ids.new_id('t')[2:]}" if submitted_at else None
        ),
        **values,
    )
    session.add(job)
    session.flush()
    return job


def finished_job(
    session: Session,
    api_key_id: str,
    *,
    status: str,
    provider: str,
    model: str,
    finished_at: dt.datetime,
    upstream_seconds: float | None,
    queue_seconds: float = 1.0,
    **values: Any,
) -> Job:
    """A job that ended at `finished_at` after `upstream_seconds` upstream (None: never sent)."""
    if upstream_seconds is None:
        created = finished_at - dt.timedelta(seconds=queue_seconds)
        return add_job(
            session,
            api_key_id,
            status=status,
            provider=provider,
            model=model,
            created_at=created,
            finished_at=finished_at,
            **values,
        )
    submitted = finished_at - dt.timedelta(seconds=upstream_seconds)
    return add_job(
        session,
        api_key_id,
        status=status,
        provider=provider,
        model=model,
        created_at=submitted - dt.timedelta(seconds=queue_seconds),
        submitted_at=submitted,
        finished_at=finished_at,
        **values,
    )


def add_event(
    session: Session, job_id: str, *, at_: dt.datetime, from_: str | None, to: str, reason: str
) -> None:
    session.add(JobEvent(job_id=job_id, at=at_, from_status=from_, to_status=to, reason=reason))
    session.flush()


def add_delivery(
    session: Session,
    api_key_id: str,
    *,
    state: str,
    attempts: int,
    updated_at: dt.datetime,
    url: str = "https://hooks.example.com/in?token=s3cr3t",
    job_id: str | None = None,
    **values: Any,
) -> WebhookDelivery:
    row = WebhookDelivery(
        id=ids.new_id(ids.DELIVERY),
        api_key_id=api_key_id,
        job_id=job_id,
        event_type=values.pop("event_type", "job.succeeded"),
        url=url,
        payload="{}",
        state=state,
        attempts=attempts,
        due_at=values.pop("due_at", updated_at),
        created_at=values.pop("created_at", updated_at - dt.timedelta(minutes=1)),
        updated_at=updated_at,
        **values,
    )
    session.add(row)
    session.flush()
    return row


def add_batch(
    session: Session, api_key_id: str, *, created_at: dt.datetime, total: int, **values: Any
) -> Batch:
    batch = Batch(
        id=ids.new_id(ids.BATCH),
        api_key_id=api_key_id,
        status=values.pop("status", "running"),
        total=total,
        created_at=created_at,
        **values,
    )
    session.add(batch)
    session.flush()
    return batch


@dataclass
class OpsDataset:
    """The keys of `seed_ops_dataset` and the ids a test wants to point at."""

    alpha: CreatedKey
    beta: CreatedKey
    admin: CreatedKey
    stuck_mj: str
    stuck_seedream: str
    stuck_lease: str
    healthy_flux: str
    flux_failure: str
    batch_id: str


def seed_ops_dataset(db: Database, *, now: dt.datetime = NOW) -> OpsDataset:
    """The dataset every stats test reads, with `now` as 12:00 (default: 2026-12-01 12:00 UTC;
    pass a whole minute). What it holds, in times of that day:

    - midjourney (alpha): 5 succeeded, upstream 10/20/30/40 /50 s, queue 1..5 s, 10 points each,
      ended 11:10:00..11:10:40; 1 failed `upstream_rejected` at 11:30 before any submit.
    - flux (beta): 2 succeeded (upstream 4 and 6 s, queue 0.5 and 1.5 s, 4 points each, ended
      11:20:05 and 11:21:05) and 1 failed `upstream_rejected` (upstream 2 s, queue 1 s, 11:21:30).
    - grok (alpha): 1 timed_out `deadline_exceeded` at 11:40 (queue 2 s); z-image (alpha):
      1 cancelled at 11:50 before submit.
    - running now: mj submitted 200 s ago, flux 3 s ago (beta), seedream 1000 s ago, grok whose
      lease expired 30 s ago. Queued: 2 (alpha), the oldest created 600 s ago.
    - two days earlier: 1 succeeded mj job of 1000 points (outside a 2 h window).
    - deliveries (alpha): pending untried, pending after 2 failures (HTTP 500), dead 10 min
      ago, dead 3 days ago, succeeded.
    - one running batch (alpha) of 4 jobs: 2 succeeded, 1 queued, 1 running.
    """
    shift = now - NOW

    def t(hh: int, mm: int, ss: float = 0.0) -> dt.datetime:
        return at(hh, mm, ss) + shift

    with db.session() as s:
        alpha = create_api_key(s, name="alpha")
        beta = create_api_key(s, name="beta")
        admin = create_api_key(s, name="ops", admin=True)
        a, b = alpha.id, beta.id
        batch = add_batch(s, a, created_at=t(11, 0), total=4)
        for i, (upstream, wait) in enumerate(
            zip((10, 20, 30, 40, 50), (1, 2, 3, 4, 5), strict=True)
        ):
            finished_job(
                s,
                a,
                status="succeeded",
                provider="midjourney",
                model="mj-v7",
                action="imagine",
                finished_at=t(11, 10, 10 * i),
                upstream_seconds=upstream,
                queue_seconds=wait,
                cost_points=10,
                batch_id=batch.id if i < 2 else None,
            )
        finished_job(
            s,
            a,
            status="failed",
            provider="midjourney",
            model="mj-v7",
            action="imagine",
            finished_at=t(11, 30),
            upstream_seconds=None,
            error_code="upstream_rejected",
            error_message="banned prompt",
        )
        for finished, upstream, wait in ((t(11, 20, 5), 4, 0.5), (t(11, 21, 5), 6, 1.5)):
            finished_job(
                s,
                b,
                status="succeeded",
                provider="flux",
                model="flux-2-pro",
                finished_at=finished,
                upstream_seconds=upstream,
                queue_seconds=wait,
                cost_points=4,
            )
        flux_failure = finished_job(
            s,
            b,
            status="failed",
            provider="flux",
            model="flux-2-pro",
            finished_at=t(11, 21, 30),
            upstream_seconds=2,
            queue_seconds=1.0,
            error_code="upstream_rejected",
            error_message="bad aspect ratio",
        )
        add_event(s, flux_failure.id, at_=t(11, 21, 27), from_=None, to="queued", reason="created")
        add_event(
            s,
            flux_failure.id,
            at_=t(11, 21, 28),
            from_="queued",
            to="running",
            reason="submitted",
        )
        add_event(
            s,
            flux_failure.id,
            at_=t(11, 21, 30),
            from_="running",
            to="failed",
            reason="upstream_rejected",
        )
        finished_job(
            s,
            a,
            status="timed_out",
            provider="grok",
            model="grok-imagine-image-2.0",
            finished_at=t(11, 40),
            upstream_seconds=600,
            queue_seconds=2.0,
            error_code="deadline_exceeded",
            error_message="no answer within 600 s",
        )
        finished_job(
            s,
            a,
            status="cancelled",
            provider="z-image",
            model="z-image-turbo",
            finished_at=t(11, 50),
            upstream_seconds=None,
        )
        ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
        stuck_mj = add_job(
            s,
            a,
            status="running",
            provider="midjourney",
            model="mj-v7",
            action="imagine",
            created_at=ago(205),
            submitted_at=ago(200),
            lease_until=None,
            batch_id=batch.id,
        )
        healthy_flux = add_job(
            s,
            b,
            status="running",
            provider="flux",
            model="flux-2-pro",
            created_at=ago(4),
            submitted_at=ago(3),
        )
        stuck_seedream = add_job(
            s,
            a,
            status="running",
            provider="seedream",
            model="doubao-seedream-4-5-251128",
            created_at=ago(1001),
            submitted_at=ago(1000),
        )
        stuck_lease = add_job(
            s,
            a,
            status="running",
            provider="grok",
            model="grok-imagine-image-2.0",
            created_at=ago(3),
            submitted_at=ago(2),
            lease_until=ago(30),
            lease_owner="w1:42",
        )
        add_job(
            s,
            a,
            status="queued",
            provider="midjourney",
            model="mj-v7",
            action="imagine",
            created_at=ago(600),
            due_at=ago(600),
            batch_id=batch.id,
        )
        add_job(
            s,
            a,
            status="queued",
            provider="flux",
            model="flux-2-pro",
            created_at=ago(60),
            due_at=ago(60),
        )
        finished_job(
            s,
            a,
            status="succeeded",
            provider="midjourney",
            model="mj-v7",
            action="imagine",
            finished_at=now - dt.timedelta(days=2),
            upstream_seconds=30,
            cost_points=1000,
        )
        add_delivery(s, a, state="pending", attempts=0, updated_at=ago(5))
        add_delivery(
            s,
            a,
            state="pending",
            attempts=2,
            updated_at=ago(20),
            last_status_code=500,
            last_error="HTTP 500",
        )
        add_delivery(
            s,
            a,
            state="dead",
            attempts=9,
            updated_at=ago(600),
            last_status_code=404,
            last_error="HTTP 404",
        )
        add_delivery(s, a, state="dead", attempts=9, updated_at=now - dt.timedelta(days=3))
        add_delivery(s, a, state="succeeded", attempts=1, updated_at=ago(100))
    return OpsDataset(
        alpha=alpha,
        beta=beta,
        admin=admin,
        stuck_mj=stuck_mj.id,
        stuck_seedream=stuck_seedream.id,
        stuck_lease=stuck_lease.id,
        healthy_flux=healthy_flux.id,
        flux_failure=flux_failure.id,
        batch_id=batch.id,
    )
