"""Alembic migrations. Revisions are named by date and purpose."""
