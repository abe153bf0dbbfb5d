"""The schema: migrations build it on empty databases, and agree with the tables."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core.db import Database
from core.migrate import current_revision, head_revision
from core.partitions import include_name
from core.tables import metadata


def test_migrations_reach_head_on_an_empty_database(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert set(metadata.tables) <= tables


def test_tables_and_migrations_do_not_drift(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": include_name}
        )
        diff = compare_metadata(context, metadata)
    assert diff == [], f"tables differ from migrations; write a revision: {diff}"


def test_hot_queries_have_indexes(db: Database) -> None:
    inspector = inspect(db.engine)
    job_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("jobs")}
    assert ("status", "due_at") in job_indexes
    assert ("api_key_id", "created_at") in job_indexes
    assert ("batch_id", "status") in job_indexes
    uniques = {
        tuple(uq["column_names"]) for uq in inspector.get_unique_constraints("idempotency_keys")
    }
    assert ("api_key_id", "key") in uniques
