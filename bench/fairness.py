"""Benchmark 4: a single job submitted behind a queued 10,000-job batch reaches upstream quickly.

The provider limit is kept at a realistic 20 submits/s, so the big batch drains for minutes and
the submit pump always has thousands of queued rows to choose from. Single jobs are then
submitted one at a time, by the batch's own API key and by a second key, and timed until
MetaChat (the simulator) has them: their ``submitted_at`` minus ``created_at`` as the service
records them, and the client's wall clock from the POST to seeing ``upstream_task_id``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import httpx

from bench.report import Goal, Section, fmt, table
from bench.specs import job_specs
from bench.stack import SIM_API_KEY, Stack, StackError, create_api_key, fresh_postgres, wait_for
from bench.stats import median

RATE = "20"


def _parse(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _time_one(client: httpx.Client, tag: str, timeout: float) -> tuple[float, float]:
    spec = job_specs(1, tag=tag)[0]
    t0 = time.perf_counter()
    response = client.post("/v1/jobs", json=spec)
    if response.status_code != 202:
        raise StackError(f"POST /v1/jobs answered {response.status_code}: {response.text[:300]}")
    job_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("submitted_at"):
            wall = time.perf_counter() - t0
            return _parse(job["submitted_at"]) - _parse(job["created_at"]), wall
        if time.monotonic() > deadline:
            raise StackError(f"{job_id} not submitted upstream within {timeout:.0f}s")
        time.sleep(0.02)


def run_fairness(
    *, batch_jobs: int = 10_000, probes: int = 5, progress: Callable[[str], None] | None = None
) -> Section:
    results: dict[str, list[tuple[float, float]]] = {"same key": [], "another key": []}
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        sim_url = stack.start_sim(profile="fast")
        env = {
            "METACHAT_BASE_URL": sim_url,
            "METACHAT_API_KEY": SIM_API_KEY,
            "PROVIDER_RATE_PER_SECOND": f'{{"default": {RATE}}}',
        }
        key_a, _ = create_api_key(stack, name="bulk")
        key_b, _ = create_api_key(stack, name="single", admin=False)
        base = stack.start_api(env)
        stack.start_worker(env, concurrency=2)
        stack.start_beat(env)
        clients = {
            "same key": httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key_a}"}, timeout=120
            ),
            "another key": httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key_b}"}, timeout=120
            ),
        }
        try:
            bulk = clients["same key"]
            response = bulk.post("/v1/batches", json={"jobs": job_specs(batch_jobs, tag="bulk")})
            if response.status_code != 202:
                raise StackError(f"batch refused: {response.status_code} {response.text[:300]}")
            batch_id = response.json()["id"]

            def batch_started() -> bool:
                counts = bulk.get(f"/v1/batches/{batch_id}").json()["counts"]
                return int(counts.get("queued", 0)) < batch_jobs - 20

            wait_for(batch_started, timeout=120, what="the big batch to start", interval=0.2)
            for probe in range(probes):
                for who, client in clients.items():
                    results[who].append(_time_one(client, f"fair {who} {probe}", timeout=60))
                    if progress is not None:
                        progress(f"{who} probe {probe + 1}: {results[who][-1][1]:.2f} s")
            counts = bulk.get(f"/v1/batches/{batch_id}").json()["counts"]
            still_queued = int(counts.get("queued", 0))
        finally:
            for client in clients.values():
                client.close()
    rows = []
    worst = 0.0
    for who, samples in results.items():
        server = [s for s, _ in samples]
        wall = [w for _, w in samples]
        worst = max(worst, max(wall))
        rows.append([who, fmt(median(server), 3), fmt(median(wall), 3), fmt(max(wall), 3)])
    body = "\n".join(
        [
            f"A {batch_jobs:,}-job batch is queued first; the provider limit is {RATE} submits/s, "
            f"so it drains for minutes (still {still_queued:,} queued at the end). Then "
            f"{probes} single jobs per row are submitted one at a time and timed until they are "
            "submitted upstream: *server* is the job's `submitted_at - created_at`, *client* the "
            "wall clock from sending the POST to reading a `submitted_at` (polling every 20 ms). "
            "*Same key* is the batch's own API key (a job outside the batch), *another key* a "
            "second tenant.",
            "",
            table(["single job by", "server median s", "client median s", "client max s"], rows),
        ]
    )
    goals = [
        Goal("submit of a job behind the batch, worst", f"{worst:.2f} s", "≤ 2 s", worst <= 2.0)
    ]
    return Section("fairness", "Fairness", body, goals)
