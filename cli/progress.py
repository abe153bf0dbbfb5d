"""Waiting for work to finish, with a live `rich` display on stderr (stdout stays for results).

A batch shows one bar (finished of total) and its counts by status; a job shows its status and
upstream progress. Both poll the API every `interval` seconds until nothing is queued or
running, or until `timeout` passes (`WaitTimedOut`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cli.http import ApiClient

ACTIVE: Final = ("queued", "running")
# once no job is active, how long to let the service mark the batch completed
SETTLE_SECONDS: Final = 5.0
FINISHED: Final = ("succeeded", "failed", "cancelled", "timed_out")
STYLES: Final = {
    "queued": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "timed_out": "magenta",
}


class WaitTimedOut(Exception):
    """Still not finished when the wait's timeout passed."""


def counts_text(counts: Mapping[str, int]) -> str:
    """``queued 3 · running 5 · succeeded 40`` with rich styles, zeros left out."""
    parts = [
        f"[{STYLES[status]}]{status} {counts[status]}[/]"
        for status in (*ACTIVE, *FINISHED)
        if counts.get(status)
    ]
    return " · ".join(parts) or "[dim]nothing yet[/]"


def batch_done(batch: Mapping[str, Any]) -> bool:
    counts = batch.get("counts") or {}
    return not any(counts.get(status) for status in ACTIVE)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=False,
    )


def wait_for_batch(
    client: ApiClient,
    batch_id: str,
    *,
    interval: float = 2.0,
    timeout: float | None = None,
    console: Console | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the batch until none of its jobs is queued or running; returns the last Batch.

    The batch's own status follows its jobs a moment later (maintenance marks it completed);
    the wait gives it `SETTLE_SECONDS` to do so, so the batch shown at the end is not "running".
    """
    console = console or Console(stderr=True)
    deadline = None if timeout is None else clock() + timeout
    settled_by: float | None = None
    batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}")
    with _progress(console) as progress:
        task = progress.add_task(batch_id, total=batch["total"], counts="")
        while True:
            counts = batch.get("counts") or {}
            finished = sum(int(counts.get(status, 0)) for status in FINISHED)
            progress.update(
                task, total=batch["total"], completed=finished, counts=counts_text(counts)
            )
            if batch_done(batch):
                settled_by = settled_by or clock() + SETTLE_SECONDS
                if batch["status"] != "running" or clock() >= settled_by:
                    return batch
            else:
                settled_by = None
            if deadline is not None and clock() >= deadline:
                raise WaitTimedOut(f"batch {batch_id} still running after {timeout:.0f}s")
            sleep(interval if settled_by is None else min(interval, 0.5))
            batch = client.get(f"/v1/batches/{batch_id}")


def wait_for_job(
    client: ApiClient,
    job_id: str,
    *,
    interval: float = 1.0,
    timeout: float | None = None,
    console: Console | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the job until it finishes; returns the last Job."""
    console = console or Console(stderr=True)
    deadline = None if timeout is None else clock() + timeout
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
    with _progress(console) as progress:
        task = progress.add_task(job_id, total=100, counts="")
        while True:
            status = job["status"]
            done = status in FINISHED
            progress.update(
                task,
                completed=100 if done else int(job.get("progress") or 0),
                counts=f"[{STYLES.get(status, '')}]{status}[/]",
            )
            if done:
                return job
            if deadline is not None and clock() >= deadline:
                raise WaitTimedOut(f"job {job_id} still {status} after {timeout:.0f}s")
            sleep(interval)
            job = client.get(f"/v1/jobs/{job_id}")
