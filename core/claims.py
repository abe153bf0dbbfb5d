"""Claiming due rows: the few SQL statements that let any number of pumps share the jobs table.

A pump *claims* a row by writing itself into ``lease_owner`` with a ``lease_until`` in the
future, in a compare-and-set ``UPDATE … WHERE <still claimable>`` whose ``RETURNING`` says which
rows it won. On PostgreSQL the candidates are first locked with ``FOR UPDATE SKIP LOCKED`` so
concurrent pumps pick disjoint rows; on SQLite the write transaction (``BEGIN IMMEDIATE``) already
serialises claimers and the compare-and-set does the rest.

Queued rows are claimed *fairly*: ranked within their batch (or, outside a batch, their API key)
by ``priority desc, created_at``, lowest ranks first, so every batch and key gets a turn on every
claim and a single job is never stuck behind someone's ten thousand.

A queued row whose lease ran out while ``lease_owner`` is still set was abandoned mid-submit: the
request may have reached MetaChat. Submit claims never take such rows; maintenance decides what
happens to them (`abandoned_submits`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from core.settings import Settings
from core.tables import (
    ARCHIVE_PENDING,
    DELIVERY_PENDING,
    QUEUED,
    RUNNING,
    TIMED_OUT,
    Job,
    WebhookDelivery,
)


def call_budget_seconds(settings: Settings) -> float:
    """The longest one MetaChat call may take before we stop waiting for it."""
    return settings.metachat_connect_timeout + settings.metachat_read_timeout + 2.0


def last_poll_grace(settings: Settings) -> float:
    """How long after its deadline a job whose polls fail is still polled before it times out
    without a last answer (the poll pump; maintenance leaves such rows alone meanwhile)."""
    return 2 * call_budget_seconds(settings)


def is_due(now: dt.datetime) -> ColumnElement[bool]:
    """Rows whose next step is due at ``now`` (no ``due_at`` means at once)."""
    return or_(Job.due_at.is_(None), Job.due_at <= now)


def _lease_free(now: dt.datetime) -> ColumnElement[bool]:
    return or_(Job.lease_until.is_(None), Job.lease_until < now)


def any_due(session: Session, *, status: str, now: dt.datetime) -> bool:
    """Whether a row of ``status`` is due and unleased: the cheap check before a claim."""
    conditions = [Job.status == status, is_due(now), _lease_free(now)]
    if status == QUEUED:
        conditions.append(Job.lease_owner.is_(None))
    row = session.execute(select(Job.id).where(*conditions).limit(1)).first()
    return row is not None


@dataclass(frozen=True)
class DueWork:
    """What a pulse found: whether each pump has work now (or, for polls, when it will)."""

    submit: bool
    poll_at: dt.datetime | None
    deliver: bool
    archive: bool = False

    def kinds(self, *, now: dt.datetime, within: dt.timedelta) -> list[str]:
        """The pumps with work due now or (polls) within ``within``, in pump order."""
        found = []
        if self.submit:
            found.append("submit")
        if self.poll_at is not None and self.poll_at <= now + within:
            found.append("poll")
        if self.deliver:
            found.append("deliver")
        if self.archive:
            found.append("archive")
        return found


def _earliest_due(status: str, now: dt.datetime) -> Any:
    """The earliest ``due_at`` of unleased ``status`` rows: an ``ORDER BY due_at LIMIT 1`` on
    the ``(status, due_at)`` index, as a scalar subquery."""
    return (
        select(Job.due_at)
        .where(Job.status == status, Job.due_at.is_not(None), _lease_free(now))
        .order_by(Job.due_at)
        .limit(1)
        .scalar_subquery()
    )


def due_work(session: Session, *, now: dt.datetime) -> DueWork:
    """Whether the submit, poll, deliver and archive pumps have anything to do, in one statement.

    Each part is a ``LIMIT 1`` on its own index (the ones `any_due`, `next_poll_due`, the
    delivery claim and the archive claim use), so an idle service pays one indexed read per
    pulse for all four.
    """
    submit = (
        select(Job.id)
        .where(
            Job.status == QUEUED,
            is_due(now),
            _lease_free(now),
            Job.lease_owner.is_(None),
        )
        .limit(1)
        .scalar_subquery()
    )

    delivery = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state == DELIVERY_PENDING,
            WebhookDelivery.due_at <= now,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
        )
        .limit(1)
        .scalar_subquery()
    )
    archive = (
        select(Job.id)
        .where(
            Job.archive_state == ARCHIVE_PENDING,
            Job.archive_due_at <= now,
            or_(Job.archive_lease_until.is_(None), Job.archive_lease_until <= now),
        )
        .limit(1)
        .scalar_subquery()
    )
    row = session.execute(
        select(
            submit.label("submit"),
            _earliest_due(RUNNING, now).label("running"),
            _earliest_due(TIMED_OUT, now).label("timed_out"),
            delivery.label("delivery"),
            archive.label("archive"),
        )
    ).one()
    polls = [_aware(value) for value in (row.running, row.timed_out) if value is not None]
    return DueWork(
        submit=row.submit is not None,
        poll_at=min(polls, default=None),
        deliver=row.delivery is not None,
        archive=row.archive is not None,
    )


def next_due_at(session: Session, *, status: str) -> dt.datetime | None:
    """The earliest ``due_at`` among unleased rows of ``status``."""
    value: dt.datetime | None = session.execute(
        select(func.min(Job.due_at)).where(Job.status == status, Job.lease_owner.is_(None))
    ).scalar_one_or_none()
    return value


def submit_candidates(
    session: Session,
    *,
    now: dt.datetime,
    limit: int,
    providers: Collection[str] = (),
    exclude: bool = True,
) -> Sequence[Row[Any]]:
    """Up to ``limit`` due, unclaimed queued jobs in fair order, read without locks.

    ``providers`` with ``exclude`` (the default) leaves those providers' jobs out; with
    ``exclude=False`` it takes only theirs (the synchronous lane, `worker.sync_calls`).

    Order: rank within ``coalesce(batch_id, api_key_id)`` first (a round-robin over batches and
    keys), then priority and age. Each row carries what the submit claim decides on; the claim
    then takes the ones it can submit with `lease_jobs`, whose compare-and-set settles races.
    """
    tenant = func.coalesce(Job.batch_id, Job.api_key_id)
    order = (Job.priority.desc(), Job.created_at, Job.id)
    ranked = (
        select(
            Job.id,
            Job.provider,
            Job.api_key_id,
            Job.batch_id,
            Job.model,
            Job.action,
            Job.source_job_id,
            Job.estimated_points,
            Job.points_held,
            Job.points_held_on,
            Job.priority,
            Job.created_at,
            func.row_number().over(partition_by=tenant, order_by=order).label("turn"),
        )
        .where(
            Job.status == QUEUED,
            is_due(now),
            Job.lease_owner.is_(None),
            *_provider_filter_of(providers, exclude),
        )
        .subquery("ranked")
    )
    statement = (
        select(ranked)
        .order_by(ranked.c.turn, ranked.c.priority.desc(), ranked.c.created_at, ranked.c.id)
        .limit(limit)
    )
    return session.execute(statement).all()


def _provider_filter_of(providers: Collection[str], exclude: bool) -> list[ColumnElement[bool]]:
    if not providers:
        return [] if exclude else [false()]
    wanted = sorted(providers)
    return [Job.provider.not_in(wanted) if exclude else Job.provider.in_(wanted)]


def lease_jobs(
    session: Session,
    job_ids: Collection[str],
    *,
    status: str,
    owner: str,
    now: dt.datetime,
    until: dt.datetime,
    extra: ColumnElement[bool] | None = None,
) -> list[Job]:
    """Compare-and-set the lease of ``job_ids``; returns the rows won (the others were taken)."""
    if not job_ids:
        return []
    conditions = [Job.id.in_(list(job_ids)), Job.status == status, _lease_free(now)]
    values: dict[str, Any] = {"lease_owner": owner, "lease_until": until}
    if status == QUEUED:
        conditions.append(Job.lease_owner.is_(None))
        # a new submit lease starts with no trail: nothing of it has been sent yet
        values["submit_sent_at"] = None
    if extra is not None:
        conditions.append(extra)
    statement = (
        update(Job)
        .where(*conditions)
        .values(**values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list(session.execute(statement).scalars())


def claim_due(
    session: Session,
    *,
    status: str,
    owner: str,
    now: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> list[Job]:
    """Claim up to ``limit`` due rows of ``status`` (running: polls; timed_out: reconcile),
    earliest due first."""
    candidates = session.execute(
        select(Job.id)
        .where(Job.status == status, Job.due_at.is_not(None), Job.due_at <= now, _lease_free(now))
        .order_by(Job.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars()
    won = lease_jobs(
        session,
        list(candidates),
        status=status,
        owner=owner,
        now=now,
        until=until,
        extra=and_(Job.due_at.is_not(None), Job.due_at <= now),
    )
    return sorted(won, key=lambda job: (job.due_at or now, job.id))


def hold_leases(session: Session, job_ids: Collection[str], *, status: str, owner: str) -> set[str]:
    """Lock ``job_ids`` that are still ``status`` and leased by ``owner``; returns those ids.

    Call it first in the transaction that writes outcomes: a row whose lease was taken over (or
    whose status changed, e.g. cancelled) must not be moved by this pump.
    """
    if not job_ids:
        return set()
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == status, Job.lease_owner == owner)
        .values(lease_owner=owner)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return set(rows)


def release_jobs(
    session: Session,
    job_ids: Collection[str],
    *,
    status: str,
    owner: str,
    values: dict[str, Any] | None = None,
) -> int:
    """Give up ``owner``'s lease on ``job_ids`` (still ``status``), writing ``values`` too."""
    if not job_ids:
        return 0
    result = session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == status, Job.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, **(values or {}))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def mark_submits_sent(
    session: Session, job_ids: Collection[str], *, owner: str, now: dt.datetime
) -> set[str]:
    """The submit trail: mark leased jobs (a part of a round) as sent, in one statement.

    Committed immediately before the round's requests go on the wire. A job abandoned with
    the mark may have reached MetaChat; one abandoned without it never left
    (`core.maintenance`). Returns the ids still leased by ``owner``: only those may be sent.
    """
    if not job_ids:
        return set()
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == QUEUED, Job.lease_owner == owner)
        .values(submit_sent_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return set(rows)


def release_each(
    session: Session,
    rows: Sequence[dict[str, Any]],
    *,
    status: str,
    owner: str,
    shared: dict[str, Any] | None = None,
) -> int:
    """`release_jobs` with values of its own for every row, in one executemany statement.

    Every mapping has the row's ``id`` and the same set of column names; ``shared`` holds
    values (or SQL expressions such as ``Job.polls + 1``) common to all rows.
    """
    if not rows:
        return 0
    table = cast(Table, Job.__table__)
    columns = sorted(name for name in rows[0] if name != "id")
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("r_id"),
            table.c.status == status,
            table.c.lease_owner == owner,
        )
        .values(
            lease_owner=None,
            lease_until=None,
            **(shared or {}),
            **{name: bindparam(f"r_{name}", type_=table.c[name].type) for name in columns},
        )
    )
    params = [{"r_id": row["id"], **{f"r_{name}": row[name] for name in columns}} for row in rows]
    result = session.execute(statement, params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def next_poll_due(session: Session, *, now: dt.datetime) -> dict[str, dt.datetime]:
    """The earliest due time of unleased running and timed-out rows, in one indexed read.

    Each status is its own ``ORDER BY due_at LIMIT 1`` on the ``(status, due_at)`` index, so
    the read stops at the first unleased row instead of scanning every running job.
    """

    running, timed_out = session.execute(
        select(
            _earliest_due(RUNNING, now).label("running"),
            _earliest_due(TIMED_OUT, now).label("timed_out"),
        )
    ).one()
    found = {RUNNING: running, TIMED_OUT: timed_out}
    return {status: _aware(value) for status, value in found.items() if value is not None}


def _aware(value: Any) -> dt.datetime:
    # a scalar subquery loses the column's type on some backends: SQLite gives naive UTC text
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def note_upstream_ids(session: Session, accepted: Sequence[tuple[str, str]], *, owner: str) -> None:
    """Write MetaChat's task ids onto still-leased queued jobs, ahead of their transition.

    Committed on its own the moment answers land, it shrinks the window in which a crash loses
    an accepted submit to one tiny statement: a job abandoned with its task id noted is
    recovered as running by maintenance instead of being failed as uncertain.
    """
    if not accepted:
        return
    table = Job.metadata.tables["jobs"]
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("job_id"),
            table.c.status == QUEUED,
            table.c.lease_owner == owner,
        )
        .values(upstream_task_id=bindparam("task_id")),
        [{"job_id": job_id, "task_id": task_id} for job_id, task_id in accepted],
    )


def running_counts(session: Session) -> dict[str, int]:
    """Jobs running upstream, by provider: the base of the in-flight cap."""
    rows = session.execute(
        select(Job.provider, func.count()).where(Job.status == RUNNING).group_by(Job.provider)
    ).all()
    return {provider: int(count) for provider, count in rows}


def abandoned_submits(session: Session, *, now: dt.datetime, limit: int) -> list[Job]:
    """Queued rows whose submitter vanished mid-call (lease expired, owner still set), locked."""
    return list(
        session.execute(
            select(Job)
            .where(
                Job.status == QUEUED,
                Job.lease_owner.is_not(None),
                Job.lease_until.is_not(None),
                Job.lease_until < now,
            )
            .order_by(Job.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def clear_expired_leases(session: Session, *, statuses: Sequence[str], now: dt.datetime) -> int:
    """Forget expired leases on rows of ``statuses`` (their owners died; the rows stay due)."""
    result = session.execute(
        update(Job)
        .where(
            Job.status.in_(list(statuses)),
            Job.lease_until.is_not(None),
            Job.lease_until < now,
        )
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
