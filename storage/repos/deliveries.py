"""Slack delivery dedup: Slack retries an event it thinks we missed, possibly to another process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete
from sqlmodel import col

from storage.engine import session_scope
from storage.models import SlackDelivery
from storage.repos._common import require_aware, table_of, upsert_insert


class DeliveryRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, key: str, at: datetime) -> bool:
        """True only for the first caller with this key, across threads and processes."""
        require_aware(at, "at")
        statement = (
            upsert_insert(self._engine, table_of(SlackDelivery))
            .values(key=key, first_seen=at)
            .on_conflict_do_nothing(index_elements=["key"])
            # SQLAlchemy reports INSERT rowcounts only when asked; 0 here means the key was already there.
            .execution_options(preserve_rowcount=True)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount == 1

    def purge_before(self, at: datetime) -> int:
        """Forget keys first seen before `at` (Slack stops retrying after minutes); returns how many."""
        require_aware(at, "at")
        statement = (
            delete(SlackDelivery)
            .where(col(SlackDelivery.first_seen) < at)
            .execution_options(synchronize_session=False)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount
