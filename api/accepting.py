"""The common path of `POST /v1/jobs` and `POST /v1/batches`: create in one transaction under
the request's `Idempotency-Key`, map refusals to problems, and nudge the submit pump once the
transaction has committed (never inside it: a worker must find the rows it is told about)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import BackgroundTasks, Response
from sqlalchemy.orm import Session

from api.errors import ProblemError
from core import nudge
from core.db import Database
from core.idempotency import IdempotencyConflict, fingerprint, run_idempotent
from core.settings import Settings
from core.submission import SubmissionRefused
from core.tables import ApiKey

REPLAYED_HEADER = "Idempotent-Replayed"


def refusal_problem(exc: SubmissionRefused) -> ProblemError:
    return ProblemError(exc.status, exc.title, exc.detail, errors=exc.errors)


def accept(
    *,
    db: Database,
    settings: Settings,
    key: ApiKey,
    idempotency_key: str | None,
    method_path: str,
    body: Callable[[], Any],
    create: Callable[[Session], tuple[int, dict[str, Any]]],
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Run `create` at most once per idempotency key and return the body to answer with.

    `body()` gives the request as JSON for the key's fingerprint; it is only called when there
    is a key (dumping ten thousand specs is not free)."""
    try:
        outcome = run_idempotent(
            db,
            create,
            api_key_id=key.id,
            key=idempotency_key,
            method_path=method_path,
            request_hash=fingerprint(method_path, body()) if idempotency_key else "",
            ttl=dt.timedelta(hours=settings.idempotency_ttl_hours),
        )
    except SubmissionRefused as exc:
        raise refusal_problem(exc) from None
    except IdempotencyConflict as exc:
        raise ProblemError(409, "Idempotency-Key reused", str(exc)) from None
    response.status_code = outcome.status
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        background.add_task(nudge.nudge, settings.redis_url, nudge.SUBMIT_TICK)
    return outcome.body
