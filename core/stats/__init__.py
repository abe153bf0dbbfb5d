"""Operator statistics: what is running, what is stuck, what failed and why, how fast, what it
cost. All of it computed in SQL (`queries`), portable between PostgreSQL and SQLite (`sql`).

- `collect_stats(session, since=..., api_key_id=None)` → `OpsStats` (`GET /v1/stats`).
- `recent_failures`, `batches_in_progress`, `job_detail`, `key_choices`: the dashboard's tables.
- `store_upstream_balance` / `cached_upstream_balance`: MetaChat's balance, cached in Redis.
- `reconcile_usage(session, records, day=...)`: our recorded points against MetaChat's usage.
"""

from core.stats.detail import JobDetail, KeyChoice, job_detail, key_choices
from core.stats.queries import (
    DEFAULT_STUCK_SECONDS,
    batches_in_progress,
    collect_stats,
    failing_webhooks,
    recent_failures,
    stuck_jobs,
    webhook_target,
)
from core.stats.shapes import (
    BatchProgress,
    JobCounts,
    Latency,
    OpsStats,
    Percentiles,
    Points,
    RecentFailure,
    StuckJob,
    Throughput,
    Webhooks,
)
from core.stats.since import DEFAULT_SPAN, BadSince, parse_since
from core.stats.usage import (
    BALANCE_KEY,
    PointsMismatch,
    UpstreamBalance,
    UsageLine,
    UsageReconciliation,
    balance_reader,
    cached_upstream_balance,
    reconcile_usage,
    store_upstream_balance,
)
from core.stats.window import EndedJobs, ended_jobs, latency_percentiles

__all__ = [
    "BALANCE_KEY",
    "DEFAULT_SPAN",
    "DEFAULT_STUCK_SECONDS",
    "BadSince",
    "BatchProgress",
    "EndedJobs",
    "JobCounts",
    "JobDetail",
    "KeyChoice",
    "Latency",
    "OpsStats",
    "Percentiles",
    "Points",
    "PointsMismatch",
    "RecentFailure",
    "StuckJob",
    "Throughput",
    "UpstreamBalance",
    "UsageLine",
    "UsageReconciliation",
    "Webhooks",
    "balance_reader",
    "batches_in_progress",
    "cached_upstream_balance",
    "collect_stats",
    "ended_jobs",
    "failing_webhooks",
    "job_detail",
    "key_choices",
    "latency_percentiles",
    "parse_since",
    "recent_failures",
    "reconcile_usage",
    "store_upstream_balance",
    "stuck_jobs",
    "webhook_target",
]
