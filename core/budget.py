"""Credit budgets: an API key may carry a daily and a total limit (`max_points_daily`,
`max_points_total`), a batch a limit of its own (`max_points`). A queued job that would cross any
of them is not submitted; the submit claim fails it with `budget_exceeded`. A budget is a
promise: whatever the interleaving of pumps, cancels and crashes, the points committed against
it never pass it (by estimate; see "how much" below).

**What counts.** Every job *holds* some points (`jobs.points_held`), and the key and batch rows
keep the running sum of their jobs' holds (`points_committed`; for keys also `points_today`, the
holds taken on `points_day`, a UTC day). A job holds:

- its actual `cost_points` once MetaChat reported it;
- else its estimate, from the moment a submit claim leases it, for as long as MetaChat may have
  the task: while it is being sent and running, and after it timed out, was cancelled while
  running or in flight, or failed as `submit_uncertain` or `invalid_upstream_response`;
- nothing when it certainly never reached MetaChat: a job failed before or by its submit with no
  task (`budget_exceeded`, `source_failed`, `upstream_rejected`, `upstream_unavailable`, …),
  or cancelled while waiting in the queue.

Pruning deletes old jobs but never touches the totals, so `max_points_total` is a lifetime limit,
not a rolling window. The daily total counts the holds taken (by a claim) on the current UTC day.

**How much.** A job's estimate is its `estimated_points` (the catalogue price when it was
accepted) if set, else the catalogue price of its model and action now, else the average actual
cost of that model's recent jobs (the last `HISTORY_JOBS` costed jobs of the last `HISTORY_DAYS`
days), else 0. A job goes ahead when the points committed plus its estimate stay within every
limit that applies; once a limit is used up (committed ≥ limit) no job goes ahead, even one
estimated at 0. Jobs are decided in claim order, each admitted job counting for the next.

**Keeping the totals.** A claim holds the estimate of each job it leases (`BudgetLedger`). When
a hold must change later (the cost arrived, or the submit failed without a task), the job lands
in the small partial index `ix_jobs_points_unsettled`; `settle_costs` folds such jobs into the
totals, and every claim first settles those of the keys it is about to judge (up to
`SETTLE_LIMIT` at a time), so claims do not depend on anyone else calling `settle_costs`.

**Lock order.** Batch rows, then API key rows (``FOR NO KEY UPDATE``, so inserts referencing
them, new jobs and webhook rows, never wait), then job rows. Claims and cancels take them in that
order; the claim asks the limiter before it takes any lock and skips job rows others hold. The
pumps' own writes on job rows touch no batch or key row. Only `settle_costs` (and pruning, which
calls it) takes job rows first, and only rows of jobs already finished and committed as such,
skipping locked ones: no holder of a batch or key row waits on those. So no cycle can form.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Date, Table, bindparam, case, cast, func, or_, select, text, union_all
from sqlalchemy.orm import Session

from core.tables import POINTS_UNSETTLED, ApiKey, Batch, Job, utcnow
from metachat import Catalogue, UnknownAction, UnknownModel

BUDGET_EXCEEDED = "budget_exceeded"
HISTORY_JOBS = 500
HISTORY_DAYS = 30
# Pending holds a claim settles at most (the rest wait for the next one); keeps every IN list
# well under the drivers' parameter limits.
SETTLE_LIMIT = 5000


class PricedSpec(Protocol):
    """What a pre-flight estimate needs of a job spec (a `ValidatedSpec` fits)."""

    @property
    def model(self) -> str: ...
    @property
    def action(self) -> str: ...


@dataclass(frozen=True)
class BudgetVerdict:
    """What `BudgetLedger.admit` decided for one claim of queued jobs.

    `refused` maps the id of each job to fail with `budget_exceeded` to a message naming the
    limit; `holds` gives the points each admitted job now holds.
    """

    refused: dict[str, str] = field(default_factory=dict)
    holds: dict[str, int] = field(default_factory=dict)

    @property
    def refused_ids(self) -> list[str]:
        return list(self.refused)


@dataclass(frozen=True)
class BudgetEstimate:
    """A pre-flight answer for `POST /v1/batches?dry_run=true`.

    `remaining` holds what is left of each limit before this batch (`None`: no such limit);
    `unpriced` counts the jobs estimated at 0 because nothing is known of their price.
    """

    estimated_points: int
    fits_budget: bool
    remaining: dict[str, int | None]
    unpriced: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "estimated_points": self.estimated_points,
            "fits_budget": self.fits_budget,
            "remaining": dict(self.remaining),
            "unpriced_jobs": self.unpriced,
        }


_LIMIT_NAMES = {
    "daily": "the API key's daily budget",
    "total": "the API key's total budget",
    "batch": "the batch's budget",
}


@dataclass
class _Limit:
    kind: str  # daily | total | batch
    limit: int
    committed: int

    def admits(self, points: int, own: int = 0) -> bool:
        base = self.committed - own
        return base < self.limit and base + points <= self.limit

    def refusal(self, points: int, own: int = 0) -> str:
        return (
            f"{_LIMIT_NAMES[self.kind]} of {self.limit} points: {self.committed - own} spent or "
            f"committed, this job needs about {points}"
        )


@dataclass
class _KeyTotals:
    id: str
    max_daily: int | None
    max_total: int | None
    committed: int
    today: int  # held on the ledger's day

    def limits(self) -> list[tuple[_Limit, bool]]:
        """The key's limits, each with whether it is the daily one."""
        found: list[tuple[_Limit, bool]] = []
        if self.max_daily is not None:
            found.append((_Limit("daily", self.max_daily, self.today), True))
        if self.max_total is not None:
            found.append((_Limit("total", self.max_total, self.committed), False))
        return found


