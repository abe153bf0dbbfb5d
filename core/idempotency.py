"""`Idempotency-Key`: the same key with the same body answers the first response again.

Exactly one request may act under a key, whatever the timing, and the unique index on
``(api_key_id, key)`` is what decides which. Inside the transaction that creates the jobs, the
request first *inserts* the key row with ``ON CONFLICT DO NOTHING``:

- The insert took: the key is this request's. It creates, fills the row with its response and
  commits; a refused request (4xx) rolls the row back with everything else, so the key can be
  used again with a corrected body.
- The insert found a row. On PostgreSQL a row still being written by another transaction makes
  the insert wait for that transaction to end, so the row read next is a committed one (on
  SQLite, `BEGIN IMMEDIATE` serialises writers, so it is committed already). A live row is
  replayed. An expired row (older than the TTL) is taken over only by a compare-and-set on its
  age: of several requests taking over one expired row, the first one's update makes the row
  young again, so every later update matches nothing and those requests replay the first.

A live key row is never deleted or overwritten, so no request can take a key over from one that
is still running.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db import Database
from core.tables import IdempotencyKey, utcnow

MAX_KEY_CHARS: Final = 255
# A key row can vanish between our insert and our read only if it expired and was pruned right
# then; trying again is safe and this bounds it.
MAX_CLAIM_ROUNDS: Final = 3


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


def _replay(row: IdempotencyKey, method_path: str, request_hash: str) -> StoredResponse:
    if row.method_path != method_path or row.request_hash != request_hash:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return StoredResponse(row.response_status, dict(row.response_body), replayed=True)


@dataclass(frozen=True)
class _Claim:
    api_key_id: str
    key: str
    method_path: str
    request_hash: str
    now: dt.datetime
    not_before: dt.datetime

    def row_values(self) -> dict[str, Any]:
        return {
            "method_path": self.method_path,
            "request_hash": self.request_hash,
            "response_status": 0,
            "response_body": {},
            "created_at": self.now,
        }


def _insert_if_absent(session: Session, claim: _Claim) -> bool:
    """Insert the key row unless one exists (waiting for one being written); True if inserted."""
    dialect = session.get_bind().dialect.name
    values = {"api_key_id": claim.api_key_id, "key": claim.key, **claim.row_values()}
    conflict = ["api_key_id", "key"]
    if dialect == "postgresql":
        statement: Any = (
            postgresql.insert(IdempotencyKey)
            .values(values)
            .on_conflict_do_nothing(index_elements=conflict)
        )
    elif dialect == "sqlite":
        statement = (
            sqlite.insert(IdempotencyKey)
            .values(values)
            .on_conflict_do_nothing(index_elements=conflict)
        )
    else:  # pragma: no cover - the service runs on PostgreSQL and SQLite only
        raise NotImplementedError(dialect)
    return session.execute(statement.returning(IdempotencyKey.id)).first() is not None


def _changed(result: Result[Any]) -> bool:
    return bool(cast(CursorResult[Any], result).rowcount)


def _row(session: Session, claim: _Claim) -> IdempotencyKey | None:
    return session.scalars(
        select(IdempotencyKey)
        .where(IdempotencyKey.api_key_id == claim.api_key_id, IdempotencyKey.key == claim.key)
        .execution_options(populate_existing=True)
    ).first()


def _take_over_expired(session: Session, claim: _Claim) -> bool:
    """Make an expired key row ours (compare-and-set on its age); False if it is not expired
    any more, because another request took it over first."""
    taken = session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.api_key_id == claim.api_key_id,
            IdempotencyKey.key == claim.key,
            IdempotencyKey.created_at < claim.not_before,
        )
        .values(**claim.row_values())
        .execution_options(synchronize_session=False)
    )
    return _changed(taken)


def _claim_key(session: Session, claim: _Claim) -> IdempotencyKey | bool:
    """True: the key is ours to act under. A row: the live response to replay. False: the row
    vanished while we looked (expired and pruned); try again."""
    if _insert_if_absent(session, claim):
        return True
    row = _row(session, claim)
    if row is None:
        return False
    if row.created_at >= claim.not_before:
        return row
    if _take_over_expired(session, claim):
        return True
    row = _row(session, claim)
    return row if row is not None else False


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
    claim = _Claim(api_key_id, key, method_path, request_hash, now, now - ttl)
    for _round in range(MAX_CLAIM_ROUNDS):
        with db.session() as session:
            claimed = _claim_key(session, claim)
            if isinstance(claimed, IdempotencyKey):
                return _replay(claimed, method_path, request_hash)
            if not claimed:
                continue
            status, body = create(session)
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
                .values(response_status=status, response_body=body)
                .execution_options(synchronize_session=False)
            )
        return StoredResponse(status, body)
    raise RuntimeError("the Idempotency-Key row kept vanishing")  # pragma: no cover
