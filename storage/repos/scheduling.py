"""Coordination between bot processes: one scheduler lease holder, one run per job slot, one notice per event.

All three are single conditional statements, so they are atomic on SQLite (BEGIN IMMEDIATE) and on
PostgreSQL alike; no advisory locks, no clustering.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, or_, update
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import JobRun, SchedulerLease, SentNotice
from storage.repos._common import require_aware, table_of, upsert_insert


class LeaseRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease: True when `holder` holds it until now + ttl.

        It is taken over only once the previous holder let it expire (a dead process stops renewing).
        """
        require_aware(now, "now")
        expires = now + ttl
        with session_scope(self._engine, write=True) as session:
            insert = (
                upsert_insert(self._engine, table_of(SchedulerLease))
                .values(name=name, holder=holder, expires_at=expires, renewed_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
                .execution_options(preserve_rowcount=True)
            )
            if session.exec(insert).rowcount == 1:
                return True
            statement = (
                update(SchedulerLease)
                .where(
                    col(SchedulerLease.name) == name,
                    or_(col(SchedulerLease.holder) == holder, col(SchedulerLease.expires_at) <= now),
                )
                .values(holder=holder, expires_at=expires, renewed_at=now)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1

    def release(self, name: str, holder: str) -> bool:
        with session_scope(self._engine, write=True) as session:
            statement = (
                delete(SchedulerLease)
                .where(col(SchedulerLease.name) == name, col(SchedulerLease.holder) == holder)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1

    def holder(self, name: str, now: datetime) -> str | None:
        with session_scope(self._engine) as session:
            row = session.get(SchedulerLease, name)
            if row is None or row.expires_at <= now:
                return None
            return row.holder


class JobRunRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, job_name: str, slot: str, holder: str, at: datetime) -> bool:
        """True only for the first process to claim this job's slot."""
        require_aware(at, "at")
        statement = (
            upsert_insert(self._engine, table_of(JobRun))
            .values(job_name=job_name, slot=slot, holder=holder, started_at=at)
            .on_conflict_do_nothing(index_elements=["job_name", "slot"])
            .execution_options(preserve_rowcount=True)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount == 1

    def count(self, job_name: str) -> int:
        with session_scope(self._engine) as session:
            return len(list(session.exec(select(JobRun).where(JobRun.job_name == job_name))))

    def purge_before(self, at: datetime) -> int:
        with session_scope(self._engine, write=True) as session:
            statement = (
                delete(JobRun).where(col(JobRun.started_at) < at).execution_options(synchronize_session=False)
            )
            return int(session.exec(statement).rowcount)


class NoticeRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def first_time(self, key: str, at: datetime) -> bool:
        """True the first time `key` is seen: the caller sends the notice, everyone after does not."""
        require_aware(at, "at")
        statement = (
            upsert_insert(self._engine, table_of(SentNotice))
            .values(key=key, sent_at=at)
            .on_conflict_do_nothing(index_elements=["key"])
            .execution_options(preserve_rowcount=True)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount == 1

    def forget(self, key: str) -> None:
        """Allow a notice again (e.g. a send that failed after the claim)."""
        with session_scope(self._engine, write=True) as session:
            statement = delete(SentNotice).where(col(SentNotice.key) == key)
            session.exec(statement.execution_options(synchronize_session=False))
