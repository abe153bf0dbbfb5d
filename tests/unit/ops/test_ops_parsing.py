"""Small pure pieces of the operator tools: the window parser, webhook targets, metric labels,
and the percentile interpolation the SQLite fallback uses."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import build_registry, record_rate_limited, render
from core.stats import BadSince, parse_since, webhook_target
from core.stats.sql import interpolate

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, NOW - dt.timedelta(hours=24)),
        ("", NOW - dt.timedelta(hours=24)),
        ("90m", NOW - dt.timedelta(minutes=90)),
        ("24H", NOW - dt.timedelta(hours=24)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        ("2026-12-01T08:00:00Z", dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)),
        ("2026-12-01T10:00:00+02:00", dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)),
    ],
    ids=["default", "empty", "minutes", "hours-any-case", "days", "weeks", "utc", "offset"],
)
def test_since_accepts_spans_and_rfc3339_times(text: str | None, expected: dt.datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text",
    ["yesterday", "2026-12-01T08:00:00", "2026-12-02T00:00:00Z", "401d", "-5m"],
    ids=["words", "naive-time", "future", "over-400-days", "negative"],
)
def test_since_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(BadSince):
        parse_since(text, now=NOW)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/in?token=s3cr3t", "https://hooks.example.com/in"),
        ("https://user:pw@hooks.example.com:8443/a/b#frag", "https://hooks.example.com:8443/a/b"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
    ],
    ids=["query-dropped", "credentials-and-fragment-dropped", "port-kept"],
)
def test_webhook_targets_hide_credentials_and_queries(url: str, shown: str) -> None:
    assert webhook_target(url) == shown


@pytest.mark.parametrize(
    ("raw", "label"),
    [("Flux", "flux"), ("rate limited!", "rate_limited_"), ("", "unknown"), ("x" * 80, "x" * 48)],
    ids=["lowercased", "unsafe-characters-replaced", "empty", "truncated"],
)
def test_metric_labels_are_kept_to_a_safe_vocabulary(raw: str, label: str) -> None:
    record_rate_limited(raw)
    text = render(build_registry(None, multiproc_dir="")).decode()
    providers = {
        sample.labels["provider"]
        for family in text_string_to_metric_families(text)
        if family.name == "mcjobs_upstream_rate_limited"
        for sample in family.samples
    }
    assert label in providers


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([10, 20, 30, 40, 50], 0.5, 30.0),
        ([10, 20, 30, 40, 50], 0.95, 48.0),
        ([10, 20, 30, 40, 50], 0.99, 49.6),
        ([7], 0.99, 7.0),
        ([1, 2], 0.5, 1.5),
    ],
    ids=["median", "p95", "p99", "single-value", "between-two"],
)
def test_interpolation_matches_percentile_cont(
    values: list[float], q: float, expected: float
) -> None:
    ranked = dict(enumerate(sorted(values)))
    assert interpolate(ranked, len(values), q) == pytest.approx(expected)
