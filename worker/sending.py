"""What a dead worker's submits had got to: never sent, sent, or accepted with a task id.

A worker that dies holding submit leases leaves jobs nobody can vouch for: MetaChat may have
made their tasks. To tell the cases apart, every submit leaves a trail in Redis:

- an *unsent* mark, set right after the claim commits and removed the moment the HTTP client
  starts writing that job's request (httpcore's ``trace`` extension reports
  ``send_request_headers.started``; httpx's own transport does, so the marks are only used with
  it);
- an *accepted* note with MetaChat's task id, written by the very coroutine that read the
  answer, before anything else happens: a fraction of a millisecond after the answer lands.

Maintenance then re-queues an abandoned job still marked unsent, recovers one with a noted task
id as running, and fails only the rest as ``submit_uncertain``. Losing the trail (a Redis flush,
an expiry) only ever makes a job look *maybe sent*: the safe side.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import redis

# The job whose submit is being sent from the current task (set around `client.submit`).
sending_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mcjobs_sending_job", default=None
)

_SEND_STARTED = ("http11.send_request_headers.started", "http2.send_request_headers.started")


class SubmitTrail:
    """Per-job Redis marks of how far a leased submit got (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: float, prefix: str = "mcjobs:submit"
    ) -> None:
        self._redis = client
        self._ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._prefix = prefix

    def _unsent(self, job_id: str) -> str:
        return f"{self._prefix}:unsent:{job_id}"

    def _accepted(self, job_id: str) -> str:
        return f"{self._prefix}:accepted:{job_id}"

    def mark_unsent(self, job_ids: Iterable[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(self._unsent(job_id), 1, px=self._ttl_ms)
        pipe.execute()

    def sending(self, job_id: str) -> None:
        self._redis.delete(self._unsent(job_id))

    def accepted(self, job_id: str, task_id: str) -> None:
        self._redis.set(self._accepted(job_id), task_id, px=self._ttl_ms)

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop the trail of submits whose outcome is now in the database."""
        keys = [key for job_id in job_ids for key in (self._unsent(job_id), self._accepted(job_id))]
        if keys:
            self._redis.delete(*keys)

    def never_sent(self, job_ids: Iterable[str]) -> set[str]:
        """The jobs among ``job_ids`` whose request certainly never started to leave."""
        wanted = list(job_ids)
        if not wanted:
            return set()
        found = self._redis.mget([self._unsent(job_id) for job_id in wanted])
        return {job_id for job_id, value in zip(wanted, found, strict=True) if value is not None}

    def task_ids(self, job_ids: Iterable[str]) -> dict[str, str]:
        """MetaChat's task id for the jobs among ``job_ids`` whose answer was read."""
        wanted = list(job_ids)
        if not wanted:
            return {}
        found = self._redis.mget([self._accepted(job_id) for job_id in wanted])
        return {
            job_id: value.decode() if isinstance(value, bytes) else str(value)
            for job_id, value in zip(wanted, found, strict=True)
            if value is not None
        }


def install_send_tracer(http: httpx.AsyncClient, trail: SubmitTrail) -> None:
    """Make every submit request sent through ``http`` clear its job's unsent mark as it
    starts to leave."""

    async def attach_tracer(request: httpx.Request) -> None:
        job_id = sending_job.get()
        if job_id is not None:
            request.extensions["trace"] = _tracer(trail, job_id)

    http.event_hooks["request"] = [*http.event_hooks.get("request", []), attach_tracer]


def _tracer(trail: SubmitTrail, job_id: str) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    cleared = False

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal cleared
        if not cleared and event in _SEND_STARTED:
            cleared = True
            trail.sending(job_id)

    return trace
