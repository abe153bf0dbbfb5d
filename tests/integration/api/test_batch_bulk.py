"""A 10,000-job batch is accepted in one request, inserted in bulk, and answered quickly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import event

from api.app import create_app
from core.db import Database
from core.settings import Settings
from core.tables import Job
from tests.support.api_client import api_clients
from tests.support.api_data import count

SIZE = 10_000


@pytest.fixture
def bulk_db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.dispose()


def test_ten_thousand_jobs_are_accepted_in_a_few_statements(
    bulk_db: Database, settings_for: Callable[..., Settings]
) -> None:
    specs = [
        {"prompt": f"a lighthouse at dawn, take {n}", "metadata": {"row": n, "sku": f"S-{n}"}}
        for n in range(SIZE)
    ]
    body = {
        "defaults": {"model": "flux-2-pro", "params": {"aspect": "16:9"}},
        "webhook_url": "http://127.0.0.1:9/hook",
        "jobs": specs,
    }
    statements: list[str] = []
    event.listen(bulk_db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    app = create_app(settings_for(bulk_db.url), bulk_db)

    with api_clients(app, bulk_db) as clients:
        client = clients.new("bulk")
        statements.clear()
        started = time.perf_counter()
        response = client.post("/v1/batches", json=body)
        elapsed = time.perf_counter() - started

    print(f"\n10,000-job batch accepted on PostgreSQL in {elapsed:.3f} s")
    assert response.status_code == 202
    assert response.json()["total"] == SIZE
    assert count(bulk_db, Job) == SIZE
    job_inserts = [s for s in statements if s.startswith("INSERT INTO jobs")]
    assert 1 <= len(job_inserts) <= 20, "jobs must go in as multi-row inserts"
    assert elapsed < 30, "far slower than the ~2 s target: something went per-row"
