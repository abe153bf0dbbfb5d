"""Take the dashboard screenshot for the README:

    .venv/bin/python -m tests.support.ops_screenshot [--out docs/dashboard.png] [--jobs 20000]

Seeds a scratch database (PostgreSQL at TEST_DATABASE_URL when reachable, else SQLite) with the
hand-made operator dataset plus `--jobs` synthetic jobs over a week, serves the app on 127.0.0.1,
logs in with an admin key in headless Chromium and saves a screenshot (1400 x 1800 px).
Needs Redis at TEST_REDIS_URL (dashboard sessions live there).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from tests.support import services
from tests.support.ops_app import serve_app, this_minute
from tests.support.ops_browser import chromium, log_in
from tests.support.ops_data import seed_ops_dataset
from tests.support.ops_seed import seed_bulk


@contextmanager
def scratch_database() -> Iterator[str]:
    if services.postgres_available():
        with services.postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="mcjobs-shot-") as directory:
        yield services.sqlite_url(Path(directory))


def take(out: Path, jobs: int, *, full_page: bool = False) -> None:
    now = this_minute()
    with scratch_database() as url:
        upgrade(url)
        db = Database(url)
        try:
            data = seed_ops_dataset(db, now=now)
            if jobs:
                seed_bulk(db, jobs, now=now, keys=3)

            def settings_for(database_url: str, **overrides: object) -> Settings:
                values: dict[str, object] = {
                    "database_url": database_url,
                    "redis_url": services.TEST_REDIS_URL,
                    **overrides,
                }
                return Settings(_env_file=None, **values)  # type: ignore[call-arg]

            with serve_app(db, settings_for) as base_url, chromium() as browser:
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                log_in(page, base_url, data.admin.api_key, "/dashboard?window=7d")
                page.goto(base_url + "/dashboard?window=7d")
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=full_page)
        finally:
            db.dispose()
    print(f"saved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not 1800 px")
    args = parser.parse_args()
    take(args.out, args.jobs, full_page=args.full_page)


if __name__ == "__main__":
    main()
