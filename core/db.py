"""Engines and sessions for PostgreSQL and SQLite.

SQLite is the embedded default and is set up the way it must be for several processes sharing
one file: WAL (readers never block the writer), a busy timeout, and write transactions that
start with `BEGIN IMMEDIATE` (a deferred transaction that reads and then writes can fail with
SQLITE_BUSY however long the timeout is). Read-only work uses a second engine whose transactions
stay deferred, so API reads never queue behind the pumps' write lock.

Pooled connections must not cross `fork()`: every engine made here is disposed in a forked
child (Celery's prefork pool) before the child can touch it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from core.settings import Settings

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_fork_hook_lock = threading.Lock()
_fork_hook_installed = False


def _dispose_engines_after_fork() -> None:
    for engine in list(_engines):
        # close=False: the parent still owns those sockets; just forget them here.
        engine.dispose(close=False)


def _install_fork_hook() -> None:
    global _fork_hook_installed
    with _fork_hook_lock:
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_dispose_engines_after_fork)
            _fork_hook_installed = True


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = 30_000,
    pool_size: int = 5,
    begin: str = "IMMEDIATE",
    prepared_statements: bool = True,
) -> Engine:
    """Create an engine; for SQLite, `begin` is the BEGIN mode of every transaction.

    `prepared_statements=False` stops psycopg from preparing statements on the server: a
    transaction-pooling PgBouncer (before 1.21) hands the next transaction another server
    connection, where a statement prepared on the first does not exist.
    """
    _install_fork_hook()
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        )
        _configure_sqlite(engine, busy_timeout_ms=busy_timeout_ms, begin=begin)
    else:
        connect_args: dict[str, Any] = {} if prepared_statements else {"prepare_threshold": None}
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            pool_pre_ping=True,
            connect_args=connect_args,
        )
    _engines.add(engine)
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int, begin: str) -> None:
    # SQLAlchemy's documented recipe: take BEGIN away from pysqlite, then emit our own.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(f"BEGIN {begin}")


class Database:
    """The service's handle on its database: a write engine and a read engine.

    `session()` is for work that writes (on SQLite it holds the write lock from its first
    statement); `read_session()` is for pure reads. On PostgreSQL both use one engine.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 30_000,
        pool_size: int = 5,
        prepared_statements: bool = True,
    ) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = make_engine(
            url,
            busy_timeout_ms=busy_timeout_ms,
            pool_size=pool_size,
            prepared_statements=prepared_statements,
        )
        self.read_engine = (
            make_engine(url, busy_timeout_ms=busy_timeout_ms, begin="DEFERRED")
            if self.sqlite
            else self.engine
        )
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @classmethod
    def for_settings(cls, settings: Settings) -> Database:
        """The database `settings` describe, with their pool size and driver options."""
        return cls(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.db_pool_size,
            prepared_statements=settings.db_prepared_statements,
        )

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


_database: Database | None = None
_database_lock = threading.Lock()


def get_database() -> Database:
    """The process-wide database for the configured `DATABASE_URL`."""
    global _database
    from core.settings import get_settings

    with _database_lock:
        if _database is None:
            _database = Database.for_settings(get_settings())
        return _database