@dataclass
class _BatchTotals:
    id: str
    max_points: int | None
    committed: int


class Priced(Protocol):
    """What an estimate needs of a job: a `Job`, or a row with these columns."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def estimated_points(self) -> int | None: ...


class Holder(Protocol):
    """What a hold change needs of a job: a `Job`, or a row with these columns."""

    @property
    def id(self) -> str: ...
    @property
    def api_key_id(self) -> str: ...
    @property
    def batch_id(self) -> str | None: ...
    @property
    def points_held(self) -> int: ...
    @property
    def points_held_on(self) -> dt.date | None: ...


@dataclass(frozen=True)
class _HoldChange:
    """A job's hold going from `old` (taken on `old_day`) to `new` (on `new_day`).

    `settled`: the new hold is what the row itself says (its cost, or nothing for a failure
    that never left), so many such changes are written by one expression, not row by row.
    """

    job_id: str
    api_key_id: str
    batch_id: str | None
    old: int
    old_day: dt.date | None
    new: int
    new_day: dt.date | None
    settled: bool = False


class BudgetLedger:
    """The budget totals of some keys and batches, locked for one transaction, and the holds
    this transaction changes. Open it with `open_ledger` *before* locking any job row (the lock
    order above); `flush` writes everything in at most four statements."""

    def __init__(
        self,
        session: Session | None,
        *,
        day: dt.date,
        keys: dict[str, _KeyTotals],
        batches: dict[str, _BatchTotals],
    ) -> None:
        self._session = session
        self.day = day
        self._keys = keys
        self._batches = batches
        self._changes: dict[str, _HoldChange] = {}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def admit(self, jobs: Sequence[Holder], estimates: Mapping[str, int]) -> BudgetVerdict:
        """Decide in order which of these leased-to-be jobs fit every limit; hold their estimate
        and release whatever the refused ones held. The jobs must be locked by the caller."""
        verdict = BudgetVerdict()
        for job in jobs:
            points = int(estimates[job.id])
            own_total = job.points_held or 0
            own_today = own_total if job.points_held_on == self.day else 0
            key = self._keys[job.api_key_id]
            checks = [(limit, own_today if daily else own_total) for limit, daily in key.limits()]
            batch = self._batches.get(job.batch_id) if job.batch_id else None
            if batch is not None and batch.max_points is not None:
                checks.append((_Limit("batch", batch.max_points, batch.committed), own_total))
            blocked = next(
                ((limit, own) for limit, own in checks if not limit.admits(points, own)), None
            )
            if blocked is not None:
                verdict.refused[job.id] = blocked[0].refusal(points, blocked[1])
                self.release([job])
                continue
            verdict.holds[job.id] = points
            self.change(job, points, self.day)
        return verdict

    def release(self, jobs: Iterable[Holder]) -> None:
        """These jobs certainly never reached MetaChat: they hold nothing any more."""
        for job in jobs:
            if (job.points_held or 0) != 0 or job.id in self._changes:
                self.change(job, 0, None)

    def settle(self, row: Any) -> None:
        """Give a job (a row of `_unsettled`) the hold its row says: its cost, or nothing."""
        self._replace(_settled_change(row))

    def undo(self, job_ids: Collection[str]) -> None:
        """Forget the changes made to these jobs (e.g. a lease that was not won after all)."""
        for job_id in job_ids:
            change = self._changes.pop(job_id, None)
            if change is not None:
                self._count(change, reverse=True)

    def change(self, job: Holder, points: int, day: dt.date | None) -> None:
        """Make `job` hold `points` from `day` (replacing an earlier change in this ledger)."""
        self._replace(_change_of(job, points, day))

    def _replace(self, change: _HoldChange) -> None:
        previous = self._changes.pop(change.job_id, None)
        if previous is not None:
            self._count(previous, reverse=True)
        self._changes[change.job_id] = change
        self._count(change)

    def _count(self, change: _HoldChange, *, reverse: bool = False) -> None:
        sign = -1 if reverse else 1
        key = self._keys.get(change.api_key_id)
        if key is not None:
            key.committed += sign * (change.new - change.old)
            if change.new_day == self.day:
                key.today += sign * change.new
            if change.old_day == self.day:
                key.today -= sign * change.old
        batch = self._batches.get(change.batch_id) if change.batch_id else None
        if batch is not None:
            batch.committed += sign * (change.new - change.old)

    def flush(self) -> None:
        """Write the changed holds and totals (at most four statements)."""
        if self._session is None:
            raise RuntimeError("a preview ledger holds no locks and cannot be written")
        _write_changes(self._session, list(self._changes.values()), day=self.day)
        self._changes.clear()


def open_ledger(
    session: Session,
    *,
    api_key_ids: Iterable[str],
    batch_ids: Iterable[str | None] = (),
    now: dt.datetime | None = None,
    settle: bool = True,
) -> BudgetLedger:
    """Lock these batches, then these keys (``FOR NO KEY UPDATE``, in id order), read their
    totals and, with `settle`, fold in the holds of their jobs still to settle.

    Call it before the transaction locks any job row (see "Lock order").
    """
    ledger = _read_ledger(session, api_key_ids, batch_ids, now=now or utcnow(), lock=True)
    if settle and ledger.key_ids:
        pending = session.execute(
            _unsettled()
            .where(Job.api_key_id.in_(ledger.key_ids))
            .limit(SETTLE_LIMIT)
            .with_for_update(skip_locked=True)
        ).all()
        for row in pending:
            ledger.settle(row)
    return ledger


def preview_ledger(
    session: Session,
    *,
    api_key_ids: Iterable[str],
    batch_ids: Iterable[str | None] = (),
    now: dt.datetime | None = None,
) -> BudgetLedger:
    """The same totals, pending settlements included, read without locks: a first opinion
    (the claim asks the limiter only for jobs this ledger admits). It cannot be flushed."""
    ledger = _read_ledger(session, api_key_ids, batch_ids, now=now or utcnow(), lock=False)
    if ledger.key_ids:
        pending = _unsettled().where(Job.api_key_id.in_(ledger.key_ids)).limit(SETTLE_LIMIT)
        for row in session.execute(pending):
            ledger.settle(row)
    return ledger


def _read_ledger(
    session: Session,
    api_key_ids: Iterable[str],
    batch_ids: Iterable[str | None],
    *,
    now: dt.datetime,
    lock: bool,
) -> BudgetLedger:
    day = _day(now)
    wanted_batches = sorted({batch_id for batch_id in batch_ids if batch_id})
    wanted_keys = sorted(set(api_key_ids))
    batches: dict[str, _BatchTotals] = {}
    if wanted_batches:
        of_batches = (
            select(Batch.id, Batch.max_points, Batch.points_committed)
            .where(Batch.id.in_(wanted_batches))
            .order_by(Batch.id)
        )
        for batch in session.execute(
            of_batches.with_for_update(key_share=True) if lock else of_batches
        ):
            batches[batch.id] = _BatchTotals(
                batch.id, batch.max_points, int(batch.points_committed)
            )
    keys: dict[str, _KeyTotals] = {}
    if wanted_keys:
        of_keys = (
            select(
                ApiKey.id,
                ApiKey.max_points_daily,
                ApiKey.max_points_total,
                ApiKey.points_committed,
                ApiKey.points_today,
                ApiKey.points_day,
            )
            .where(ApiKey.id.in_(wanted_keys))
            .order_by(ApiKey.id)
        )
        for key in session.execute(of_keys.with_for_update(key_share=True) if lock else of_keys):
            keys[key.id] = _KeyTotals(
                key.id,
                key.max_points_daily,
                key.max_points_total,
                int(key.points_committed),
                int(key.points_today) if key.points_day == day else 0,
            )
    return BudgetLedger(session if lock else None, day=day, keys=keys, batches=batches)


def settle_costs(
    session: Session, job_ids: Iterable[str], *, now: dt.datetime | None = None
) -> int:
    """Fold into the totals the holds of these jobs that must change: their cost is known, or
    they failed without reaching MetaChat. Returns how many jobs it settled.

    The hook for the places that write a cost (the poll pump's terminal writes, a reconcile's
    late success): call it with the ids just written, in a transaction of its own right after
    the terminal write commits (not inside a transaction that still holds job rows it did not
    finish). It reads what to change from the rows themselves, so calling it twice, or after a
    claim already settled them, changes nothing, and a crash before it only delays the totals
    until the next claim of the same key, which settles them first.
    """
    wanted = sorted(set(job_ids))
    if not wanted:
        return 0
    rows = session.execute(
        _unsettled().where(Job.id.in_(wanted)).with_for_update(skip_locked=True)
    ).all()
    changes = [_settled_change(row) for row in rows]
    _write_changes(session, changes, day=_day(now or utcnow()))
    return len(changes)


def estimate(
    session: Session,
    api_key: ApiKey,
    specs: Sequence[PricedSpec],
    *,
    max_points: int | None = None,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> BudgetEstimate:
    """What a batch of `specs` would cost and whether it fits `api_key`'s budgets and its own
    `max_points`, judged the way a claim will judge its jobs. Reads only."""
    now = now or utcnow()
    pairs = [(spec.model, spec.action, getattr(spec, "price_points", None)) for spec in specs]
    known = _catalogue_prices(catalogue, {(m, a) for m, a, _ in pairs})
    missing = {m for m, a, price in pairs if price is None and known.get((m, a)) is None}
    history = _average_costs(session, missing, now)
    total = unpriced = 0
    for model, action, price in pairs:
        points = price if price is not None else known.get((model, action))
        if points is None:
            points = history.get(model)
        if points is None:
            unpriced += 1
        total += points or 0
    committed, today = _key_committed(session, api_key, now)
    limits: list[_Limit] = []
    if api_key.max_points_daily is not None:
        limits.append(_Limit("daily", api_key.max_points_daily, today))
    if api_key.max_points_total is not None:
        limits.append(_Limit("total", api_key.max_points_total, committed))
    if max_points is not None:
        limits.append(_Limit("batch", max_points, 0))
    remaining: dict[str, int | None] = dict.fromkeys(_LIMIT_NAMES)
    for limit in limits:
        remaining[limit.kind] = max(0, limit.limit - limit.committed)
    fits = all(limit.admits(total) for limit in limits)
    return BudgetEstimate(
        estimated_points=total, fits_budget=fits, remaining=remaining, unpriced=unpriced
    )


def estimate_points(
    session: Session,
    jobs: Iterable[Priced],
    *,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Each job's expected cost in points, by the rules in this module's docstring."""
    now = now or utcnow()
    jobs = list(jobs)
    prices = _catalogue_prices(catalogue, {(job.model, job.action) for job in jobs})
    missing = {
        job.model
        for job in jobs
        if job.estimated_points is None and prices.get((job.model, job.action)) is None
    }
    history = _average_costs(session, missing, now)
    result: dict[str, int] = {}
    for job in jobs:
        points = job.estimated_points
        if points is None:
            points = prices.get((job.model, job.action))
        if points is None:
            points = history.get(job.model, 0)
        result[job.id] = int(points)
    return result


