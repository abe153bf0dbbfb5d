"""The reference's HTTP API: insert the row, commit, ``delay()`` the task.

Served with ``uvicorn bench.reference.api:app``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bench.reference import config
from bench.reference.schema import RefJob
from bench.reference.tasks import submit_job

app = FastAPI(title="reference")


class JobIn(BaseModel):
    model: str
    prompt: str
    params: dict[str, Any] = Field(default_factory=dict)


class BulkIn(BaseModel):
    jobs: list[JobIn] = Field(min_length=1, max_length=10_000)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/jobs", status_code=202)
def create_job(spec: JobIn) -> dict[str, Any]:
    with config.session_factory().begin() as session:
        job = RefJob(model=spec.model, prompt=spec.prompt, params=spec.params)
        session.add(job)
        session.flush()
        job_id = job.id
    submit_job.delay(job_id)
    return {"id": job_id, "status": "queued"}


@app.post("/jobs/bulk", status_code=202)
def create_jobs(bulk: BulkIn) -> dict[str, Any]:
    with config.session_factory().begin() as session:
        jobs = [RefJob(model=s.model, prompt=s.prompt, params=s.params) for s in bulk.jobs]
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
    for job_id in ids:
        submit_job.delay(job_id)
    return {"ids": ids}
