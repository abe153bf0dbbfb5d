"""SQLite shared by several processes: WAL and BEGIN IMMEDIATE keep writers from failing."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import func, select, text, update

from core.db import Database
from core.tables import Job
from tests.support.core_rows import make_job, make_key


def _increment_attempts(url: str, job_ids: list[str], rounds: int) -> None:
    database = Database(url)
    for _ in range(rounds):
        for job_id in job_ids:
            # read-then-write: the pattern that fails with SQLITE_BUSY under deferred BEGIN
            with database.session() as session:
                current = session.scalar(select(Job.attempts).where(Job.id == job_id))
                session.execute(
                    update(Job).where(Job.id == job_id).values(attempts=(current or 0) + 1)
                )
    database.dispose()


def test_sqlite_uses_wal(sqlite_db_url: str) -> None:
    database = Database(sqlite_db_url)
    with database.read_session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    database.dispose()


def test_concurrent_read_modify_write_from_processes_loses_no_update(sqlite_db_url: str) -> None:
    database = Database(sqlite_db_url)
    key = make_key(database)
    job_ids = [make_job(database, key.id) for _ in range(3)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_increment_attempts, args=(sqlite_db_url, job_ids, 40))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with database.read_session() as session:
        assert session.scalar(select(func.sum(Job.attempts))) == 3 * 3 * 40
    database.dispose()
