"""Training jobs: status changes by compare-and-set so a poller and a cancel cannot both win."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import ACTIVE_JOB_STATUSES, TrainingJob
from storage.repos._common import add_new, as_set, cas_update, checked_fields

_RESERVED = frozenset({"id", "status", "version"})


class JobRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, job: TrainingJob) -> TrainingJob:
        """Insert; raises AlreadyExists when the id is taken."""
        return add_new(
            self._engine, job, job.id, lambda session: session.get(TrainingJob, job.id) is not None
        )

    def get(self, job_id: str) -> TrainingJob | None:
        with session_scope(self._engine) as session:
            return session.get(TrainingJob, job_id)

    def transition(
        self,
        job_id: str,
        expected_status: str | Iterable[str],
        new_status: str,
        *,
        expected_version: int | None = None,
        **fields: Any,
    ) -> bool:
        """E.g. running -> succeeded with exit_code and finished_at. True only for the one caller that won."""
        values = checked_fields(TrainingJob, fields, _RESERVED)
        with session_scope(self._engine, write=True) as session:
            return cas_update(
                session,
                TrainingJob,
                job_id,
                status_column="status",
                expected=expected_status,
                values={**values, "status": new_status},
                expected_version=expected_version,
            )

    def set_slack_message(self, job_id: str, channel: str, ts: str) -> bool:
        with session_scope(self._engine, write=True) as session:
            statement = (
                update(TrainingJob)
                .where(col(TrainingJob.id) == job_id)
                .values(slack_channel=channel, slack_ts=ts)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1

    def list_active(self, instance_ids: Iterable[str] | None = None) -> list[TrainingJob]:
        """Starting or running jobs: what the poller follows and what makes a machine not idle."""
        return self.list_by_status(ACTIVE_JOB_STATUSES, instance_ids=instance_ids)

    def list_by_status(
        self, statuses: str | Iterable[str], *, instance_ids: Iterable[str] | None = None
    ) -> list[TrainingJob]:
        with session_scope(self._engine) as session:
            query = select(TrainingJob).where(col(TrainingJob.status).in_(as_set(statuses)))
            if instance_ids is not None:
                query = query.where(col(TrainingJob.instance_id).in_(list(instance_ids)))
            return list(session.exec(query.order_by(col(TrainingJob.started_at), col(TrainingJob.id))))

    def list_for_owner(self, owner: str, *, limit: int = 20) -> list[TrainingJob]:
        """Newest first."""
        with session_scope(self._engine) as session:
            query = (
                select(TrainingJob)
                .where(TrainingJob.owner == owner)
                .order_by(col(TrainingJob.started_at).desc(), col(TrainingJob.id).desc())
                .limit(limit)
            )
            return list(session.exec(query))
