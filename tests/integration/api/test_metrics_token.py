"""`/metrics` with `METRICS_TOKEN`: only the bearer of the token reads it; unset, it stays open
(as `make run` on 127.0.0.1 leaves it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.api_client import ApiClients

TOKEN = "metrics-7f3a9c0e5b2d4e6f8a1c3e5b7d9f0a2c"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param(f"Bearer {TOKEN}x", id="wrong-token"),
        pytest.param(f"Basic {TOKEN}", id="wrong-scheme"),
        pytest.param("Bearer ", id="empty"),
        pytest.param("Bearer m\u00e9trics".encode("latin-1"), id="not-ascii"),
    ],
)
def test_metrics_without_the_token_are_unauthorized(
    clients_with: Callable[..., ApiClients], authorization: str | bytes | None
) -> None:
    clients = clients_with(metrics_token=TOKEN)
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = clients.call("GET", "/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "mcjobs_jobs" not in response.text
    assert TOKEN not in response.text


def test_metrics_with_the_token_are_served(clients_with: Callable[..., ApiClients]) -> None:
    clients = clients_with(metrics_token=TOKEN)

    response = clients.call("GET", "/metrics", headers={"Authorization": f"bearer {TOKEN}"})

    assert response.status_code == 200
    assert "mcjobs_jobs" in response.text


@pytest.mark.parametrize("token", [None, "", "  "])
def test_without_a_token_metrics_stay_open(
    clients_with: Callable[..., ApiClients], token: str | None
) -> None:
    clients = clients_with(metrics_token=token)

    assert clients.call("GET", "/metrics").status_code == 200
