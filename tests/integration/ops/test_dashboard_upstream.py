"""The dashboard's upstream page: the same check as `mcjobs upstream check`, run on request."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from core.db import Database
from core.settings import Settings
from sim import SimConfig, SimServer
from tests.support.ops_app import http_client, serve_app
from tests.support.webhook_rows import make_key


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig.for_profile("legacy", seed=5)) as server:
        yield server


@pytest.fixture
def browser(
    db: Database,
    settings_for: Callable[..., Settings],
    session_redis_url: str,
    sim: SimServer,
) -> Iterator[httpx.Client]:
    with (
        serve_app(
            db, settings_for, redis_url=session_redis_url, metachat_base_url=sim.base_url
        ) as url,
        http_client(url) as client,
    ):
        admin = make_key(db, "ops", admin=True)
        login = client.post(
            "/dashboard/login",
            content=f"api_key={admin.api_key}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 303
        yield client


def test_the_page_runs_the_check_only_when_asked_and_shows_the_override(
    browser: httpx.Client, sim: SimServer
) -> None:
    page = browser.get("/dashboard/upstream")
    assert page.status_code == 200
    assert "Run the check" in page.text
    assert "Not checked from this API process yet." in page.text
    assert sim.stats()["requests"] == 0, "loading the page sends nothing upstream"

    checked = browser.post("/dashboard/upstream", headers={"Origin": str(browser.base_url)})
    assert checked.status_code == 200
    assert "exit code 1" in checked.text
    assert 'data-problem="yes"' in checked.text
    assert "flux/generate" in checked.text
    assert "METACHAT_CATALOGUE_OVERRIDES=" in checked.text
    assert sim.stats()["tasks_created"] == 0

    again = browser.get("/dashboard/upstream")
    assert "exit code 1" in again.text, "the last report stays on the page"


def test_a_cross_site_post_runs_nothing(browser: httpx.Client, sim: SimServer) -> None:
    refused = browser.post("/dashboard/upstream", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert sim.stats()["requests"] == 0


def test_without_a_session_the_page_sends_to_login(
    db: Database, settings_for: Callable[..., Settings], session_redis_url: str
) -> None:
    with (
        serve_app(db, settings_for, redis_url=session_redis_url) as url,
        http_client(url) as client,
    ):
        response = client.get("/dashboard/upstream")
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")
