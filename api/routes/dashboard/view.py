"""What one dashboard page shows, gathered in one read transaction and cached for a few
seconds, so that several operators with the page open cost the database one query set."""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from api.routes.dashboard.charts import (
    Chart,
    latency_chart,
    points_chart,
    progress_percent,
    status_mix,
    throughput_chart,
)
from core.archive import archive_counts
from core.db import Database
from core.stats import (
    BatchProgress,
    KeyChoice,
    OpsStats,
    RecentFailure,
    UpstreamBalance,
    batches_in_progress,
    collect_stats,
    key_choices,
    recent_failures,
)
from core.tables import utcnow


@dataclass(frozen=True)
class Window:
    name: str
    title: str
    span: dt.timedelta
    bucket_seconds: int


WINDOWS = {
    w.name: w
    for w in (
        Window("1h", "last hour", dt.timedelta(hours=1), 60),
        Window("6h", "last 6 hours", dt.timedelta(hours=6), 360),
        Window("24h", "last 24 hours", dt.timedelta(hours=24), 1800),
        Window("7d", "last 7 days", dt.timedelta(days=7), 10_800),
    )
}
DEFAULT_WINDOW = "24h"
TABLE_ROWS = 15


@dataclass(frozen=True)
class BatchRow:
    batch: BatchProgress
    percent: float
    failed: int


@dataclass(frozen=True)
class DashboardView:
    window: Window
    api_key_id: str | None
    stats: OpsStats
    throughput: Chart
    points: Chart
    queue_wait: Chart
    upstream: Chart
    mix: Chart
    failures: list[RecentFailure]
    batches: list[BatchRow]
    keys: list[KeyChoice]
    balance: UpstreamBalance | None
    # succeeded jobs by the state of copying their outputs (pending, done, failed, skipped)
    archive: dict[str, int] = field(default_factory=dict)

    @property
    def key_names(self) -> dict[str, str]:
        return {key.id: key.name for key in self.keys}


def build_view(
    db: Database,
    *,
    window: Window,
    api_key_id: str | None,
    balance: UpstreamBalance | None,
    now: dt.datetime | None = None,
) -> DashboardView:
    now = now or utcnow()
    since = now - window.span
    with db.read_session() as session:
        stats = collect_stats(
            session,
            since=since,
            api_key_id=api_key_id,
            now=now,
            bucket_seconds=window.bucket_seconds,
            limit=TABLE_ROWS,
        )
        failures = recent_failures(session, since=since, api_key_id=api_key_id, limit=TABLE_ROWS)
        batches = batches_in_progress(session, api_key_id=api_key_id)
        keys = key_choices(session)
        archive = archive_counts(session, api_key_id=api_key_id)
    return DashboardView(
        window=window,
        api_key_id=api_key_id,
        stats=stats,
        throughput=throughput_chart(
            stats.throughput, since=since, until=now, bucket_seconds=window.bucket_seconds
        ),
        points=points_chart(stats.points),
        queue_wait=latency_chart(stats.latency, "queue_wait"),
        upstream=latency_chart(stats.latency, "upstream"),
        mix=status_mix(stats.jobs.by_status),
        failures=failures,
        batches=[
            BatchRow(
                batch=b,
                percent=progress_percent(b.done, b.total),
                failed=b.counts.get("failed", 0) + b.counts.get("timed_out", 0),
            )
            for b in batches
        ],
        keys=keys,
        balance=balance,
        archive=archive,
    )


class ViewCache:
    """`build_view` results for `ttl` seconds, per database, window and key filter."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: weakref.WeakKeyDictionary[
            Database, dict[tuple[str, str | None], tuple[float, DashboardView]]
        ] = weakref.WeakKeyDictionary()

    def get(
        self,
        db: Database,
        window: Window,
        api_key_id: str | None,
        build: Callable[[], DashboardView],
    ) -> DashboardView:
        slot = (window.name, api_key_id)
        with self._lock:
            entry = self._entries.get(db, {}).get(slot)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        view = build()
        with self._lock:
            self._entries.setdefault(db, {})[slot] = (time.monotonic(), view)
        return view
