"""Routes: the webhook delivery log and redelivery.

`GET /v1/webhooks/deliveries` lists this key's deliveries (an admin key sees every key's), newest
first, each with its attempt log. `POST /v1/webhooks/deliveries/{id}/redeliver` queues one again
under the same id (so the same `webhook-id` at the receiver), due now, with a fresh retry schedule.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.deps import CurrentKey, DbDep, SettingsDep, reject_unknown_query
from api.errors import ProblemError
from api.listing import is_plausible_id
from core.nudge import DELIVER_TICK, nudge
from core.tables import DELIVERY_STATES, utcnow
from core.webhooks.deliveries import (
    DeliveryFilter,
    attempts_of,
    list_deliveries,
    redeliver,
)
from core.webhooks.views import delivery_view

router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(reject_unknown_query)]
)

_CURSOR_PREFIX = "d:"


def encode_cursor(delivery_id: str) -> str:
    raw = (_CURSOR_PREFIX + delivery_id).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith(_CURSOR_PREFIX) or not is_plausible_id(raw[len(_CURSOR_PREFIX) :]):
        raise ProblemError(
            422,
            "Invalid request",
            "the cursor is not one this API gave out",
            errors=[(("query", "cursor"), "invalid cursor")],
        )
    return raw[len(_CURSOR_PREFIX) :]


@router.get("/deliveries")
def get_deliveries(
    key: CurrentKey,
    db: DbDep,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(description="pending, succeeded or dead")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The delivery log: `{data: [delivery…], next_cursor}`."""
    if state is not None and state not in DELIVERY_STATES:
        raise ProblemError(
            422,
            "Invalid request",
            "unknown delivery state",
            errors=[(("query", "state"), f"must be one of {', '.join(DELIVERY_STATES)}")],
        )
    where = DeliveryFilter(
        api_key_id=None if key.is_admin else key.id, job_id=job_id, batch_id=batch_id, state=state
    )
    before = decode_cursor(cursor) if cursor else None
    with db.read_session() as session:
        rows, last_id = list_deliveries(session, where, limit=limit, before_id=before)
        log = attempts_of(session, [row.id for row in rows])
    return {
        "data": [delivery_view(row, log[row.id]) for row in rows],
        "next_cursor": encode_cursor(last_id) if last_id else None,
    }


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202)
def post_redeliver(
    delivery_id: str, key: CurrentKey, db: DbDep, settings: SettingsDep
) -> JSONResponse:
    """Queue a delivery again (same id, due now); another key's delivery answers 404."""
    with db.session() as session:
        row = (
            redeliver(session, delivery_id, api_key=key, now=utcnow())
            if is_plausible_id(delivery_id)
            else None
        )
        if row is None:
            raise ProblemError(404, "Not Found", f"no webhook delivery {delivery_id}")
        body = delivery_view(row, attempts_of(session, [row.id])[row.id])
    nudge(settings.broker_url, DELIVER_TICK)
    return JSONResponse(body, status_code=202)
