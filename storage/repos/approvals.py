"""Approvals: a click is applied once, by compare-and-set on the approval row."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from storage.engine import session_scope
from storage.models import Approval, ApprovalStatus
from storage.repos._common import add_new, as_set, cas_update, checked_fields, require_aware

_RESERVED = frozenset({"id", "operation_id", "status", "version", "created_at"})


class ApprovalRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, approval: Approval) -> Approval:
        """Insert; raises AlreadyExists when the id or the operation already has an approval."""

        def exists(session: Session) -> bool:
            if session.get(Approval, approval.id) is not None:
                return True
            query = select(Approval.id).where(Approval.operation_id == approval.operation_id)
            return session.exec(query).first() is not None

        return add_new(self._engine, approval, approval.id, exists)

    def get(self, approval_id: str) -> Approval | None:
        with session_scope(self._engine) as session:
            return session.get(Approval, approval_id)

    def get_by_operation(self, operation_id: str) -> Approval | None:
        with session_scope(self._engine) as session:
            return session.exec(select(Approval).where(Approval.operation_id == operation_id)).first()

    def decide(
        self,
        approval_id: str,
        expected_status: str | Iterable[str],
        new_status: str,
        decided_by: str,
        at: datetime,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """Record a decision (approve, deny, expire, cancel). Exactly one concurrent caller gets True."""
        require_aware(at, "at")
        values: dict[str, Any] = {"status": new_status, "decided_by": decided_by, "decided_at": at}
        if reason is not None:
            values["reason"] = reason
        with session_scope(self._engine, write=True) as session:
            return cas_update(
                session,
                Approval,
                approval_id,
                status_column="status",
                expected=expected_status,
                values=values,
                expected_version=expected_version,
            )

    def transition(
        self,
        approval_id: str,
        expected_status: str | Iterable[str],
        new_status: str,
        *,
        expected_version: int | None = None,
        **fields: Any,
    ) -> bool:
        """A change after the decision (approved -> executing -> succeeded/failed); the decider stays."""
        values = checked_fields(Approval, fields, _RESERVED)
        with session_scope(self._engine, write=True) as session:
            return cas_update(
                session,
                Approval,
                approval_id,
                status_column="status",
                expected=expected_status,
                values={**values, "status": new_status},
                expected_version=expected_version,
            )

    def set_slack_message(self, approval_id: str, channel: str, ts: str) -> bool:
        with session_scope(self._engine, write=True) as session:
            statement = (
                update(Approval)
                .where(col(Approval.id) == approval_id)
                .values(slack_channel=channel, slack_ts=ts)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1

    def list_pending_expired(self, now: datetime) -> list[Approval]:
        """Pending approvals whose time ran out, for the expiry sweep (which then decides them CAS-first)."""
        require_aware(now, "now")
        with session_scope(self._engine) as session:
            query = (
                select(Approval)
                .where(Approval.status == ApprovalStatus.PENDING, col(Approval.expires_at) <= now)
                .order_by(col(Approval.expires_at), col(Approval.id))
            )
            return list(session.exec(query))

    def list_by_status(
        self, statuses: str | Iterable[str], *, requester: str | None = None
    ) -> list[Approval]:
        with session_scope(self._engine) as session:
            query = select(Approval).where(col(Approval.status).in_(as_set(statuses)))
            if requester is not None:
                query = query.where(Approval.requester == requester)
            return list(session.exec(query.order_by(col(Approval.created_at), col(Approval.id))))
