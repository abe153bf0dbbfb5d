"""What the service costs with nothing to do: worker and beat CPU over a quiet minute.

The stack is the pipeline benchmark's (`mcjobs worker -c 2`, `mcjobs beat`, the `instant`
simulator, a fresh PostgreSQL database, a private Redis). A few jobs run first so every pool
process has opened its connections and loaded its modules; then the stack idles while beat
sends one pulse a second (one read for every pump), and the CPU the OS reports for the worker
and beat trees over the window is divided by the window: the share of one core it takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from bench.pipeline import TERMINAL, ours_env, post_batches, wait_terminal
from bench.procs import postgres_server_cpu_seconds, tree_cpu_seconds
from bench.report import Goal, Section, fmt, prose, table
from bench.specs import job_specs
from bench.stack import Stack, create_api_key, fresh_postgres

WARMUP_JOBS = 20
# Idle share of one core the worker and beat together may take.
IDLE_GOAL = 0.02


def run_idle(
    *, seconds: float = 60.0, settle: float = 10.0, progress: Callable[[str], None] | None = None
) -> Section:
    say = progress or (lambda _message: None)
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        env = ours_env(stack.start_sim(profile="instant"))
        api_key, _ = create_api_key(stack)
        base = stack.start_api(env)
        stack.start_worker(env, concurrency=2)
        stack.start_beat(env)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        ) as client:
            post_batches(client, "/v1/batches", job_specs(WARMUP_JOBS, tag="idle"), WARMUP_JOBS)
        wait_terminal(
            stack,
            count_sql=f"SELECT count(*) FROM jobs WHERE status IN {TERMINAL!r}",
            expected=WARMUP_JOBS,
            timeout=120,
            watch=("worker", "beat"),
        )
        say(f"warm; settling {settle:.0f} s, then measuring {seconds:.0f} s of idling")
        time.sleep(settle)  # webhook-free jobs leave nothing behind; let the last tick end
        pids = {name: stack.services[name].pid for name in ("worker", "beat")}
        before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        pg_before = postgres_server_cpu_seconds()
        started = time.monotonic()
        time.sleep(seconds)  # the measured window: nothing is submitted
        elapsed = time.monotonic() - started
        stack.check_alive("worker", "beat")
        used = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        pg_used = postgres_server_cpu_seconds() - pg_before
    share = {name: value / elapsed for name, value in used.items()}
    total = sum(share.values())
    rows = [[name, fmt(100 * value, 2) + " %"] for name, value in share.items()]
    rows.append(["worker + beat", fmt(100 * total, 2) + " %"])
    rows.append(
        ["PostgreSQL (whole server, for information)", fmt(100 * pg_used / elapsed, 2) + " %"]
    )
    body = "\n\n".join(
        [
            prose(
                f"""The pipeline stack (`mcjobs worker -c 2` and `mcjobs beat`, the `instant`
                simulator, PostgreSQL, a private Redis) runs {WARMUP_JOBS} jobs to warm up,
                settles {settle:.0f} s, then idles for {elapsed:.0f} s while beat sends one
                pulse a second (one indexed read covers every pump). The share of one core
                is the user+system CPU of each process tree over the window divided by the
                window."""
            ),
            table(["process tree", "share of one core"], rows),
        ]
    )
    goal = Goal(
        name="idle worker + beat, share of one core",
        value=f"{100 * total:.2f} %",
        target=f"< {100 * IDLE_GOAL:.0f} %",
        met=total < IDLE_GOAL,
    )
    return Section(key="idle", title="Idle cost", body=body, goals=[goal])
