"""Prometheus metrics: what the pumps count as they work, and what the database says at scrape.

Two sources, so that `/metrics` is right with any number of worker processes on any number of
machines:

- Counters and histograms the pumps bump through the `record_*` functions below (submits, polls,
  429s, claims, webhook attempts, points). In a Celery prefork pool each child process counts
  for itself; set `PROMETHEUS_MULTIPROC_DIR` to one empty directory shared by the API and worker
  processes of a machine (before they start: prometheus-client reads it at import) and `/metrics`
  adds up every process's files. Containers may share it through a volume: files are named by
  host name and pid. Without it, `/metrics` shows only the API process's own counts.
- Gauges read from the database at scrape time (jobs by status and provider, the oldest queued
  job, expired leases, webhook backlog, running batches) and the upstream balance cached in
  Redis: true whatever runs where.

Label values are a closed vocabulary (providers, pump names, outcomes such as ``accepted``,
``rejected``, ``transient``, ``rate_limited``, ``uncertain``, ``succeeded``, ``failed``); never
pass ids or messages, which would make a series per job.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.archive import archive_counts
from core.db import Database
from core.tables import (
    ACTIVE_STATUSES,
    ARCHIVE_STATES,
    BATCH_RUNNING,
    DELIVERY_DEAD,
    DELIVERY_PENDING,
    JOB_STATUSES,
    QUEUED,
    Batch,
    Job,
    WebhookDelivery,
    utcnow,
)
from metachat import PROVIDERS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _process_identifier() -> str:
    # Containers sharing one directory each number their processes from 1: the host name
    # (a container's id) keeps their files apart. No "_": file names are split on it.
    return f"{socket.gethostname().replace('_', '-')}-{os.getpid()}"


if os.environ.get(MULTIPROC_ENV):
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)  # type: ignore[no-untyped-call]

# Upstream calls run from tens of milliseconds (a poll) to a minute (a slow submit).
_UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CLAIM_SIZES = (0, 1, 5, 10, 25, 50, 100, 200, 500, 1000)
_CLAIM_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# registry=None: the objects count in this process (or its multiprocess files) and are added to
# a fresh registry at each scrape, so nothing depends on the global default registry.
SUBMITS = Counter(
    "mcjobs_upstream_submits",
    "Submits sent to MetaChat, by provider and outcome.",
    ["provider", "outcome"],
    registry=None,
)
POLLS = Counter(
    "mcjobs_upstream_polls",
    "Polls of MetaChat tasks, by provider and outcome.",
    ["provider", "outcome"],
    registry=None,
)
UPSTREAM_SECONDS = Histogram(
    "mcjobs_upstream_request_seconds",
    "Time of one MetaChat call, by provider and call (submit or poll).",
    ["provider", "call"],
    buckets=_UPSTREAM_BUCKETS,
    registry=None,
)
RATE_LIMITED = Counter(
    "mcjobs_upstream_rate_limited",
    "HTTP 429 answers from MetaChat, by provider.",
    ["provider"],
    registry=None,
)
CLAIM_SIZE = Histogram(
    "mcjobs_pump_claimed_rows",
    "Rows claimed by one pump tick, by pump.",
    ["pump"],
    buckets=_CLAIM_SIZES,
    registry=None,
)
CLAIM_SECONDS = Histogram(
    "mcjobs_pump_claim_seconds",
    "Time to claim one tick's rows, by pump.",
    ["pump"],
    buckets=_CLAIM_BUCKETS,
    registry=None,
)
WEBHOOK_ATTEMPTS = Counter(
    "mcjobs_webhook_attempts",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
    registry=None,
)
WEBHOOK_SECONDS = Histogram(
    "mcjobs_webhook_attempt_seconds",
    "Time of one webhook POST.",
    buckets=_UPSTREAM_BUCKETS,
    registry=None,
)
POINTS = Counter(
    "mcjobs_points_spent",
    "MetaChat points charged for finished jobs, by provider and model.",
    ["provider", "model"],
    registry=None,
)
ARCHIVE_COPIES = Counter(
    "mcjobs_archive_copies",
    "Outputs copied into our storage, by outcome (copied, refused, failed).",
    ["outcome"],
    registry=None,
)
ARCHIVE_BYTES = Counter(
    "mcjobs_archive_bytes",
    "Bytes copied into our storage.",
    registry=None,
)
PUMP_METRICS: tuple[Collector, ...] = (
    SUBMITS,
    POLLS,
    UPSTREAM_SECONDS,
    RATE_LIMITED,
    CLAIM_SIZE,
    CLAIM_SECONDS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_SECONDS,
    POINTS,
    ARCHIVE_COPIES,
    ARCHIVE_BYTES,
)

_UNSAFE = re.compile(r"[^a-z0-9_.\-]+")


def _label(value: str) -> str:
    return _UNSAFE.sub("_", str(value).lower())[:48] or "unknown"


def record_submit(provider: str, outcome: str, seconds: float) -> None:
    """One submit call: ``accepted``, ``rejected``, ``transient``, ``rate_limited``, ...."""
    SUBMITS.labels(_label(provider), _label(outcome)).inc()
    UPSTREAM_SECONDS.labels(_label(provider), "submit").observe(max(0.0, seconds))


def record_poll(provider: str, outcome: str, seconds: float) -> None:
    """One poll call: ``running``, ``succeeded``, ``failed``, ``transient``, ...."""
    POLLS.labels(_label(provider), _label(outcome)).inc()
    UPSTREAM_SECONDS.labels(_label(provider), "poll").observe(max(0.0, seconds))


def record_rate_limited(provider: str) -> None:
    """MetaChat answered 429 to a submit or a poll."""
    RATE_LIMITED.labels(_label(provider)).inc()


def record_claim(pump: str, size: int, seconds: float) -> None:
    """One pump tick claimed `size` rows (``submit``, ``poll``, ``deliver``, ``maintenance``)."""
    CLAIM_SIZE.labels(_label(pump)).observe(max(0, size))
    CLAIM_SECONDS.labels(_label(pump)).observe(max(0.0, seconds))


def record_webhook_attempt(outcome: str, seconds: float | None = None) -> None:
    """One webhook POST: ``succeeded``, ``failed`` (non-2xx), ``error`` (no answer), ``refused``
    (a private address)."""
    WEBHOOK_ATTEMPTS.labels(_label(outcome)).inc()
    if seconds is not None:
        WEBHOOK_SECONDS.observe(max(0.0, seconds))


def record_archive_copy(outcome: str, size: int = 0) -> None:
    """One output copy: ``copied``, ``refused`` (gone, wrong type, too big) or ``failed``
    (tried again later)."""
    ARCHIVE_COPIES.labels(_label(outcome)).inc()
    if size > 0:
        ARCHIVE_BYTES.inc(size)


def record_points(provider: str, model: str, points: int) -> None:
    """Points charged for a job that just finished."""
    if points > 0:
        POINTS.labels(_label(provider), _label(model)).inc(points)


@dataclass(frozen=True)
class _Snapshot:
    jobs: list[tuple[str, str, int]]
    oldest_queued: list[tuple[str, float]]
    expired_leases: int
    deliveries: dict[str, int]
    failing_deliveries: int
    running_batches: int
    archive: dict[str, int]
    seconds: float


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time, cached for `cache_seconds` so that several
    scrapers (or a refreshing dashboard) cost one read."""

    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = 10.0,
        balance: Callable[[], int | None] | None = None,
    ) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._balance = balance
        self._lock = threading.Lock()
        self._cached: tuple[float, _Snapshot] | None = None

    def snapshot(self) -> _Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, self._read())
            return self._cached[1]

    def _read(self) -> _Snapshot:
        started = time.perf_counter()
        now = utcnow()
        with self._db.read_session() as s:
            jobs = [
                (status, provider, int(n))
                for status, provider, n in s.execute(
                    select(Job.status, Job.provider, func.count()).group_by(
                        Job.status, Job.provider
                    )
                ).all()
            ]
            oldest = [
                (provider, max(0.0, (now - created).total_seconds()))
                for provider, created in s.execute(
                    select(Job.provider, func.min(Job.created_at))
                    .where(Job.status == QUEUED)
                    .group_by(Job.provider)
                ).all()
                if created is not None
            ]
            expired = s.scalar(
                select(func.count()).where(Job.status.in_(ACTIVE_STATUSES), Job.lease_until < now)
            )
            deliveries = dict.fromkeys((DELIVERY_PENDING, DELIVERY_DEAD), 0)
            for state, n in s.execute(
                select(WebhookDelivery.state, func.count())
                .where(WebhookDelivery.state.in_(list(deliveries)))
                .group_by(WebhookDelivery.state)
            ).all():
                deliveries[state] = int(n)
            failing = s.scalar(
                select(func.count()).where(
                    WebhookDelivery.state == DELIVERY_PENDING, WebhookDelivery.attempts > 0
                )
            )
            batches = s.scalar(select(func.count()).where(Batch.status == BATCH_RUNNING))
            archive = dict.fromkeys(ARCHIVE_STATES, 0)
            archive.update(archive_counts(s))
        return _Snapshot(
            jobs=jobs,
            oldest_queued=oldest,
            expired_leases=int(expired or 0),
            deliveries=deliveries,
            failing_deliveries=int(failing or 0),
            running_batches=int(batches or 0),
            archive=archive,
            seconds=time.perf_counter() - started,
        )

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        jobs = GaugeMetricFamily(
            "mcjobs_jobs",
            "Jobs in the database, by status and provider.",
            labels=["status", "provider"],
        )
        # every known pair is present, at 0 when empty, so alerts never see a missing series
        counts: dict[tuple[str, str], int] = {
            (status, provider): 0 for status in JOB_STATUSES for provider in PROVIDERS
        }
        for status, provider, n in snap.jobs:
            counts[(status, provider)] = n
        for (status, provider), n in sorted(counts.items()):
            jobs.add_metric([status, provider], n)
        yield jobs
        oldest = GaugeMetricFamily(
            "mcjobs_oldest_queued_job_age_seconds",
            "Age of the oldest queued job, by provider (absent when none is queued).",
            labels=["provider"],
        )
        for provider, age in snap.oldest_queued:
            oldest.add_metric([provider], age)
        yield oldest
        yield GaugeMetricFamily(
            "mcjobs_expired_leases",
            "Queued or running jobs whose worker lease has expired (their worker stopped).",
            value=snap.expired_leases,
        )
        deliveries = GaugeMetricFamily(
            "mcjobs_webhook_deliveries", "Webhook deliveries by state.", labels=["state"]
        )
        for state, n in sorted(snap.deliveries.items()):
            deliveries.add_metric([state], n)
        yield deliveries
        yield GaugeMetricFamily(
            "mcjobs_webhook_deliveries_failing",
            "Pending webhook deliveries that have failed at least once.",
            value=snap.failing_deliveries,
        )
        yield GaugeMetricFamily(
            "mcjobs_batches_running",
            "Batches with queued or running jobs.",
            value=snap.running_batches,
        )
        archive = GaugeMetricFamily(
            "mcjobs_archive_jobs",
            "Succeeded jobs by the state of copying their outputs into our storage.",
            labels=["state"],
        )
        for state, n in sorted(snap.archive.items()):
            archive.add_metric([state], n)
        yield archive
        yield GaugeMetricFamily(
            "mcjobs_metrics_database_read_seconds",
            "Time the last database read for these gauges took.",
            value=snap.seconds,
        )
        balance = self._balance() if self._balance is not None else None
        if balance is not None:
            yield GaugeMetricFamily(
                "mcjobs_upstream_balance_points",
                "MetaChat account balance, as last read by the maintenance pass.",
                value=balance,
            )


def build_registry(
    database: DatabaseCollector | None, *, multiproc_dir: str | None = None
) -> CollectorRegistry:
    """The registry one scrape renders: pump metrics (this process's, or every process's when
    `multiproc_dir` / `PROMETHEUS_MULTIPROC_DIR` is set) plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiproc_dir if multiproc_dir is not None else os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        for metric in PUMP_METRICS:
            registry.register(metric)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    if database is not None:
        registry.register(database)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `registry`."""
    return generate_latest(registry)
