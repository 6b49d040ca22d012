"""Operations: one row per user request, moved between statuses by compare-and-set."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import Operation, utcnow
from storage.repos._common import add_new, as_set, cas_update, checked_fields, require_aware

_RESERVED = frozenset({"id", "status", "version", "created_at", "updated_at"})


class OperationRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, op: Operation) -> Operation:
        """Insert a new operation; raises AlreadyExists when the id is taken (a retried request)."""
        return add_new(self._engine, op, op.id, lambda session: session.get(Operation, op.id) is not None)

    def get(self, operation_id: str) -> Operation | None:
        with session_scope(self._engine) as session:
            return session.get(Operation, operation_id)

    def transition(
        self,
        operation_id: str,
        expected_status: str | Iterable[str],
        new_status: str,
        *,
        expected_version: int | None = None,
        at: datetime | None = None,
        **fields: Any,
    ) -> bool:
        """Move to `new_status` and set `fields` only if the status (and version, when given) still match.

        True for exactly one of any number of concurrent callers; False means someone else got there first.
        """
        values = checked_fields(Operation, fields, _RESERVED)
        when = at if at is not None else utcnow()
        require_aware(when, "at")
        with session_scope(self._engine, write=True) as session:
            return cas_update(
                session,
                Operation,
                operation_id,
                status_column="status",
                expected=expected_status,
                values={**values, "status": new_status, "updated_at": when},
                expected_version=expected_version,
            )

    def set_slack_message(self, operation_id: str, channel: str, ts: str) -> bool:
        """Remember the message to update in place. Not a state change, so the version stays."""
        with session_scope(self._engine, write=True) as session:
            statement = (
                update(Operation)
                .where(col(Operation.id) == operation_id)
                .values(slack_channel=channel, slack_ts=ts)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1

    def list_by_status(
        self,
        statuses: str | Iterable[str],
        *,
        kind: str | None = None,
        updated_before: datetime | None = None,
        limit: int | None = None,
    ) -> list[Operation]:
        """Oldest first; `updated_before` finds operations stuck in a status (crash recovery)."""
        with session_scope(self._engine) as session:
            query = select(Operation).where(col(Operation.status).in_(as_set(statuses)))
            if kind is not None:
                query = query.where(Operation.kind == kind)
            if updated_before is not None:
                query = query.where(col(Operation.updated_at) < updated_before)
            query = query.order_by(col(Operation.created_at), col(Operation.id))
            if limit is not None:
                query = query.limit(limit)
            return list(session.exec(query))
