"""The operator statistics, on PostgreSQL and SQLite, against a dataset whose every figure is
known (tests/support/ops_data.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.db import Database
from core.stats import (
    Percentiles,
    batches_in_progress,
    collect_stats,
    job_detail,
    key_choices,
    recent_failures,
)
from tests.support.ops_data import NOW, OpsDataset, at, seed_ops_dataset

WINDOW = NOW - dt.timedelta(hours=2)


@pytest.fixture
def data(db: Database) -> OpsDataset:
    return seed_ops_dataset(db)


def _pct(count: int, p50: float, p95: float, p99: float) -> Percentiles:
    return Percentiles(count=count, p50=p50, p95=p95, p99=p99)


def test_status_counts_show_active_jobs_now_and_jobs_ended_in_the_window(
    db: Database, data: OpsDataset
) -> None:
    with db.read_session() as s:
        stats = collect_stats(s, since=WINDOW, now=NOW)
    assert stats.jobs.by_status == {
        "queued": 2,
        "running": 4,
        "succeeded": 7,
        "failed": 2,
        "cancelled": 1,
        "timed_out": 1,
    }
    rows = {(r.provider, r.model, r.status): r.count for r in stats.jobs.rows}
    assert rows[("midjourney", "mj-v7", "succeeded")] == 5
    assert rows[("flux", "flux-2-pro", "failed")] == 1
    assert stats.jobs.oldest_queued_seconds == pytest.approx(600, abs=0.01)


def test_latency_percentiles_per_provider_match_percentile_cont(
    db: Database, data: OpsDataset
) -> None:
    with db.read_session() as s:
        latency = collect_stats(s, since=WINDOW, now=NOW).latency
    assert latency.upstream["midjourney"] == _pct(5, 30.0, 48.0, 49.6)
    # the failed flux job counts upstream; the timed-out grok job does not
    assert latency.upstream["flux"] == _pct(3, 4.0, 5.8, 5.96)
    assert "grok" not in latency.upstream
    assert latency.queue_wait["midjourney"] == _pct(5, 3.0, 4.8, 4.96)
    assert latency.queue_wait["flux"] == _pct(3, 1.0, 1.45, 1.49)
    assert latency.queue_wait["grok"] == _pct(1, 2.0, 2.0, 2.0)


def test_throughput_counts_jobs_ended_per_minute_by_status(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        points = collect_stats(s, since=WINDOW, now=NOW).throughput.points
    assert [(p.at, p.status, p.count) for p in points] == [
        (at(11, 10), "succeeded", 5),
        (at(11, 20), "succeeded", 1),
        (at(11, 21), "failed", 1),
        (at(11, 21), "succeeded", 1),
        (at(11, 30), "failed", 1),
        (at(11, 40), "timed_out", 1),
        (at(11, 50), "cancelled", 1),
    ]


def test_points_are_summed_by_model_day_and_api_key(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        points = collect_stats(s, since=WINDOW, now=NOW).points
    assert points.total == 58
    assert [(m.model, m.points, m.jobs) for m in points.by_model] == [
        ("mj-v7", 50, 5),
        ("flux-2-pro", 8, 2),
    ]
    assert [(d.day, d.points) for d in points.by_day] == [(dt.date(2026, 12, 1), 58)]
    assert [(k.name, k.points) for k in points.by_api_key] == [("alpha", 50), ("beta", 8)]


def test_a_wider_window_reaches_earlier_days(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        points = collect_stats(s, since=NOW - dt.timedelta(days=3), now=NOW).points
    assert [(d.day, d.points) for d in points.by_day] == [
        (dt.date(2026, 11, 29), 1000),
        (dt.date(2026, 12, 1), 58),
    ]
    first = points.by_day_model[0]
    assert (first.day, first.model, first.points) == (
        dt.date(2026, 11, 29),
        "mj-v7",
        1000,
    )


def test_top_errors_are_counted_with_a_sample_message(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        errors = collect_stats(s, since=WINDOW, now=NOW).errors
    assert [(e.code, e.count) for e in errors] == [
        ("upstream_rejected", 2),
        ("deadline_exceeded", 1),
    ]
    assert errors[0].sample_message in {"banned prompt", "bad aspect ratio"}
    assert errors[0].last_at == at(11, 30)


def test_stuck_jobs_are_those_past_their_provider_p99_or_with_an_expired_lease(
    db: Database, data: OpsDataset
) -> None:
    with db.read_session() as s:
        stuck = collect_stats(s, since=WINDOW, now=NOW).stuck
    assert [job.id for job in stuck] == [data.stuck_seedream, data.stuck_mj, data.stuck_lease]
    reasons = {job.id: job.reason for job in stuck}
    assert "midjourney p99 of 50s" in reasons[data.stuck_mj]
    assert "default limit of 900s" in reasons[data.stuck_seedream]
    assert "lease expired 30s ago" in reasons[data.stuck_lease]
    assert data.healthy_flux not in reasons


def test_failing_and_dead_webhooks_are_listed_without_the_url_query(
    db: Database, data: OpsDataset
) -> None:
    with db.read_session() as s:
        hooks = collect_stats(s, since=WINDOW, now=NOW).webhooks
    assert (hooks.failing, hooks.dead) == (1, 1)
    assert [(d.state, d.attempts, d.last_status_code) for d in hooks.deliveries] == [
        ("pending", 2, 500),
        ("dead", 9, 404),
    ]
    assert {d.target for d in hooks.deliveries} == {"https://hooks.example.com/in"}
    assert "s3cr3t" not in hooks.model_dump_json()


def test_an_api_key_filter_narrows_every_figure_to_that_key(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        stats = collect_stats(s, since=WINDOW, now=NOW, api_key_id=data.beta.id)
    assert {k: v for k, v in stats.jobs.by_status.items() if v} == {
        "running": 1,
        "succeeded": 2,
        "failed": 1,
    }
    assert stats.points.total == 8
    assert list(stats.latency.upstream) == ["flux"]
    assert stats.stuck == []
    assert (stats.webhooks.failing, stats.webhooks.dead) == (0, 0)
    assert stats.jobs.oldest_queued_seconds is None


def test_an_empty_database_gives_zeroes_not_errors(db: Database) -> None:
    with db.read_session() as s:
        stats = collect_stats(s, since=WINDOW, now=NOW)
    assert sum(stats.jobs.by_status.values()) == 0
    assert stats.latency.upstream == {}
    assert stats.points.total == 0
    assert stats.throughput.points == []


def test_recent_failures_list_failed_and_timed_out_jobs_newest_first(
    db: Database, data: OpsDataset
) -> None:
    with db.read_session() as s:
        failures = recent_failures(s, since=WINDOW)
    assert [(f.provider, f.status, f.error_code) for f in failures] == [
        ("grok", "timed_out", "deadline_exceeded"),
        ("midjourney", "failed", "upstream_rejected"),
        ("flux", "failed", "upstream_rejected"),
    ]


def test_batches_in_progress_carry_their_counts_and_cost(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        (batch,) = batches_in_progress(s)
    assert batch.id == data.batch_id
    assert (batch.total, batch.done, batch.cost_points) == (4, 2, 20)
    assert (batch.counts["queued"], batch.counts["running"]) == (1, 1)


def test_job_detail_holds_the_audit_trail_in_order(db: Database, data: OpsDataset) -> None:
    with db.read_session() as s:
        detail = job_detail(s, data.flux_failure)
        missing = job_detail(s, "job_nope")
        keys = key_choices(s)
    assert missing is None
    assert detail is not None
    assert detail.api_key_name == "beta"
    assert [(e["from"], e["to"]) for e in detail.events] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    assert [k.name for k in keys] == ["alpha", "beta", "ops"]
