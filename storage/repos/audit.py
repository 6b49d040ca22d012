"""The audit trail (DESIGN §3.10): who did what to which resource, under which rule, with what result."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import AuditEvent, utcnow
from storage.repos._common import require_aware


class AuditRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        actor: str,
        action: str,
        result: str,
        *,
        target: str | None = None,
        rule: str | None = None,
        operation_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        """Append one event in its own transaction, so it survives the caller's later failure."""
        when = at if at is not None else utcnow()
        require_aware(when, "at")
        event = AuditEvent(
            at=when,
            actor=actor,
            action=action,
            result=result,
            target=target,
            rule=rule,
            operation_id=operation_id,
            detail=dict(detail or {}),
        )
        with session_scope(self._engine, write=True) as session:
            session.add(event)
        return event

    def list(
        self,
        operation_id: str | None = None,
        *,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditEvent]:
        """Newest first."""
        with session_scope(self._engine) as session:
            query = select(AuditEvent)
            if operation_id is not None:
                query = query.where(AuditEvent.operation_id == operation_id)
            if actor is not None:
                query = query.where(AuditEvent.actor == actor)
            if target is not None:
                query = query.where(AuditEvent.target == target)
            if since is not None:
                query = query.where(col(AuditEvent.at) >= since)
            query = query.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)
            return builtins.list(session.exec(query))
