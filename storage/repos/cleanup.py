"""Cleanup marks: mark -> notify -> grace -> re-check -> act, one open mark per (instance, rule)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import OPEN_MARK_STATES, CleanupMark, MarkState, open_mark_key
from storage.repos._common import as_set, cas_update, checked_fields, require_aware, table_of

_RESERVED = frozenset({"id", "instance_id", "rule", "state", "version", "open_key", "marked_at"})


@dataclass(frozen=True)
class MarkResult:
    mark: CleanupMark
    created: bool  # False: an open mark for this instance and rule was already there


class CleanupMarkRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def mark(
        self,
        instance_id: str,
        rule: str,
        *,
        at: datetime,
        owner: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        dry_run: bool = True,
    ) -> MarkResult:
        """Open a mark, or return the one already open (two cycles racing get the same mark)."""
        require_aware(at, "at")
        key = open_mark_key(instance_id, rule)
        existing = self.get_open(instance_id, rule)
        if existing is not None:
            return MarkResult(existing, created=False)
        row = CleanupMark(
            instance_id=instance_id,
            rule=rule,
            owner=owner,
            state=MarkState.MARKED.value,
            marked_at=at,
            evidence=dict(evidence or {}),
            dry_run=dry_run,
            open_key=key,
        )
        try:
            with session_scope(self._engine, write=True) as session:
                session.add(row)
        except IntegrityError:
            raced = self.get_open(instance_id, rule)
            if raced is None:
                raise
            return MarkResult(raced, created=False)
        return MarkResult(row, created=True)

    def get(self, mark_id: int) -> CleanupMark | None:
        with session_scope(self._engine) as session:
            return session.get(CleanupMark, mark_id)

    def get_open(self, instance_id: str, rule: str) -> CleanupMark | None:
        with session_scope(self._engine) as session:
            query = select(CleanupMark).where(CleanupMark.open_key == open_mark_key(instance_id, rule))
            return session.exec(query).first()

    def list_open(
        self, instance_ids: Iterable[str] | None = None, *, rule: str | None = None
    ) -> list[CleanupMark]:
        with session_scope(self._engine) as session:
            query = select(CleanupMark).where(col(CleanupMark.open_key).is_not(None))
            if instance_ids is not None:
                query = query.where(col(CleanupMark.instance_id).in_(list(instance_ids)))
            if rule is not None:
                query = query.where(CleanupMark.rule == rule)
            return list(session.exec(query.order_by(col(CleanupMark.marked_at), col(CleanupMark.id))))

    def list_by_message(self, channel: str, ts: str) -> list[CleanupMark]:
        """Every mark (open or closed) shown in one message, for re-rendering a digest in place."""
        with session_scope(self._engine) as session:
            query = select(CleanupMark).where(
                or_(
                    (col(CleanupMark.dm_channel) == channel) & (col(CleanupMark.dm_ts) == ts),
                    (col(CleanupMark.slack_channel) == channel) & (col(CleanupMark.slack_ts) == ts),
                )
            )
            return list(session.exec(query.order_by(col(CleanupMark.id))))

    def transition(
        self,
        mark_id: int,
        expected_state: str | Iterable[str],
        new_state: str,
        *,
        expected_version: int | None = None,
        **fields: Any,
    ) -> bool:
        """CAS on state (and version); closing states release the (instance, rule) slot.

        Reopening a closed mark while another one is open for the same instance and rule returns False.
        """
        values = checked_fields(CleanupMark, fields, _RESERVED)
        table = table_of(CleanupMark)
        if new_state in OPEN_MARK_STATES:
            values["open_key"] = table.c.instance_id.concat("|").concat(table.c.rule)
        else:
            values["open_key"] = None
        try:
            with session_scope(self._engine, write=True) as session:
                return cas_update(
                    session,
                    CleanupMark,
                    mark_id,
                    status_column="state",
                    expected=expected_state,
                    values={**values, "state": new_state},
                    expected_version=expected_version,
                )
        except IntegrityError:
            if new_state not in OPEN_MARK_STATES:
                raise
            return False

    def keep(
        self,
        mark_id: int,
        until: datetime,
        *,
        expected_state: str | Iterable[str] = OPEN_MARK_STATES,
        expected_version: int | None = None,
    ) -> bool:
        """The owner's Keep button: no reminder before `until`; counts how often a machine was kept."""
        require_aware(until, "until")
        table = table_of(CleanupMark)
        with session_scope(self._engine, write=True) as session:
            return cas_update(
                session,
                CleanupMark,
                mark_id,
                status_column="state",
                expected=as_set(expected_state),
                values={
                    "state": MarkState.KEPT.value,
                    "keep_until": until,
                    "keep_count": table.c.keep_count + 1,
                },
                expected_version=expected_version,
            )

    def set_slack_message(self, mark_id: int, channel: str, ts: str) -> bool:
        """The team-channel thread message; not a state change, so the version stays."""
        return self._set(mark_id, slack_channel=channel, slack_ts=ts)

    def set_dm_message(self, mark_id: int, channel: str, ts: str) -> bool:
        return self._set(mark_id, dm_channel=channel, dm_ts=ts)

    def _set(self, mark_id: int, **values: str) -> bool:
        with session_scope(self._engine, write=True) as session:
            statement = (
                update(CleanupMark)
                .where(col(CleanupMark.id) == mark_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1
