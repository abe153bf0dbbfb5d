"""The reference's Celery tasks: submit, then poll by re-scheduling with ``countdown``.

Run with ``celery -A bench.reference.tasks worker -Q ref -c 2``.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

import httpx
from celery import Celery

from bench.reference import config
from bench.reference.schema import RefJob

app = Celery("reference", broker=config.BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    task_default_queue=config.QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@lru_cache(maxsize=1)
def http() -> httpx.Client:
    """One keep-alive client per worker process."""
    return httpx.Client(
        base_url=config.METACHAT_BASE_URL,
        headers={"Authorization": f"Bearer {config.METACHAT_API_KEY}"},
        timeout=httpx.Timeout(30.0, connect=5.0),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _finish(job_id: int, **values: Any) -> None:
    with config.session_factory().begin() as session:
        job = session.get(RefJob, job_id)
        if job is not None:
            for name, value in values.items():
                setattr(job, name, value)
            job.finished_at = _now()


@app.task(bind=True, max_retries=8, name="ref.submit")  # type: ignore[untyped-decorator]
def submit_job(self: Any, job_id: int) -> None:
    """Send the job upstream; on success schedule its first poll."""
    with config.session_factory().begin() as session:
        job = session.get(RefJob, job_id)
        if job is None or job.status != "queued":
            return
        job.attempts += 1
        model, prompt, params = job.model, job.prompt, dict(job.params or {})
    submit_path, _ = config.paths_for(model)
    try:
        response = http().post(
            submit_path, json={"model": model, "prompt": prompt, "params": params}
        )
    except httpx.TransportError as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise self.retry(countdown=2**self.request.retries)
    envelope = response.json()
    if envelope.get("status") != "Success":
        _finish(job_id, status="failed", error=str(envelope.get("message")))
        return
    with config.session_factory().begin() as session:
        job = session.get(RefJob, job_id)
        if job is None:
            return
        job.status = "running"
        job.upstream_task_id = envelope["data"]["id"]
        job.submitted_at = _now()
    poll_job.apply_async((job_id, config.FIRST_POLL_SECONDS), countdown=config.FIRST_POLL_SECONDS)


@app.task(name="ref.poll")  # type: ignore[untyped-decorator]
def poll_job(job_id: int, delay: float) -> None:
    """Ask upstream once; store the outcome or re-schedule with a longer countdown."""
    with config.session_factory().begin() as session:
        job = session.get(RefJob, job_id)
        if job is None or job.status != "running" or job.upstream_task_id is None:
            return
        model, task_id = job.model, job.upstream_task_id
    _, result_path = config.paths_for(model)
    next_delay = min(config.MAX_POLL_SECONDS, delay * 1.5)
    try:
        response = http().get(result_path.format(id=task_id))
        envelope = response.json() if response.status_code < 500 else {}
    except (httpx.TransportError, ValueError):
        envelope = {}
    data = envelope.get("data") or {}
    status = data.get("status")
    if status == "success":
        urls = data.get("image_urls") or ([data["image_url"]] if data.get("image_url") else [])
        result = {"image_urls": urls, "video_url": data.get("video_url")}
        _finish(
            job_id,
            status="succeeded",
            result=result,
            cost_points=data.get("total_points"),
            progress=100,
        )
        return
    if status == "failure":
        _finish(job_id, status="failed", error=str(data.get("fail_reason")))
        return
    with config.session_factory().begin() as session:
        job = session.get(RefJob, job_id)
        if job is not None:
            job.polls += 1
            job.progress = int(data.get("progress") or job.progress)
    poll_job.apply_async((job_id, next_delay), countdown=next_delay)
