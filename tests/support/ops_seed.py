"""Bulk synthetic jobs for the statistics' timing: a million rows in seconds on PostgreSQL (one
`INSERT … SELECT … FROM generate_series`), a slower row-batch insert on SQLite.

The mix resembles a busy service: ~1 % queued and ~1 % running (created in the last ten minutes),
85 % succeeded, 8 % failed, 2 % cancelled, 3 % timed out; five providers; created over `days`
days; a webhook delivery for one job in ten, some of them failing or dead.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import insert, text

from core.db import Database
from core.keys import create_api_key
from core.tables import Job, WebhookDelivery

PROVIDERS = ("midjourney", "flux", "z-image", "seedream", "grok")
MODELS = (
    "mj-v7",
    "flux-2-pro",
    "z-image-turbo",
    "doubao-seedream-4-5-251128",
    "grok-imagine-image-2.0",
)
PRICES = (10, 4, 2, 3, 5)
# typical upstream seconds per provider; each job gets 0.5x..2x of it
UPSTREAM_SECONDS = (40.0, 6.0, 4.0, 8.0, 12.0)

_PG_JOBS = """
WITH src AS (
    SELECT g, random() AS r1, random() AS r2, random() AS r3, (g % 5) AS p
    FROM generate_series(1, :n) AS g
), shaped AS (
    SELECT r3, p,
        CASE WHEN r1 < 0.01 THEN 'queued' WHEN r1 < 0.02 THEN 'running'
             WHEN r1 < 0.87 THEN 'succeeded' WHEN r1 < 0.95 THEN 'failed'
             WHEN r1 < 0.97 THEN 'cancelled' ELSE 'timed_out' END AS status,
        CASE WHEN r1 < 0.02 THEN CAST(:now AS timestamptz) - r2 * interval '10 minutes'
             ELSE CAST(:now AS timestamptz) - r2 * :days * interval '1 day' END AS created
    FROM src
), numbered AS (
    -- rows are inserted as they were created, so ids and the heap follow time as in production
    SELECT *, row_number() OVER (ORDER BY created) AS g FROM shaped
), timed AS (
    SELECT *,
        CASE WHEN status IN ('queued', 'cancelled') THEN NULL
             ELSE created + (0.5 + r3 * 5) * interval '1 second' END AS submitted
    FROM numbered
)
INSERT INTO jobs (
    id, api_key_id, batch_id, status, provider, model, action, prompt, params, images, priority,
    created_at, updated_at, due_at, attempts, polls, submitted_at, finished_at, progress,
    cost_points, error_code, error_message, upstream_task_id
)
SELECT
    'job_bulk' || lpad(g::text, 12, '0'),
    (CAST(:keys AS text[]))[1 + g % cardinality(CAST(:keys AS text[]))],
    NULL, status,
    (ARRAY['midjourney','flux','z-image','seedream','grok'])[p + 1],
    (CAST(:models AS text[]))[p + 1],
    CASE p WHEN 0 THEN 'imagine' ELSE 'generate' END,
    'bulk prompt', '{}'::jsonb, '[]'::jsonb, 0,
    created, created, CASE WHEN status IN ('queued', 'running') THEN created END,
    CASE WHEN submitted IS NULL THEN 0 ELSE 1 END,
    CASE WHEN submitted IS NULL THEN 0 ELSE 3 END,
    submitted,
    CASE WHEN status = 'cancelled' THEN created + interval '30 seconds'
         WHEN status IN ('queued', 'running') THEN NULL
         ELSE submitted
              + (ARRAY[40.0, 6.0, 4.0, 8.0, 12.0])[p + 1] * (0.5 + 1.5 * r3) * interval '1 second'
    END,
    CASE WHEN status = 'succeeded' THEN 100 ELSE 0 END,
    CASE WHEN status = 'succeeded' THEN (ARRAY[10, 4, 2, 3, 5])[p + 1] END,
    CASE status WHEN 'failed' THEN 'upstream_rejected' WHEN 'timed_out' THEN 'deadline_exceeded'
                WHEN 'cancelled' THEN 'cancelled' END,
    CASE status WHEN 'failed' THEN 'bad params' WHEN 'timed_out' THEN 'no answer in time' END,
    CASE WHEN submitted IS NOT NULL THEN 'bulk-' || g END
FROM timed
ORDER BY g
"""

_PG_DELIVERIES = """
INSERT INTO webhook_deliveries (
    id, api_key_id, job_id, batch_id, event_type, url, payload, state, attempts, due_at,
    created_at, updated_at, last_status_code
)
SELECT 'msg_' || substr(id, 5), api_key_id, id, NULL, 'job.' || status,
       'https://hooks.example.com/in', '{}',
       CASE WHEN g % 50 = 0 THEN 'dead' WHEN g % 20 = 0 THEN 'pending' ELSE 'succeeded' END,
       CASE WHEN g % 50 = 0 THEN 9 WHEN g % 20 = 0 THEN 2 ELSE 1 END,
       CASE WHEN g % 20 = 0 AND g % 50 <> 0 THEN finished_at + interval '10 minutes' END,
       finished_at, finished_at, CASE WHEN g % 20 = 0 THEN 500 ELSE 200 END
