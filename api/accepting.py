"""The common path of `POST /v1/jobs` and `POST /v1/batches`: judge the webhook URLs, then
create in one transaction under the request's `Idempotency-Key`, map refusals to problems, and
nudge the submit pump once the transaction has committed (never inside it: a worker must find
the rows it is told about).

The order matters. Webhook hosts are resolved first, each distinct host once, in threads (DNS
blocks, and these routes are coroutines), through the app's `HostLookups`, which remembers them
for a short while. Only then does the write transaction open, so no lookup ever runs while it
holds locks (on SQLite, the database's one write lock). The transaction itself runs in a thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Iterable
from typing import Any, Final

import anyio
from fastapi import BackgroundTasks, Request, Response
from sqlalchemy.orm import Session

from api.errors import ProblemError
from core import nudge
from core.db import Database
from core.idempotency import IdempotencyConflict, fingerprint, run_idempotent
from core.settings import Settings
from core.submission import SubmissionRefused, WebhookVerdicts, judge_webhook_urls
from core.tables import ApiKey
from core.webhooks.ssrf import DestinationRefused, HostLookups, destination_host

REPLAYED_HEADER = "Idempotent-Replayed"
# seconds a submit-time DNS answer is reused, by this API process, for later requests
WEBHOOK_DNS_CACHE_SECONDS: Final = 30.0
# distinct webhook hosts of one request looked up at the same time
PARALLEL_LOOKUPS: Final = 8


def refusal_problem(exc: SubmissionRefused) -> ProblemError:
    return ProblemError(exc.status, exc.title, exc.detail, errors=exc.errors)


def new_host_lookups() -> HostLookups:
    """The cache of webhook host lookups an app keeps (`app.state.webhook_host_lookups`)."""
    return HostLookups(WEBHOOK_DNS_CACHE_SECONDS)


def host_lookups(request: Request) -> HostLookups:
    lookups: HostLookups = request.app.state.webhook_host_lookups
    return lookups


async def judge_webhooks(
    urls: Iterable[str], *, settings: Settings, lookups: HostLookups
) -> WebhookVerdicts:
    """Every URL's verdict (None: accepted), with each distinct host looked up once, several
    hosts at a time, and never on the event loop."""
    wanted = set(urls)
    if not wanted:
        return {}
    if not settings.webhook_allow_private:
        hosts = {found for url in wanted if (found := destination_host(url)) is not None}
        limiter = anyio.CapacityLimiter(PARALLEL_LOOKUPS)

        async def look_up(host: str, port: int) -> None:
            # a refusal is remembered by `lookups`; the verdict below reports it
            with contextlib.suppress(DestinationRefused):
                await anyio.to_thread.run_sync(lookups.addresses, host, port, limiter=limiter)

        async with anyio.create_task_group() as group:
            for host, port in hosts:
                group.start_soon(look_up, host, port)
    judge = functools.partial(
        judge_webhook_urls,
        wanted,
        allow_private=settings.webhook_allow_private,
        lookup=lookups.addresses,
    )
    return await anyio.to_thread.run_sync(judge)


def _accept_now(
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
        background.add_task(nudge.nudge, settings.broker_url, nudge.SUBMIT_TICK)
    return outcome.body


async def accept(
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
    is a key (dumping ten thousand specs is not free). `create` runs in a thread, inside the
    write transaction; it must not look anything up on the network (judge webhook URLs first,
    with `judge_webhooks`)."""
    accept_now = functools.partial(
        _accept_now,
        db=db,
        settings=settings,
        key=key,
        idempotency_key=idempotency_key,
        method_path=method_path,
        body=body,
        create=create,
        response=response,
        background=background,
    )
    return await anyio.to_thread.run_sync(accept_now)
