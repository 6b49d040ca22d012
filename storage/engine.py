"""Engines and sessions for SQLite (default) and PostgreSQL (by URL).

SQLite recipe (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL"): the sqlite3
driver is told never to BEGIN on its own (`isolation_level = None`) and we emit BEGIN ourselves on the
engine's `begin` event. That makes every transaction real (reads included) and lets a writer start with
`BEGIN IMMEDIATE`, which takes the write lock up front: a second writer then waits on `busy_timeout`
instead of failing on a lock upgrade.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
BUSY_TIMEOUT_MS = 5000

# Execution option read by the `begin` listener: how a SQLite transaction starts.
_SQLITE_BEGIN = "runctl_sqlite_begin"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`. Nothing connects until first use. Raises ValueError for other databases."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, echo=echo)

    if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed.query):
        # Each connection would get its own empty database, which no migration could reach.
        raise ValueError("in-memory SQLite is not supported: use a file, e.g. sqlite:///./runctl.db")
    engine = create_engine(parsed, connect_args={"check_same_thread": False}, echo=echo)
    _install_sqlite_listeners(engine)
    return engine


def _install_sqlite_listeners(engine: Engine) -> None:
    wal_pending = [True]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN implicitly
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if wal_pending[0]:
                _ensure_wal(cursor)
                wal_pending[0] = False
            # Outside any transaction, as these pragmas are ignored inside one.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _ensure_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (persistent, so once per engine is plenty).

    The switch needs an exclusive lock and SQLite does not run the busy handler for it, so two processes
    opening a new file at once would see "database is locked": retry until busy_timeout, and stop as soon as
    the other one has done it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def write_bind(engine: Engine) -> Engine:
    """The engine to use for a read-then-write transaction: on SQLite it starts with BEGIN IMMEDIATE."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
    return engine


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, rollback on any error.

    Pass write=True whenever the transaction may write, so SQLite serialises writers at BEGIN.
    """
    bind = write_bind(engine) if write else engine
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
