"""The dashboard in a real browser: headless Chromium loads the page from a real uvicorn on
127.0.0.1 over a seeded database, and the charts and tables show the seeded numbers; on a
390 px phone every page fits the screen's width."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page

from core.db import Database
from core.keys import create_api_key
from core.settings import Settings
from tests.support.ops_app import serve_app, this_minute
from tests.support.ops_browser import chromium, chromium_missing, log_in
from tests.support.ops_data import OpsDataset, finished_job, seed_ops_dataset
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


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
def page(base_url: str) -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        yield page
        context.close()
        # a CSP violation or a script error shows up here
        assert problems == []


def _tile(page: Page, name: str) -> str:
    return page.inner_text(f'[data-tile="{name}"] .value').strip()


def _sum_of_bars(page: Page, chart: str, series: str | None = None) -> float:
    selector = f'svg[data-chart="{chart}"] rect[data-series]'
    if series is not None:
        selector = f'svg[data-chart="{chart}"] rect[data-series="{series}"]'
    values = page.eval_on_selector_all(
        selector, "rects => rects.map(r => Number(r.getAttribute('data-value')))"
    )
    return float(sum(values))


def test_the_charts_and_tables_show_the_seeded_numbers(
    page: Page, base_url: str, data: OpsDataset, tmp_path: Path
) -> None:
    log_in(page, base_url, data.admin.api_key)
    assert [_tile(page, s) for s in ("queued", "running", "succeeded", "failed")] == [
        "2",
        "4",
        "7",
        "2",
    ]
    assert (_tile(page, "timed_out"), _tile(page, "cancelled")) == ("1", "1")
    assert _tile(page, "points") == "58"
    assert _tile(page, "webhooks") == "1 / 1"

    assert _sum_of_bars(page, "throughput", "succeeded") == 7
    assert _sum_of_bars(page, "throughput", "failed") == 2
    assert _sum_of_bars(page, "points") == 58
    assert _sum_of_bars(page, "status-mix") == 17
    legend = page.inner_text('[data-legend="points"]')
    assert "mj-v7 50" in legend and "flux-2-pro 8" in legend
    midjourney = page.inner_text('[data-table="latency"] tr[data-provider="midjourney"]')
    assert midjourney.split() == ["midjourney", "5", "30.0", "s", "48.0", "s", "49.6", "s"]
    assert page.locator('svg[data-chart="latency-upstream"] rect').count() == 6  # 2 x p50/95/99

    stuck = page.locator('[data-panel="stuck"] tr[data-job]')
    stuck_ids = {stuck.nth(i).get_attribute("data-job") for i in range(stuck.count())}
    assert {data.stuck_mj, data.stuck_seedream, data.stuck_lease} <= stuck_ids
    assert page.inner_text(f'[data-batch="{data.batch_id}"] [data-percent]') == "50.0%"
    assert "https://hooks.example.com/in" in page.inner_text('[data-panel="webhooks"]')
    assert "s3cr3t" not in page.content()

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    page.click(f'[data-panel="failures"] a[href="/dashboard/jobs/{data.flux_failure}"]')
    page.wait_for_url(f"**/dashboard/jobs/{data.flux_failure}")
    assert page.locator("tr[data-event]").count() == 3
    assert "bad aspect ratio" in page.inner_text('[data-field="error"]')


def test_the_session_cookie_is_out_of_reach_of_scripts_and_logout_ends_it(
    page: Page, base_url: str, data: OpsDataset
) -> None:
    log_in(page, base_url, data.admin.api_key)
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/dashboard")
    assert data.admin.api_key not in cookie["value"]
    assert page.evaluate("document.cookie") == ""
    assert data.admin.api_key not in page.url

    page.click("#logout")
    page.wait_for_url("**/dashboard/login")
    assert page.context.cookies() == []
    page.goto(base_url + "/dashboard")
    page.wait_for_url("**/dashboard/login")


def test_the_page_refreshes_itself_with_new_failures(
    page: Page, base_url: str, db: Database, data: OpsDataset
) -> None:
    log_in(page, base_url, data.admin.api_key)
    page.goto(base_url + "/dashboard?refresh=2")
    with db.session() as s:
        late = finished_job(
            s,
            data.alpha.id,
            status="failed",
            provider="flux",
            model="flux-2-pro",
            finished_at=dt.datetime.now(dt.UTC),
            upstream_seconds=3,
            error_code="upstream_unavailable",
            error_message="retries exhausted",
        ).id
    wait_until(
        lambda: page.locator(f'[data-panel="failures"] tr[data-job="{late}"]').count() == 1,
        timeout=30,
        what="the refreshed page to list the new failure",
    )
    assert _tile(page, "failed") == "3"
    assert page.get_attribute("#main", "data-refreshed-at")


def test_the_filters_narrow_the_page_to_one_key(
    page: Page, base_url: str, data: OpsDataset
) -> None:
    log_in(page, base_url, data.admin.api_key)
    page.select_option("#key", data.beta.id)
    page.wait_for_url(f"**key={data.beta.id}**")
    assert _tile(page, "points") == "8"
    assert page.locator(f'[data-panel="failures"] tr[data-job="{data.flux_failure}"]').count() == 1
    page.select_option("#window", "1h")
    page.wait_for_url("**window=1h**")
    assert page.inner_text("#window option:checked") == "last hour"


PHONE_WIDTH = 390
CJK_MESSAGE = "上游服务返回错误：提示词包含不允许的内容，请修改后重试。"  # noqa: RUF001
LONG_KEY_NAME = "image-pipeline-production-eu-west-1-nightly-catalogue-refresh"
BIG_POINTS = 98_765_432_109


@dataclass(frozen=True)
class PhoneData:
    cjk_failure: str
    long_failure: str


@pytest.fixture
def phone_data(db: Database, data: OpsDataset) -> PhoneData:
    """The seeded dataset plus what breaks a narrow layout: an enormous points figure, a long
    key name, a CJK upstream message and a long unbroken one."""
    now = this_minute()
    with db.session() as s:
        tenant = create_api_key(s, name=LONG_KEY_NAME).id
        finished_job(
            s,
            tenant,
            status="succeeded",
            provider="flux",
            model="flux-2-pro",
            finished_at=now - dt.timedelta(minutes=5),
            upstream_seconds=4,
            cost_points=BIG_POINTS,
        )
        cjk = finished_job(
            s,
            tenant,
            status="failed",
            provider="seedream",
            model="doubao-seedream-5-0-pro-260628",
            finished_at=now - dt.timedelta(minutes=4),
            upstream_seconds=9,
            error_code="upstream_failed",
            error_message=CJK_MESSAGE,
        ).id
        long = finished_job(
            s,
            tenant,
            status="failed",
            provider="grok",
            model="grok-imagine-video-1.5-preview",
            finished_at=now - dt.timedelta(minutes=3),
            upstream_seconds=12,
            error_code="upstream_rejected",
            error_message="https://storage.example.com/" + "a1b2c3d4" * 30,
        ).id
    return PhoneData(cjk_failure=cjk, long_failure=long)


@pytest.fixture
def phone(base_url: str) -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": PHONE_WIDTH, "height": 844})
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        yield page
        context.close()
        assert problems == []


def _page_width(page: Page) -> int:
    return int(page.evaluate("document.scrollingElement.scrollWidth"))


def _tiles_that_do_not_fit(page: Page) -> list[str]:
    """Tiles whose figure is wider than the tile, sticks out of it or breaks over lines."""
    return list(
        page.eval_on_selector_all(
            ".tile",
            """tiles => tiles.filter(tile => {
                const value = tile.querySelector('.value');
                const t = tile.getBoundingClientRect(), v = value.getBoundingClientRect();
                const text = document.createRange();
                text.selectNodeContents(value);
                return value.scrollWidth > value.clientWidth
                    || v.left < t.left || v.right > t.right
                    || text.getClientRects().length > 1;
            }).map(tile => tile.dataset.tile + ': ' + tile.innerText)""",
        )
    )


def test_every_page_fits_a_390_px_phone_without_sideways_scrolling(
    phone: Page, base_url: str, data: OpsDataset, phone_data: PhoneData, tmp_path: Path
) -> None:
    phone.goto(base_url + "/dashboard")
    phone.wait_for_url("**/dashboard/login")
    assert _page_width(phone) <= PHONE_WIDTH
    log_in(phone, base_url, data.admin.api_key)

    pages = {
        "dashboard": "/dashboard",
        "one-key": f"/dashboard?key={data.beta.id}",
        "cjk-job": f"/dashboard/jobs/{phone_data.cjk_failure}",
        "long-job": f"/dashboard/jobs/{phone_data.long_failure}",
        "no-such-job": "/dashboard/jobs/job_0000000000000000000000000000",
    }
    for name, path in pages.items():
        phone.goto(base_url + path)
        phone.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
        assert _page_width(phone) <= PHONE_WIDTH, name

    phone.goto(base_url + "/dashboard")
    assert _tile(phone, "points") == f"{58 + BIG_POINTS:,}"
    assert _tiles_that_do_not_fit(phone) == []
    failures = phone.locator('[data-panel="failures"]')
    assert failures.locator(f'tr[data-job="{phone_data.cjk_failure}"]').count() == 1
    box = failures.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_WIDTH
    header = phone.locator("header.top").bounding_box()
    assert header is not None and header["width"] <= PHONE_WIDTH


def test_cjk_messages_ask_for_a_cjk_font_before_the_generic_one(
    page: Page, base_url: str, data: OpsDataset, phone_data: PhoneData
) -> None:
    log_in(page, base_url, data.admin.api_key)
    message = page.locator(f'[data-panel="failures"] tr[data-job="{phone_data.cjk_failure}"] .msg')
    assert message.inner_text() == CJK_MESSAGE

    families = [
        name.strip().strip('"').lower()
        for name in message.evaluate("el => getComputedStyle(el).fontFamily").split(",")
    ]

    cjk = [name for name in families if "cjk" in name or name in ("pingfang sc", "microsoft yahei")]
    assert cjk, families
    assert families.index(cjk[0]) < families.index("sans-serif")
