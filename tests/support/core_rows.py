"""Rows for core tests, inserted directly."""

from __future__ import annotations

from typing import Any

from core import ids
from core.db import Database
from core.keys import CreatedKey, create_api_key
from core.tables import Job, utcnow


def make_key(db: Database, name: str = "tenant-a", *, admin: bool = False) -> CreatedKey:
    with db.session() as session:
        return create_api_key(session, name=name, admin=admin)


def make_job(db: Database, api_key_id: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "id": ids.new_id(ids.JOB),
        "api_key_id": api_key_id,
        "provider": "flux",
        "model": "flux-2-pro",
        "action": "generate",
        "prompt": "a ceramic mug",
        "due_at": utcnow(),
    }
    values.update(fields)
    with db.session() as session:
        session.add(Job(**values))
    return str(values["id"])
