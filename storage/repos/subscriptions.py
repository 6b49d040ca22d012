"""Channel report subscriptions; each scheduled slot is claimed once so a report goes out once."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import Engine, delete, or_, update
from sqlmodel import col, select

from storage.engine import session_scope
from storage.models import Cadence, ChannelSubscription
from storage.repos._common import require_aware, table_of, upsert_insert

_AT_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class SubscriptionRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert(
        self,
        channel: str,
        cadence: str,
        *,
        at_time: str,
        timezone: str,
        created_by: str,
        at: datetime,
        weekday: int | None = None,
    ) -> ChannelSubscription:
        """Subscribe, or change the schedule of the channel's existing subscription of that cadence."""
        cadence = Cadence(cadence).value
        if not _AT_TIME.match(at_time):
            raise ValueError(f"at_time must be HH:MM, got {at_time!r}")
        if cadence == Cadence.WEEKLY and (weekday is None or not 0 <= weekday <= 6):
            raise ValueError("a weekly subscription needs a weekday from 0 (Monday) to 6")
        if cadence == Cadence.DAILY:
            weekday = None
        require_aware(at, "at")
        schedule = {"weekday": weekday, "at_time": at_time, "timezone": timezone}
        table = table_of(ChannelSubscription)
        statement = (
            upsert_insert(self._engine, table)
            .values(channel=channel, cadence=cadence, created_by=created_by, created_at=at, **schedule)
            .on_conflict_do_update(index_elements=["channel", "cadence"], set_=schedule)
        )
        with session_scope(self._engine, write=True) as session:
            session.exec(statement)
            query = select(ChannelSubscription).where(
                ChannelSubscription.channel == channel, ChannelSubscription.cadence == cadence
            )
            return session.exec(query).one()

    def get(self, channel: str, cadence: str) -> ChannelSubscription | None:
        with session_scope(self._engine) as session:
            query = select(ChannelSubscription).where(
                ChannelSubscription.channel == channel, ChannelSubscription.cadence == cadence
            )
            return session.exec(query).first()

    def remove(self, channel: str, cadence: str | None = None) -> int:
        """Unsubscribe one cadence, or every cadence when None; returns how many were removed."""
        statement = delete(ChannelSubscription).where(col(ChannelSubscription.channel) == channel)
        if cadence is not None:
            statement = statement.where(col(ChannelSubscription.cadence) == cadence)
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement.execution_options(synchronize_session=False)).rowcount

    def list_all(self) -> list[ChannelSubscription]:
        with session_scope(self._engine) as session:
            query = select(ChannelSubscription).order_by(
                col(ChannelSubscription.channel), col(ChannelSubscription.cadence)
            )
            return list(session.exec(query))

    def list_for_channel(self, channel: str) -> list[ChannelSubscription]:
        with session_scope(self._engine) as session:
            query = (
                select(ChannelSubscription)
                .where(ChannelSubscription.channel == channel)
                .order_by(col(ChannelSubscription.cadence))
            )
            return list(session.exec(query))

    def claim_slot(self, subscription_id: int, slot: str) -> bool:
        """Claim the right to send the report for `slot`; True for exactly one caller per slot.

        Slots must sort in time order as strings (ISO-8601, e.g. "2025-03-03T09:00"), so a stale process can
        neither resend an old slot nor overwrite a newer one.
        """
        last = col(ChannelSubscription.last_sent_slot)
        statement = (
            update(ChannelSubscription)
            .where(col(ChannelSubscription.id) == subscription_id, or_(last.is_(None), last < slot))
            .values(last_sent_slot=slot)
            .execution_options(synchronize_session=False)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount == 1

    def release_slot(self, subscription_id: int, slot: str, previous: str | None) -> bool:
        """Undo `claim_slot` for a report that never went out, so a later tick sends it: compare-and-set
        back to `previous`, only while `slot` is still the last one claimed (a newer one is never undone)."""
        statement = (
            update(ChannelSubscription)
            .where(
                col(ChannelSubscription.id) == subscription_id,
                col(ChannelSubscription.last_sent_slot) == slot,
            )
            .values(last_sent_slot=previous)
            .execution_options(synchronize_session=False)
        )
        with session_scope(self._engine, write=True) as session:
            return session.exec(statement).rowcount == 1