def _day(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.UTC).date()


def _unsettled() -> Any:
    return select(
        Job.id,
        Job.api_key_id,
        Job.batch_id,
        Job.cost_points,
        Job.points_held,
        Job.points_held_on,
        Job.submitted_at,
    ).where(text(f"({POINTS_UNSETTLED})"))


def _settled_change(row: Any) -> _HoldChange:
    """The change a row of `_unsettled` needs: hold its cost once known (on the day it was held),
    else it is a failure that never reached MetaChat and holds nothing. `_write_changes`
    writes the same from the row's own columns."""
    known = row.cost_points is not None
    day = row.points_held_on
    if day is None and row.submitted_at is not None:
        # a costed job no claim held (written by hand, or imported): the day it was sent
        day = _day(row.submitted_at)
    return _HoldChange(
        job_id=row.id,
        api_key_id=row.api_key_id,
        batch_id=row.batch_id,
        old=int(row.points_held or 0),
        old_day=row.points_held_on,
        new=int(row.cost_points) if known else 0,
        new_day=day if known else None,
        settled=True,
    )


def _change_of(job: Holder, points: int, day: dt.date | None) -> _HoldChange:
    return _HoldChange(
        job_id=job.id,
        api_key_id=job.api_key_id,
        batch_id=job.batch_id,
        old=int(job.points_held or 0),
        old_day=job.points_held_on,
        new=points,
        new_day=day,
    )


