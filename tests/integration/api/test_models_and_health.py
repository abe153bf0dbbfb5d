"""`GET /v1/models` publishes the catalogue; `/healthz` and `/readyz` say whether to send work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import Database
from tests.support.api_client import ApiClient, ApiClients
from tests.support.services import free_port


def test_every_model_is_published_with_params_schema_and_duration(alice: ApiClient) -> None:
    catalogue = alice.get("/v1/models").json()

    models = {model["id"]: model for model in catalogue["models"]}
    assert {"mj-v7", "flux-2-pro", "z-image-turbo", "grok-imagine-video-1.5-preview"} <= set(models)
    assert set(catalogue["providers"]) == {
        "midjourney",
        "flux",
        "z-image",
        "seedream",
        "grok",
        "gpt-image",
        "google-image",
        "chat",
    }
    for model in models.values():
        for action in model["actions"]:
            assert action["params"]["type"] == "object"
            assert action["expected_seconds"] > 0
    imagine = models["mj-v7"]["actions"][0]
    assert imagine["name"] == "imagine"
    assert "aspect" in imagine["params"]["properties"]


def test_a_configured_price_is_published(clients_with: Callable[..., ApiClients]) -> None:
    client = clients_with(metachat_catalogue_overrides={"prices": {"mj-v7": 30}}).new("a")

    models = {m["id"]: m for m in client.get("/v1/models").json()["models"]}

    assert {a["price_points"] for a in models["mj-v7"]["actions"]} == {30}
    assert models["mj-v61"]["actions"][0]["price_points"] is None


def test_the_catalogue_needs_a_key(clients: ApiClients) -> None:
    assert clients.call("GET", "/v1/models").status_code == 401


def test_a_live_process_is_healthy(clients: ApiClients) -> None:
    response = clients.call("GET", "/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_when_the_database_and_redis_answer(clients: ApiClients) -> None:
    response = clients.call("GET", "/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_not_ready_when_redis_is_down(clients_with: Callable[..., ApiClients]) -> None:
    clients = clients_with(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    response = clients.call("GET", "/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"


def test_not_ready_when_the_database_is_down(settings_for: Callable[..., Any]) -> None:
    from api.app import create_app
    from tests.support.api_client import api_clients

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    down = Database(url)
    with api_clients(create_app(settings_for(url), down), down) as clients:
        response = clients.call("GET", "/readyz")
    down.dispose()

    assert response.status_code == 503
    assert response.json()["checks"]["database"] != "ok"
    assert response.json()["checks"]["redis"] == "ok"
