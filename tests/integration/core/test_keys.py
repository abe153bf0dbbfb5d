from __future__ import annotations

from sqlalchemy import select

from core.db import Database
from core.keys import find_api_key
from core.tables import ApiKey
from tests.support.core_rows import make_key


def test_api_keys_are_stored_only_as_a_hash(db: Database) -> None:
    created = make_key(db, admin=True)
    with db.read_session() as session:
        row = session.scalars(select(ApiKey)).one()
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
        assert created.api_key not in stored
        assert find_api_key(session, created.api_key) is not None
        assert find_api_key(session, created.api_key + "x") is None
        assert row.is_admin
    assert created.webhook_secret.startswith("whsec_")