def _write_changes(session: Session, changes: Sequence[_HoldChange], *, day: dt.date) -> None:
    """Write holds (one executemany for holds a claim chose, one UPDATE for settled ones), then
    batch totals, then key totals, one executemany each (so parents are locked batches first,
    in id order, then keys)."""
    changes = [
        change for change in changes if (change.old, change.old_day) != (change.new, change.new_day)
    ]
    if not changes:
        return
    jobs = _table(Job)
    explicit = [c for c in changes if not c.settled]
    if explicit:
        session.execute(
            jobs.update()
            .where(jobs.c.id == bindparam("b_id"))
            .values(points_held=bindparam("b_points"), points_held_on=bindparam("b_day")),
            [{"b_id": c.job_id, "b_points": c.new, "b_day": c.new_day} for c in explicit],
        )
    settled = [c.job_id for c in changes if c.settled]
    if settled:
        sent_on = _utc_date(jobs.c.submitted_at, session.get_bind().dialect.name)
        session.execute(
            jobs.update()
            .where(jobs.c.id.in_(settled))
            .values(
                points_held=func.coalesce(jobs.c.cost_points, 0),
                points_held_on=case(
                    (jobs.c.cost_points.is_(None), None),
                    else_=func.coalesce(jobs.c.points_held_on, sent_on),
                ),
            )
        )
    batch_deltas: dict[str, int] = defaultdict(int)
    key_deltas: dict[str, int] = defaultdict(int)
    key_days: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for c in changes:
        if c.batch_id is not None:
            batch_deltas[c.batch_id] += c.new - c.old
        key_deltas[c.api_key_id] += c.new - c.old
        if c.new_day is not None:
            key_days[c.api_key_id][c.new_day] += c.new
        if c.old_day is not None:
            key_days[c.api_key_id][c.old_day] -= c.old
    batches = _table(Batch)
    batch_rows = [
        {"b_id": batch_id, "b_delta": delta}
        for batch_id, delta in sorted(batch_deltas.items())
        if delta
    ]
    if batch_rows:
        session.execute(
            batches.update()
            .where(batches.c.id == bindparam("b_id"))
            .values(points_committed=batches.c.points_committed + bindparam("b_delta")),
            batch_rows,
        )
    key_rows: list[dict[str, Any]] = []
    for key_id in sorted(key_deltas):
        days = [(d, amount) for d, amount in sorted(key_days[key_id].items()) if amount]
        total = key_deltas[key_id]
        if not days and not total:
            continue
        for n, (when, amount) in enumerate(days or [(day, 0)]):
            key_rows.append(
                {
                    "b_id": key_id,
                    "b_total": total if n == 0 else 0,
                    "b_day": when,
                    "b_amount": amount,
                }
            )
    if key_rows:
        keys = _table(ApiKey)
        on_day = keys.c.points_day == bindparam("b_day")
        newer = or_(keys.c.points_day.is_(None), keys.c.points_day < bindparam("b_day"))
        session.execute(
            keys.update()
            .where(keys.c.id == bindparam("b_id"))
            .values(
                points_committed=keys.c.points_committed + bindparam("b_total"),
                points_today=case(
                    (on_day, keys.c.points_today + bindparam("b_amount")),
                    (newer, bindparam("b_amount")),
                    else_=keys.c.points_today,
                ),
                points_day=case((newer, bindparam("b_day")), else_=keys.c.points_day),
            ),
            key_rows,
        )