FROM (SELECT id, api_key_id, status, finished_at,
             CAST(substr(id, 9) AS bigint) AS g FROM jobs
      WHERE id LIKE 'job_bulk%' AND finished_at IS NOT NULL) AS j
WHERE g % 10 = 0
"""


def seed_bulk(
    db: Database, n: int, *, now: dt.datetime, days: float = 7.0, keys: int = 10, seed: int = 7
) -> list[str]:
    """Insert `n` synthetic jobs (and their deliveries); returns the API key ids used."""
    with db.session() as session:
        key_ids = [create_api_key(session, name=f"bulk-{i}").id for i in range(keys)]
    if db.sqlite:
        _seed_sqlite(db, n, now=now, days=days, key_ids=key_ids, seed=seed)
        return key_ids
    with db.session() as session:
        session.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        session.execute(
            text(_PG_JOBS),
            {"n": n, "now": now, "days": days, "keys": key_ids, "models": list(MODELS)},
        )
        session.execute(text(_PG_DELIVERIES))
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return key_ids


def _seed_sqlite(
    db: Database, n: int, *, now: dt.datetime, days: float, key_ids: Sequence[str], seed: int
) -> None:
    rows = sorted(
        _python_rows(n, now=now, days=days, key_ids=key_ids, rng=random.Random(seed)),
        key=lambda row: row["created_at"],
    )
    chunk: list[dict[str, Any]] = []
    for g, row in enumerate(rows, start=1):
        # ids follow creation time, as real ids do
        row["id"] = f"job_bulk{g:012d}"
        if row["upstream_task_id"] is not None:
            row["upstream_task_id"] = f"bulk-{g}"
        chunk.append(row)
        if len(chunk) == 5000:
            _insert_chunk(db, chunk)
            chunk = []
    if chunk:
        _insert_chunk(db, chunk)


def _insert_chunk(db: Database, rows: list[dict[str, Any]]) -> None:
    deliveries = [
        {
            "id": "msg_" + row["id"][4:],
            "api_key_id": row["api_key_id"],
            "job_id": row["id"],
            "event_type": "job." + row["status"],
            "url": "https://hooks.example.com/in",
            "payload": "{}",
            "state": "pending",
            "attempts": 2,
            "due_at": row["finished_at"],
            "created_at": row["finished_at"],
            "updated_at": row["finished_at"],
            "last_status_code": 500,
        }
        for row in rows
        if row["finished_at"] is not None and int(row["id"][8:]) % 20 == 0
    ]
    with db.session() as session:
        session.execute(insert(Job), rows)
        if deliveries:
            session.execute(insert(WebhookDelivery), deliveries)


def _python_rows(
    n: int, *, now: dt.datetime, days: float, key_ids: Sequence[str], rng: random.Random
) -> Iterator[dict[str, Any]]:
    for g in range(1, n + 1):
        r1, r2, r3, p = rng.random(), rng.random(), rng.random(), g % 5
        status = (
            "queued"
            if r1 < 0.01
            else "running"
            if r1 < 0.02
            else "succeeded"
            if r1 < 0.87
            else "failed"
            if r1 < 0.95
            else "cancelled"
            if r1 < 0.97
            else "timed_out"
        )
        span = dt.timedelta(minutes=10) if r1 < 0.02 else dt.timedelta(days=days)
        created = now - span * r2
        submitted = (
            None
            if status in ("queued", "cancelled")
            else created + dt.timedelta(seconds=0.5 + r3 * 5)
        )
        finished: dt.datetime | None = None
        if status == "cancelled":
            finished = created + dt.timedelta(seconds=30)
        elif submitted is not None and status != "running":
            finished = submitted + dt.timedelta(seconds=UPSTREAM_SECONDS[p] * (0.5 + 1.5 * r3))
        yield {
            "id": f"job_bulk{g:012d}",
            "api_key_id": key_ids[g % len(key_ids)],
            "batch_id": None,
            "status": status,
            "provider": PROVIDERS[p],
            "model": MODELS[p],
            "action": "imagine" if p == 0 else "generate",
            "prompt": "bulk prompt",
            "params": {},
            "images": [],
            "priority": 0,
            "created_at": created,
            "updated_at": created,
            "due_at": created if status in ("queued", "running") else None,
            "attempts": 0 if submitted is None else 1,
            "polls": 0 if submitted is None else 3,
            "submitted_at": submitted,
            "finished_at": finished,
            "progress": 100 if status == "succeeded" else 0,
            "cost_points": PRICES[p] if status == "succeeded" else None,
            "error_code": {"failed": "upstream_rejected", "timed_out": "deadline_exceeded"}.get(
                status
            ),
            "error_message": {"failed": "bad params", "timed_out": "no answer in time"}.get(status),
            "upstream_task_id": f"bulk-{g}" if submitted is not None else None,
        }
