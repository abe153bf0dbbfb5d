"""Benchmark 3: accepting a 10,000-job batch through the API vs a plain bulk insert.

The API runs alone (no worker claiming rows meanwhile) on a fresh PostgreSQL database; the client
times ``POST /v1/batches`` from the first byte sent to the 202. The plain insert writes the same
rows the API writes for a batch (the batch, its jobs and their first audit events) in one
transaction with the same driver, psycopg 3 through SQLAlchemy: once as an executemany of Core
``insert()`` (multi-row INSERTs), once with ``COPY``. The plain side is handed ready-made rows:
no parsing, no validation, no ids to draw.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, insert

from bench.report import Goal, Section, fmt, table
from bench.specs import job_specs
from bench.stack import Stack, StackError, create_api_key, fresh_postgres
from bench.stats import median, ratio
from core.tables import metadata

BATCHES, JOBS, EVENTS = (metadata.tables[n] for n in ("batches", "jobs", "job_events"))
JOB_COLUMNS = (
    "id",
    "api_key_id",
    "batch_id",
    "status",
    "provider",
    "model",
    "action",
    "prompt",
    "params",
    "images",
    "priority",
    "created_at",
    "updated_at",
    "due_at",
    "attempts",
    "polls",
    "progress",
)
PROVIDER_OF = {
    "mj-v7": "midjourney",
    "flux-2-pro": "flux",
    "flux-kontext": "flux",
    "z-image-turbo": "z-image",
    "doubao-seedream-4-5-251128": "seedream",
    "grok-imagine-image-2.0": "grok",
}


def _plain_rows(
    specs: list[dict[str, Any]], api_key_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC)
    batch_id = f"bat_plain{secrets.token_hex(8)}"
    batch = {"id": batch_id, "api_key_id": api_key_id, "status": "running", "total": len(specs)}
    jobs = []
    for n, spec in enumerate(specs):
        model = spec["model"]
        jobs.append(
            {
                "id": f"job_plain{secrets.token_hex(6)}{n:05d}",
                "api_key_id": api_key_id,
                "batch_id": batch_id,
                "status": "queued",
                "provider": PROVIDER_OF[model],
                "model": model,
                "action": "imagine" if model.startswith("mj-") else "generate",
                "prompt": spec["prompt"],
                "params": spec.get("params", {}),
                "images": spec.get("images", []),
                "priority": 0,
                "created_at": now,
                "updated_at": now,
                "due_at": now,
                "attempts": 0,
                "polls": 0,
                "progress": 0,
            }
        )
    events = [
        {
            "job_id": j["id"],
            "at": now,
            "from_status": None,
            "to_status": "queued",
            "reason": "submitted",
        }
        for j in jobs
    ]
    return batch, jobs, events


def plain_executemany(engine: Engine, specs: list[dict[str, Any]], api_key_id: str) -> float:
    batch, jobs, events = _plain_rows(specs, api_key_id)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(BATCHES), [batch])
        conn.execute(insert(JOBS), jobs)
        conn.execute(insert(EVENTS), events)
    return time.perf_counter() - t0


def plain_copy(engine: Engine, specs: list[dict[str, Any]], api_key_id: str) -> float:
    batch, jobs, events = _plain_rows(specs, api_key_id)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(BATCHES), [batch])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        columns = ", ".join(JOB_COLUMNS)
        with cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for job in jobs:
                copy.write_row(
                    [
                        json.dumps(job[c]) if c in ("params", "images") else job[c]
                        for c in JOB_COLUMNS
                    ]
                )
        with cursor.copy("COPY job_events (job_id, at, to_status, reason) FROM STDIN") as copy:
            for event in events:
                copy.write_row([event["job_id"], event["at"], "queued", "submitted"])
    return time.perf_counter() - t0


def _api_key_id(engine: Engine) -> str:
    with engine.connect() as conn:
        row = conn.execute(metadata.tables["api_keys"].select().limit(1)).first()
    if row is None:
        raise StackError("no API key in the database")
    return str(row.id)


def run_ingest(
    *, jobs: int = 10_000, runs: int = 5, progress: Callable[[str], None] | None = None
) -> Section:
    """Time `runs` batch POSTs of `jobs` specs, then the plain inserts of the same rows."""
    api_times: list[float] = []
    many_times: list[float] = []
    copy_times: list[float] = []
    body_bytes = 0
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        api_key, _ = create_api_key(stack)
        base = stack.start_api({})
        engine = create_engine(url)
        key_id = _api_key_id(engine)
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            warm = json.dumps({"jobs": job_specs(100, tag="ingest warm-up")})
            client.post("/v1/batches", content=warm).raise_for_status()
            for run in range(runs):
                specs = job_specs(jobs, tag=f"ingest run {run}")
                payload = json.dumps({"jobs": specs}).encode()
                body_bytes = len(payload)
                t0 = time.perf_counter()
                response = client.post("/v1/batches", content=payload)
                elapsed = time.perf_counter() - t0
                if response.status_code != 202:
                    raise StackError(
                        f"POST /v1/batches answered {response.status_code}: {response.text[:300]}"
                    )
                api_times.append(elapsed)
                many_times.append(plain_executemany(engine, specs, key_id))
                copy_times.append(plain_copy(engine, specs, key_id))
                if progress is not None:
                    progress(f"run {run + 1}/{runs}: API {elapsed:.2f} s")
        engine.dispose()
    api, many, copy = median(api_times), median(many_times), median(copy_times)
    rows = [
        ["`POST /v1/batches` over HTTP → 202", fmt(api, 3), "1.00", fmt(jobs / api)],
        [
            "plain executemany (Core `insert()`, psycopg 3)",
            fmt(many, 3),
            fmt(ratio(api, many)),
            fmt(jobs / many),
        ],
        ["plain `COPY` (psycopg 3)", fmt(copy, 3), fmt(ratio(api, copy)), fmt(jobs / copy)],
    ]
    body = "\n".join(
        [
            f"A {jobs:,}-job batch ({body_bytes / 1e6:.1f} MB of JSON, the image mix of the "
            "pipeline benchmark) accepted by `mcjobs api` running alone on a fresh PostgreSQL "
            "database, "
            f"timed by the client from sending the request to the 202; median of {runs} batches. "
            "The plain inserts write the same rows (the batch, its jobs and their first "
            "`job_events` row) in one transaction with the same driver, given ready-made rows: "
            "no parsing, validation or id generation.",
            "",
            table(["path", "seconds", "API ÷ this", "rows/s"], rows),
        ]
    )
    goals = [
        Goal(f"accept {jobs:,} jobs", f"{api:.2f} s", "≤ 2 s", api <= 2.0),
        Goal("API ÷ plain executemany", f"{ratio(api, many):.2f}", "≤ 3", ratio(api, many) <= 3),
    ]
    return Section("ingest", "Bulk ingest", body, goals)
