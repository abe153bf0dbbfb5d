"""Benchmark 5: API latency at a fixed offered load, and memory with 20,000 jobs in flight.

The simulator runs with durations stretched (``time_scale``) so every job stays running upstream
for many minutes; the service submits 20,000 jobs (two 10,000-job batches) and keeps polling
them. While they are in flight a separate process (`bench.loadgen`) offers ``GET /v1/jobs/{id}``
and then ``POST /v1/jobs`` at a fixed rate on an open-loop schedule. Peak RSS of the worker and
API process trees is sampled every half second throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench.procs import PeakMemory
from bench.report import Goal, Section, fmt, prose, table
from bench.specs import job_specs
from bench.stack import SIM_API_KEY, Stack, StackError, create_api_key, fresh_postgres
from bench.stats import percentile

SIM_TIME_SCALE = 60.0  # Z-Image's 6 s becomes 6 minutes, Midjourney's 40 s 40 minutes
MiB = 2**20


class MemorySampler(threading.Thread):
    """Samples named process trees every ``interval`` seconds until stopped."""

    def __init__(self, stack: Stack, names: tuple[str, ...], interval: float = 0.5) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack, self.names, self.interval = stack, names, interval
        self.peaks = PeakMemory()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            for name in self.names:
                self.peaks.sample(name, self.stack.services[name].pid)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _loadgen(
    stack: Stack, base: str, api_key: str, kind: str, rate: float, seconds: float
) -> dict[str, Any]:
    ids_file = stack.workdir / "job-ids.txt"
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--base",
        base,
        "--kind",
        kind,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--ids",
        str(ids_file),
    ]
    out = subprocess.run(
        argv,
        env=stack.env({"BENCH_API_KEY": api_key}),
        cwd=stack.workdir,
        capture_output=True,
        text=True,
        timeout=seconds * 3 + 60,
        check=False,
    )
    if out.returncode != 0:
        raise StackError(f"loadgen failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_api(
    *,
    in_flight: int = 20_000,
    rate: float = 50.0,
    seconds: float = 20.0,
    progress: Callable[[str], None] | None = None,
) -> Section:
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        sim_url = stack.start_sim(profile="realistic")
        httpx.post(
            sim_url.replace("/open/v1", "/_sim/config"), json={"time_scale": SIM_TIME_SCALE}
        ).raise_for_status()
        env = {
            "METACHAT_BASE_URL": sim_url,
            "METACHAT_API_KEY": SIM_API_KEY,
            # the service is told durations are stretched too, as it would learn them
            "POLL_TIME_SCALE": str(SIM_TIME_SCALE),
            "PROVIDER_RATE_PER_SECOND": '{"default": 2000}',
            "PROVIDER_MAX_IN_FLIGHT": '{"default": 100000}',
        }
        api_key, _ = create_api_key(stack)
        base = stack.start_api(env)
        stack.start_worker(env, concurrency=2)
        stack.start_beat(env)
        sampler = MemorySampler(stack, ("api", "worker"))
        sampler.start()
        headers = {"Authorization": f"Bearer {api_key}"}
        job_ids: list[str] = []
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
                remaining, n = in_flight, 0
                while remaining > 0:
                    size = min(10_000, remaining)
                    specs = job_specs(size, tag=f"in flight {n}")
                    response = client.post("/v1/batches", json={"jobs": specs})
                    if response.status_code != 202:
                        raise StackError(f"batch refused: {response.status_code}")
                    batch_id = response.json()["id"]
                    page = client.get(f"/v1/batches/{batch_id}/jobs", params={"limit": 500})
                    job_ids += [job["id"] for job in page.json()["data"]]
                    remaining -= size
                    n += 1
                (stack.workdir / "job-ids.txt").write_text("\n".join(job_ids))
                running = _wait_running(stack, client, in_flight, progress)
                if progress is not None:
                    progress(f"{running:,} running; offering GET at {rate:g}/s")
                get = _loadgen(stack, base, api_key, "get", rate, seconds)
                if progress is not None:
                    progress(f"offering POST at {rate:g}/s")
                post = _loadgen(stack, base, api_key, "post", rate, seconds)
        finally:
            sampler.stop()
        peaks = sampler.peaks.peaks
    return _section(get, post, peaks, running, in_flight, rate, seconds)


def _wait_running(
    stack: Stack, client: httpx.Client, wanted: int, progress: Callable[[str], None] | None
) -> int:
    """Wait (at most 10 minutes) for ``wanted`` jobs to be running upstream; return how many."""
    from bench.pipeline import count_where

    deadline = time.monotonic() + 600
    running = 0
    last_said = time.monotonic()
    while time.monotonic() < deadline:
        stack.check_alive("api", "worker", "beat")
        running = count_where(
            stack.database_url, "SELECT count(*) FROM jobs WHERE status = 'running'"
        )
        if running >= wanted:
            break
        if progress is not None and time.monotonic() - last_said > 15:
            progress(f"{running:,}/{wanted:,} running")
            last_said = time.monotonic()
        time.sleep(1.0)
    return running


def _latency_row(name: str, result: dict[str, Any]) -> list[str]:
    lat = result["latencies_ms"]
    ok = sum(n for code, n in result["statuses"].items() if code.startswith("2"))
    errors = result["sent"] - ok
    return [
        name,
        str(result["sent"]),
        fmt(percentile(lat, 50), 1),
        fmt(percentile(lat, 99), 1),
        fmt(max(lat) if lat else float("nan"), 1),
        str(errors),
    ]


def _section(
    get: dict[str, Any],
    post: dict[str, Any],
    peaks: dict[str, Any],
    running: int,
    in_flight: int,
    rate: float,
    seconds: float,
) -> Section:
    latency = table(
        ["request", "sent", "p50 ms", "p99 ms", "max ms", "non-2xx or failed"],
        [_latency_row("GET /v1/jobs/{id}", get), _latency_row("POST /v1/jobs", post)],
    )
    memory = table(
        ["process tree", "peak RSS, sum (MiB)", "peak USS, sum (MiB)", "largest process RSS (MiB)"],
        [
            [
                name,
                fmt(peak.rss_total / MiB, 0),
                fmt(peak.uss_total / MiB, 0),
                fmt(peak.rss_largest / MiB, 0),
            ]
            for name, peak in peaks.items()
        ],
    )
    body = "\n\n".join(
        [
            prose(
                f"""{in_flight:,} jobs (two 10,000-job batches of the image mix) submitted to a
                simulator whose durations are stretched {SIM_TIME_SCALE:g}x (and the service
                told so with `POLL_TIME_SCALE={SIM_TIME_SCALE:g}`), so all stay running
                upstream while being polled; {running:,} were running when the load started.
                A separate process then offered {rate:g} requests/s for {seconds:g} s of each kind
                on an open-loop schedule (latency measured from each request's scheduled start,
                so stalls count): GETs of random jobs among the first 500 of each batch, then
                POSTs of new single jobs. API, worker (2 pool processes) and beat share the
                2 CPUs with PostgreSQL, Redis, the simulator and the load generator."""
            ),
            latency,
            prose(
                """Peak resident memory sampled every 0.5 s over the whole run (submitting the
                batches, all jobs running, the load). USS counts only pages private to each
                process, so it does not count twice what a pool child shares with its parent."""
            ),
            memory,
        ]
    )
    get_p99 = percentile(get["latencies_ms"], 99)
    post_p99 = percentile(post["latencies_ms"], 99)
    goals = [
        Goal(
            "jobs in flight during the load", f"{running:,}", f"{in_flight:,}", running >= in_flight
        ),
        Goal("GET p99 at the offered load", f"{get_p99:.0f} ms", "reported", True),
        Goal("POST p99 at the offered load", f"{post_p99:.0f} ms", "reported", True),
    ]
    return Section("api", "API latency and memory", body, goals)
