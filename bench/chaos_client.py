"""The chaos run's client: submits jobs and batches the way a careful client would, retrying
through API restarts with an ``Idempotency-Key`` so a retry never creates a second job."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.specs import ALL_FAMILIES, job_specs

RETRY_FOR_SECONDS = 120.0


class SubmitRefused(RuntimeError):
    """The API refused a request for good (a 4xx other than 429): the run's specs are wrong."""


@dataclass
class Submitted:
    """Every prompt the client tried to submit, and which requests it finally got a 202 for."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempted_prompts: list[str] = field(default_factory=list)
    accepted_prompts: set[str] = field(default_factory=set)
    batch_ids: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    retries: int = 0
    given_up: int = 0

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.accepted_prompts)


def post_until_accepted(
    client: httpx.Client, path: str, body: dict[str, Any], submitted: Submitted
) -> dict[str, Any] | None:
    """POST with one Idempotency-Key until a 202, for at most `RETRY_FOR_SECONDS`."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while time.monotonic() < deadline:
        pause = 0.2
        try:
            response = client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            response = None
        if response is not None:
            if response.status_code == 202:
                result: dict[str, Any] = response.json()
                return result
            if response.status_code == 429:
                pause = float(response.headers.get("retry-after", "1"))
            elif response.status_code < 500:
                raise SubmitRefused(
                    f"{path} answered {response.status_code}: {response.text[:300]}"
                )
        with submitted.lock:
            submitted.retries += 1
        time.sleep(pause)
    with submitted.lock:
        submitted.given_up += 1
    return None


def submit_all(
    base_url: str,
    api_key: str,
    *,
    jobs: int,
    webhook_url: str,
    tag: str,
    submitted: Submitted,
    stop: threading.Event,
    batch_size: int = 50,
    singles_per_round: int = 10,
    pace: Callable[[], None] = lambda: None,
) -> None:
    """Submit ``jobs`` specs across every family: alternately a batch and a few single jobs."""
    specs = job_specs(jobs, tag=tag, families=ALL_FAMILIES, webhook_url=webhook_url)
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        position = 0
        while position < len(specs) and not stop.is_set():
            chunk = specs[position : position + batch_size]
            position += len(chunk)
            _record_attempt(submitted, chunk)
            batch = post_until_accepted(
                client, "/v1/batches", {"jobs": chunk, "webhook_url": webhook_url}, submitted
            )
            if batch is not None:
                with submitted.lock:
                    submitted.batch_ids.append(batch["id"])
                    submitted.accepted_prompts.update(s["prompt"] for s in chunk)
            for spec in specs[position : position + singles_per_round]:
                _record_attempt(submitted, [spec])
                job = post_until_accepted(client, "/v1/jobs", spec, submitted)
                if job is not None:
                    with submitted.lock:
                        submitted.job_ids.append(job["id"])
                        submitted.accepted_prompts.add(spec["prompt"])
            position += min(singles_per_round, max(0, len(specs) - position))
            pace()


def _record_attempt(submitted: Submitted, chunk: list[dict[str, Any]]) -> None:
    with submitted.lock:
        submitted.attempted_prompts.extend(s["prompt"] for s in chunk)
