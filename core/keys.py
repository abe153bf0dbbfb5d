"""API keys: created once, stored as a SHA-256 hash, looked up by hash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ids
from core.tables import ApiKey, utcnow

KEY_PREFIX = "mcj_"
ADMIN_SCOPE = "admin"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks symmetric secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class CreatedKey:
    """What `create_api_key` hands back once; the raw key is never stored."""

    id: str
    name: str
    api_key: str
    webhook_secret: str
    admin: bool


def create_api_key(
    session: Session, *, name: str, tenant: str | None = None, admin: bool = False
) -> CreatedKey:
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    secret = new_webhook_secret()
    row = ApiKey(
        id=ids.new_id(ids.API_KEY),
        name=name,
        tenant=tenant or name,
        key_prefix=raw[:12],
        key_hash=hash_key(raw),
        scopes=[ADMIN_SCOPE] if admin else [],
        webhook_secret=secret,
    )
    session.add(row)
    session.flush()
    return CreatedKey(id=row.id, name=name, api_key=raw, webhook_secret=secret, admin=admin)


def find_api_key(session: Session, raw_key: str) -> ApiKey | None:
    """The live key row for a presented key, or None. Compares hashes in constant time."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    digest = hash_key(raw_key)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, digest) else None


def rotate_webhook_secret(session: Session, key_id: str) -> str | None:
    """Give a key a new webhook secret; the old one stays valid for signing for a while."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    row.webhook_secret_previous = row.webhook_secret
    row.webhook_secret = new_webhook_secret()
    row.webhook_secret_rotated_at = utcnow()
    return row.webhook_secret