def _utc_date(column: Any, dialect: str) -> Any:
    """The UTC calendar day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps naive UTC text


def _table(entity: type[Any]) -> Table:
    table: Table = entity.__table__
    return table


def _key_committed(session: Session, api_key: ApiKey, now: dt.datetime) -> tuple[int, int]:
    day = _day(now)
    row = session.execute(
        select(ApiKey.points_committed, ApiKey.points_today, ApiKey.points_day).where(
            ApiKey.id == api_key.id
        )
    ).one()
    committed = int(row.points_committed)
    today = int(row.points_today) if row.points_day == day else 0
    for pending in session.execute(_unsettled().where(Job.api_key_id == api_key.id)):
        change = _settled_change(pending)
        committed += change.new - change.old
        if change.new_day == day:
            today += change.new
        if change.old_day == day:
            today -= change.old
    return committed, today


def _catalogue_prices(
    catalogue: Catalogue | None, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int | None]:
    if catalogue is None:
        return {}
    prices: dict[tuple[str, str], int | None] = {}
    for model, action in pairs:
        try:
            prices[(model, action)] = catalogue.action(model, action).price_points
        except (UnknownModel, UnknownAction):
            prices[(model, action)] = None
    return prices


def _average_costs(session: Session, models: Iterable[str], now: dt.datetime) -> dict[str, int]:
    """The rounded average cost of each model's recent costed jobs (models with none left out),
    in one statement whatever the number of models."""
    wanted = sorted(set(models))
    if not wanted:
        return {}
    since = now - dt.timedelta(days=HISTORY_DAYS)
    parts = []
    for model in wanted:
        recent = (
            select(Job.model.label("model"), Job.cost_points.label("cost"))
            .where(Job.model == model, Job.cost_points.is_not(None), Job.finished_at >= since)
            .order_by(Job.finished_at.desc())
            .limit(HISTORY_JOBS)
            .subquery()
        )
        parts.append(
            select(recent.c.model, func.avg(recent.c.cost).label("average")).group_by(
                recent.c.model
            )
        )
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    return {
        row.model: round(float(row.average))
        for row in session.execute(statement)
        if row.average is not None
    }
