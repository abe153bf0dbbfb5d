"""The public JSON shape of a delivery and its attempt log (`GET /v1/webhooks/deliveries`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.tables import DELIVERY_PENDING, WebhookAttempt, WebhookDelivery
from core.views import rfc3339


def attempt_view(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "at": rfc3339(attempt.at),
        "status_code": attempt.status_code,
        "latency_ms": round(attempt.latency_ms, 1) if attempt.latency_ms is not None else None,
        "succeeded": bool(attempt.succeeded),
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_view(delivery: WebhookDelivery, attempts: Sequence[WebhookAttempt]) -> dict[str, Any]:
    """A delivery as clients see it. `id` is the `webhook-id` the receiver got; `attempts` counts
    the current round (a redelivery starts a new one), `attempt_log` keeps every attempt."""
    return {
        "id": delivery.id,
        "type": delivery.event_type,
        "job_id": delivery.job_id,
        "batch_id": delivery.batch_id,
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts or 0,
        "next_attempt_at": (
            rfc3339(delivery.due_at) if delivery.state == DELIVERY_PENDING else None
        ),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": rfc3339(delivery.created_at),
        "updated_at": rfc3339(delivery.updated_at),
        "delivered_at": rfc3339(delivery.delivered_at),
        "attempt_log": [attempt_view(attempt) for attempt in attempts],
    }
