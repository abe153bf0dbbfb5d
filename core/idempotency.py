"""`Idempotency-Key`: the same key with the same body answers the first response again.

The key row is inserted *first*, inside the transaction that creates the jobs, and filled with
the response at the end. Two identical requests racing on PostgreSQL therefore meet at the
unique index on ``(api_key_id, key)``: the second insert waits for the first transaction, then
fails with an IntegrityError once it commits; the loser rolls back everything it did and replays
the stored response. On SQLite, `BEGIN IMMEDIATE` serialises the writers, so the second request
simply finds the committed row. A refused request (4xx) rolls the key row back with everything
else, so the key can be used again with a corrected body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database
from core.tables import IdempotencyKey, utcnow

MAX_KEY_CHARS: Final = 255


@dataclass(frozen=True)
class StoredResponse:
    """A response to give: freshly made, or the stored one replayed (`replayed=True`)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


class IdempotencyConflict(Exception):
    """The key was already used with a different request (body, method or path)."""


def fingerprint(method_path: str, body: Any) -> str:
    """A stable hash of a request: its method and path and its JSON body, keys sorted."""
    canonical = json.dumps(
        [method_path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored(
    session: Session, api_key_id: str, key: str, *, not_before: dt.datetime
) -> IdempotencyKey | None:
    row = session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key
        )
    ).first()
    if row is None or row.created_at < not_before:
        return None
    return row


def _replay(row: IdempotencyKey, method_path: str, request_hash: str) -> StoredResponse:
    if row.method_path != method_path or row.request_hash != request_hash:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return StoredResponse(row.response_status, dict(row.response_body), replayed=True)


def run_idempotent(
    db: Database,
    create: Callable[[Session], tuple[int, dict[str, Any]]],
    *,
    api_key_id: str,
    key: str | None,
    method_path: str,
    request_hash: str,
    ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> StoredResponse:
    """Run `create(session)` in one write transaction, at most once per (API key, key).

    `create` returns the response (status, JSON body) to store. Raises `IdempotencyConflict`
    when the key was used with another request within `ttl`; whatever `create` raises
    propagates and leaves nothing behind.
    """
    if key is None:
        with db.session() as session:
            status, body = create(session)
        return StoredResponse(status, body)
    now = now or utcnow()
    not_before = now - ttl
    try:
        with db.session() as session:
            existing = _stored(session, api_key_id, key, not_before=not_before)
            if existing is not None:
                return _replay(existing, method_path, request_hash)
            # an expired row of the same key gives way to the new request
            session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key
                )
            )
            session.execute(
                insert(IdempotencyKey).values(
                    api_key_id=api_key_id,
                    key=key,
                    method_path=method_path,
                    request_hash=request_hash,
                    response_status=0,
                    response_body={},
                    created_at=now,
                )
            )
            status, body = create(session)
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
                .values(response_status=status, response_body=body)
            )
        return StoredResponse(status, body)
    except IntegrityError:
        # Lost the race: the winner's row is committed now. Anything else is a real error.
        with db.read_session() as session:
            winner = _stored(session, api_key_id, key, not_before=not_before)
            if winner is None or winner.response_status == 0:
                raise
            return _replay(winner, method_path, request_hash)
