"""Engine and session behaviour: SQLite pragmas and locking, transactions, UTC round-trips."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, event, func
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import select

from providers.base import Instance
from storage.engine import make_engine, session_scope
from storage.models import AuditEvent, Resource
from storage.repositories import Repositories


def _audit(action: str, at: datetime) -> AuditEvent:
    return AuditEvent(at=at, actor="U1", action=action, result="ok")


def _count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def test_sqlite_connections_get_wal_busy_timeout_foreign_keys_and_normal_sync(
    sqlite_database_url: str,
) -> None:
    engine = make_engine(sqlite_database_url)
    try:
        # Two connections at once: the pragmas are per connection, so the second must have them too.
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                pragma = connection.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA busy_timeout").scalar() == 5000
                assert pragma("PRAGMA foreign_keys").scalar() == 1
                assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_postgres_engine_pings_pooled_connections() -> None:
    engine = make_engine("postgresql+psycopg://user@127.0.0.1:1/none")
    assert engine.pool._pre_ping is True
    engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["mysql+pymysql://u@127.0.0.1/db", "sqlite://", "sqlite:///:memory:"],
)
def test_make_engine_refuses_what_it_cannot_serve(url: str) -> None:
    with pytest.raises(ValueError):
        make_engine(url)


def test_second_writer_waits_on_busy_timeout_instead_of_failing(sqlite_database_url: str) -> None:
    """BEGIN IMMEDIATE + busy_timeout: the second read-then-write transaction queues behind the first."""
    engine = make_engine(sqlite_database_url)
    second_is_waiting = threading.Event()
    first_holds_lock = threading.Event()
    seen_by_second: list[int] = []
    errors: list[BaseException] = []

    def trace(statement: str) -> None:
        # Fires as the statement starts executing, i.e. before it blocks on the lock.
        if statement == "BEGIN IMMEDIATE" and threading.current_thread().name == "second-writer":
            second_is_waiting.set()

    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.set_trace_callback(trace)

    event.listen(engine, "connect", on_connect)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def first() -> None:
        try:
            with session_scope(engine, write=True) as session:
                session.add(_audit("first", t0))
                session.flush()
                first_holds_lock.set()
                assert second_is_waiting.wait(10), "the second writer never reached BEGIN IMMEDIATE"
                session.add(_audit("first-again", t0))
        except BaseException as exc:
            errors.append(exc)
            first_holds_lock.set()

    def second() -> None:
        try:
            assert first_holds_lock.wait(10)
            with session_scope(engine, write=True) as session:
                seen = session.exec(select(func.count()).select_from(AuditEvent)).one()
                seen_by_second.append(seen)
                session.add(_audit(f"second saw {seen}", t0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second, name="second-writer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert seen_by_second == [2]  # it ran only after both of the first writer's rows were committed
        assert _count(engine) == 3
    finally:
        engine.dispose()


def test_deferred_read_then_write_is_refused_after_a_concurrent_commit(sqlite_database_url: str) -> None:
    """Why writers use write=True: our own BEGIN makes the first SELECT take a snapshot, and a write on a
    stale snapshot fails at once ("database is locked"), busy_timeout or not."""
    engine = make_engine(sqlite_database_url)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        with pytest.raises(OperationalError, match="database is locked"), session_scope(engine) as reader:
            assert reader.exec(select(func.count()).select_from(AuditEvent)).one() == 0
            with session_scope(engine, write=True) as writer:
                writer.add(_audit("meanwhile", t0))
            reader.add(_audit("stale", t0))
            reader.flush()
        assert _count(engine) == 1
    finally:
        engine.dispose()


def test_session_scope_commits_on_success_and_rolls_back_on_error(db_engine: Engine) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with session_scope(db_engine, write=True) as session:
        session.add(_audit("kept", t0))
    with pytest.raises(RuntimeError), session_scope(db_engine, write=True) as session:
        session.add(_audit("dropped", t0))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(db_engine) as session:
        assert [row.action for row in session.exec(select(AuditEvent))] == ["kept"]


def test_objects_stay_readable_after_the_session_closes(db_engine: Engine) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with session_scope(db_engine, write=True) as session:
        row = _audit("detached", t0)
        session.add(row)
    assert row.id is not None
    assert row.action == "detached"


def test_datetimes_come_back_aware_utc_whatever_offset_went_in(
    repos: Repositories, make_instance: Callable[..., Instance]
) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=india)
    event_row = repos.audit.record("U1", "probe", "ok", at=local)
    (stored,) = repos.audit.list()
    assert stored.id == event_row.id
    assert stored.at == local
    assert stored.at.tzinfo is UTC
    assert stored.at.hour == 9 and stored.at.minute == 0 and stored.at.microsecond == 123456

    repos.resources.upsert_from_cloud(
        [make_instance("i-0123456789abcdef0", launch_time=local)], seen_at=local
    )
    resource = repos.resources.get("i-0123456789abcdef0")
    assert resource is not None
    for value in (resource.launch_time, resource.first_seen, resource.last_seen):
        assert value == local and value.tzinfo is UTC


def test_times_compare_by_instant_across_offsets(repos: Repositories) -> None:
    """SQLite stores text: filters must still compare instants, so every value is normalised to UTC."""
    plus_two = timezone(timedelta(hours=2))
    repos.audit.record("U1", "early", "ok", at=datetime(2025, 1, 1, 11, 0, tzinfo=plus_two))  # 09:00 UTC
    repos.audit.record("U1", "late", "ok", at=datetime(2025, 1, 1, 10, 0, tzinfo=UTC))
    since = datetime(2025, 1, 1, 9, 30, tzinfo=UTC)
    assert [row.action for row in repos.audit.list(since=since)] == ["late"]


def test_naive_datetimes_are_refused(db_engine: Engine, repos: Repositories) -> None:
    naive = datetime(2025, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        repos.audit.record("U1", "naive", "ok", at=naive)
    with (
        pytest.raises(StatementError, match="naive datetime"),
        session_scope(db_engine, write=True) as session,
    ):
        session.add(_audit("naive", naive))
    with session_scope(db_engine) as session:
        assert session.exec(select(Resource)).all() == []
        assert session.exec(select(AuditEvent)).all() == []
