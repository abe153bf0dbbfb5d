"""The dashboard over HTTP: login with an admin key through a form, the session cookie's rules,
logout, and what the pages show (the browser test looks at the same pages in Chromium)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
import redis
from sqlalchemy import update

from core.db import Database
from core.settings import Settings
from core.tables import ApiKey
from tests.support.ops_app import http_client, serve_app, this_minute
from tests.support.ops_data import OpsDataset, seed_ops_dataset


@pytest.fixture
def data(db: Database) -> OpsDataset:
    return seed_ops_dataset(db, now=this_minute())


@pytest.fixture
def base_url(
    db: Database, settings_for: Callable[..., Settings], session_redis_url: str
) -> Iterator[str]:
    with serve_app(db, settings_for, redis_url=session_redis_url) as url:
        yield url


@pytest.fixture
def browser(base_url: str) -> Iterator[httpx.Client]:
    with http_client(base_url) as client:
        yield client


def _login(client: httpx.Client, api_key: str, **headers: str) -> httpx.Response:
    return client.post(
        "/dashboard/login",
        content=f"api_key={api_key}",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )


def test_the_dashboard_sends_a_visitor_without_a_session_to_the_login_form(
    browser: httpx.Client, data: OpsDataset
) -> None:
    response = browser.get("/dashboard")
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")
    form = browser.get("/dashboard/login")
    assert form.status_code == 200
    assert 'method="post"' in form.text
    assert 'type="password"' in form.text


def test_an_admin_key_logs_in_with_an_httponly_samesite_cookie_holding_no_key(
    browser: httpx.Client, data: OpsDataset, session_redis_url: str
) -> None:
    response = _login(browser, data.admin.api_key)
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard")
    cookie = SimpleCookie(response.headers["set-cookie"])
    (morsel,) = cookie.values()
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/dashboard"
    assert data.admin.api_key not in morsel.value
    assert data.admin.id not in morsel.value
    with redis.Redis.from_url(session_redis_url) as store:
        stored = [store.get(k) for k in store.scan_iter("mcjobs:dashboard:session:*")]
    assert stored == [data.admin.id.encode()]
    assert morsel.value not in str(stored)

    page = browser.get("/dashboard")
    assert page.status_code == 200
    assert "signed in as ops" in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert data.admin.api_key not in page.text


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [
        ("tenant", 403, "needs an admin key"),
        ("unknown", 401, "not a valid API key"),
        ("empty", 401, "not a valid API key"),
    ],
    ids=["a-tenant-key", "an-unknown-key", "no-key"],
)
def test_only_an_admin_key_opens_a_session(
    browser: httpx.Client, data: OpsDataset, who: str, status: int, message: str
) -> None:
    key = {"tenant": data.alpha.api_key, "unknown": "mcj_made-up", "empty": ""}[who]
    response = _login(browser, key)
    assert response.status_code == status
    assert message in response.text
    assert "set-cookie" not in response.headers
    if key:
        assert key not in response.text
    assert browser.get("/dashboard").status_code == 303


def test_a_login_posted_from_another_site_is_refused(
    browser: httpx.Client, data: OpsDataset
) -> None:
    response = _login(browser, data.admin.api_key, Origin="https://evil.example")
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_logout_ends_the_session_even_for_a_copied_cookie(
    browser: httpx.Client, base_url: str, data: OpsDataset
) -> None:
    _login(browser, data.admin.api_key)
    copied = dict(browser.cookies)
    response = browser.post("/dashboard/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")
    assert 'mcjobs_dashboard=""' in response.headers["set-cookie"]
    with http_client(base_url) as thief:
        thief.cookies.update(copied)
        assert thief.get("/dashboard").status_code == 303
        assert thief.get("/dashboard/fragment").status_code == 401


def test_revoking_the_key_ends_its_dashboard_sessions(
    browser: httpx.Client, db: Database, data: OpsDataset
) -> None:
    _login(browser, data.admin.api_key)
    assert browser.get("/dashboard").status_code == 200
    with db.session() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == data.admin.id)
            .values(revoked_at=dt.datetime.now(dt.UTC))
        )
    assert browser.get("/dashboard").status_code == 303


def test_the_page_shows_the_seeded_figures(browser: httpx.Client, data: OpsDataset) -> None:
    _login(browser, data.admin.api_key)
    page = browser.get("/dashboard", params={"window": "6h"}).text
    for job_id in (data.stuck_mj, data.stuck_seedream, data.stuck_lease, data.flux_failure):
        assert f'href="/dashboard/jobs/{job_id}"' in page
    assert 'data-batch="' + data.batch_id + '"' in page
    assert "50.0%" in page  # the batch: 2 of 4 done
    assert "https://hooks.example.com/in" in page
    assert "s3cr3t" not in page
    assert 'data-chart="throughput"' in page
    assert 'data-chart="points"' in page


def test_a_key_filter_shows_only_that_keys_jobs(browser: httpx.Client, data: OpsDataset) -> None:
    _login(browser, data.admin.api_key)
    page = browser.get("/dashboard", params={"window": "6h", "key": data.beta.id}).text
    assert data.flux_failure in page
    assert data.stuck_mj not in page


def test_the_job_page_lists_its_events_and_hides_webhook_queries(
    browser: httpx.Client, db: Database, data: OpsDataset
) -> None:
    _login(browser, data.admin.api_key)
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == data.beta.id).values(name="beta <b>team</b>"))
    page = browser.get(f"/dashboard/jobs/{data.flux_failure}")
    assert page.status_code == 200
    assert "bad aspect ratio" in page.text
    assert page.text.count('data-event="') == 3
    assert "beta &lt;b&gt;team&lt;/b&gt;" in page.text
    missing = browser.get("/dashboard/jobs/job_nope")
    assert missing.status_code == 404


def test_the_stylesheet_is_served_and_nothing_else(browser: httpx.Client) -> None:
    css = browser.get("/dashboard/static/dashboard.css")
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")
    assert browser.get("/dashboard/static/..%2Fapp.py").status_code == 404
