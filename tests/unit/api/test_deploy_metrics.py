"""The compose stack never serves /metrics without a token, and Prometheus scrapes with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _yaml(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return document


def test_compose_requires_a_metrics_token_for_the_published_api() -> None:
    compose = _yaml("docker-compose.yml")
    api = compose["services"]["api"]

    assert api["ports"], "the test only matters while the API is published"
    token = api["environment"]["METRICS_TOKEN"]
    # `${VAR:?message}` makes `docker compose up` stop when METRICS_TOKEN is unset or empty
    assert token.startswith("${METRICS_TOKEN:?"), token
    assert api["environment"]["DATABASE_URL"], "the shared environment is still merged in"


def test_prometheus_sends_the_token_compose_hands_it() -> None:
    compose = _yaml("docker-compose.yml")
    prometheus = _yaml("deploy/prometheus.yml")

    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert "metrics_token" in compose["services"]["prometheus"]["secrets"]
    [job] = prometheus["scrape_configs"]
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/metrics_token",
    }
