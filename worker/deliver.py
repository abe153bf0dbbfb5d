"""The deliver pump: claim due webhook deliveries, POST them concurrently, record every attempt.

Called once per beat tick (or nudge) by the Celery task, on the worker process's own event loop,
with a per-process context. Each tick: one write transaction leases up to
`deliver_batch_size` due rows; the attempts run concurrently on the loop with the process's
`WebhookSender`; one more transaction logs the attempts and moves each row to `succeeded`, `dead`
or its next due time. A process killed mid-tick loses nothing: its leases run out and another
tick sends those rows again, under the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Protocol

from core.db import Database
from core.settings import Settings
from core.tables import DELIVERY_DEAD, utcnow
from core.webhooks.attempts import AttemptKind, AttemptOutcome, AttemptResult, plan_next
from core.webhooks.deliveries import ClaimedDelivery, claim_due_deliveries, record_outcomes
from core.webhooks.schedule import RetrySchedule
from core.webhooks.sender import OutgoingWebhook, WebhookSender

log = logging.getLogger(__name__)

# Concurrent attempts per tick: enough to hide slow receivers, few enough to stay polite.
MAX_CONCURRENT_ATTEMPTS = 50


class DeliverContext(Protocol):
    """What the worker process hands every pump tick."""

    @property
    def db(self) -> Database: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def owner(self) -> str: ...
    @property
    def webhook_sender(self) -> WebhookSender: ...


def make_sender(settings: Settings) -> WebhookSender:
    """The process's webhook sender (create once per worker process, close at shutdown)."""
    return WebhookSender(
        timeout=settings.webhook_timeout_seconds, allow_private=settings.webhook_allow_private
    )


def retry_schedule(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        gaps=tuple(settings.webhook_schedule_seconds), time_scale=settings.webhook_time_scale
    )


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds a row: longer than any attempt can take, so a live pump is never
    overtaken (an attempt, name lookup included, ends within the timeout), yet short enough that
    a dead one's rows come back soon."""
    return max(settings.lease_seconds, 2.0 * settings.webhook_timeout_seconds)


def archive_wait(settings: Settings) -> dt.timedelta | None:
    """How long a succeeded job's webhook waits for its outputs to be copied (None: not at all)."""
    if not settings.archive_enabled or settings.archive_webhook_wait_seconds <= 0:
        return None
    return dt.timedelta(seconds=settings.archive_webhook_wait_seconds)


def rotation_overlap(settings: Settings) -> dt.timedelta:
    return dt.timedelta(hours=settings.webhook_secret_overlap_hours)


async def run_deliver_pump(ctx: DeliverContext) -> int:
    """One tick: returns how many attempts were made."""
    settings = ctx.settings

    def claim() -> list[ClaimedDelivery]:
        with ctx.db.session() as session:
            return claim_due_deliveries(
                session,
                owner=ctx.owner,
                now=utcnow(),
                lease_seconds=lease_seconds(settings),
                limit=settings.deliver_batch_size,
                rotation_overlap=rotation_overlap(settings),
                archive_wait=archive_wait(settings),
            )

    def record() -> None:
        with ctx.db.session() as session:
            record_outcomes(session, outcomes, owner=ctx.owner, now=utcnow())

    # the database calls run off the loop (sync drivers; see worker.offload)
    claimed = await asyncio.to_thread(claim)
    if not claimed:
        return 0
    results = await send_all(ctx.webhook_sender, claimed)
    schedule = retry_schedule(settings)
    outcomes = [
        plan_next(delivery.id, result, attempts_made=delivery.attempts + 1, schedule=schedule)
        for delivery, result in zip(claimed, results, strict=True)
    ]
    await asyncio.to_thread(record)
    for outcome in outcomes:
        _log_outcome(outcome)
    return len(outcomes)


async def send_all(sender: WebhookSender, claimed: list[ClaimedDelivery]) -> list[AttemptResult]:
    """Attempt every claimed delivery concurrently; a bug in one attempt fails only that one."""
    gate = asyncio.Semaphore(MAX_CONCURRENT_ATTEMPTS)

    async def attempt(delivery: ClaimedDelivery) -> AttemptResult:
        webhook = OutgoingWebhook(delivery.id, delivery.url, delivery.payload, delivery.secrets)
        async with gate:
            try:
                return await sender.send(webhook)
            except Exception as exc:
                log.exception("webhook %s: unexpected error while sending", delivery.id)
                return AttemptResult(
                    AttemptKind.FAILED, utcnow(), error=f"internal error: {type(exc).__name__}"
                )

    return list(await asyncio.gather(*(attempt(delivery) for delivery in claimed)))


def _log_outcome(outcome: AttemptOutcome) -> None:
    result = outcome.result
    if outcome.succeeded:
        log.info(
            "webhook %s delivered (%s, %.0f ms)",
            outcome.delivery_id,
            result.status_code,
            result.latency_ms or 0.0,
        )
    elif outcome.state == DELIVERY_DEAD:
        log.warning("webhook %s dead: %s", outcome.delivery_id, result.error)
    else:
        log.info(
            "webhook %s attempt failed (%s); next at %s",
            outcome.delivery_id,
            result.error,
            outcome.due_at.isoformat() if outcome.due_at else "-",
        )
