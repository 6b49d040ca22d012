"""Cloud resources and their state history, kept in step with the cloud by the reconcile job."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, update
from sqlmodel import Session, col, select

from providers.base import Instance, InstanceState, Lifecycle
from storage.engine import session_scope
from storage.models import Resource, StateTransition
from storage.repos._common import chunks, require_aware, table_of

# reason_code of the transition written when the cloud stops returning an instance.
MISSING_REASON_CODE = "runctl.missing"
MISSING_REASON_MESSAGE = "no longer returned by the cloud"

_RESOURCES = table_of(Resource)
_TRANSITIONS = table_of(StateTransition)
# Columns a sighting rewrites on a known row: everything the cloud owns, plus the bookkeeping.
_REFRESHED = (
    "provider",
    "region",
    "instance_type",
    "lifecycle",
    "state",
    "owner",
    "project",
    "name",
    "launch_time",
    "tags",
    "managed",
    "last_seen",
    "closed_at",
    "operation_id",
)
_UPDATE_BY_KEY = (
    update(_RESOURCES)
    .where(_RESOURCES.c.id == bindparam("key"))
    .values({name: bindparam(name) for name in _REFRESHED})
)


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One state change of one resource, as written to `state_transitions`."""

    resource_id: str
    from_state: InstanceState | None  # None on first sight
    to_state: InstanceState
    at: datetime
    lifecycle: Lifecycle
    reason_code: str | None = None
    reason_message: str | None = None
    hourly_usd: float | None = None
    # When the cloud says the change happened (not stored: `at` is when the bot saw it, which cost and
    # notice keys rely on); only the notice of the same reconcile reads it.
    cloud_at: datetime | None = None

    @property
    def first_sight(self) -> bool:
        return self.from_state is None

    @classmethod
    def from_row(cls, row: StateTransition) -> TransitionRecord:
        return cls(
            resource_id=row.resource_id,
            from_state=InstanceState(row.from_state) if row.from_state is not None else None,
            to_state=InstanceState(row.to_state),
            at=row.at,
            lifecycle=Lifecycle(row.lifecycle),
            reason_code=row.reason_code,
            reason_message=row.reason_message,
            hourly_usd=row.hourly_usd,
        )

    def row(self) -> dict[str, Any]:
        """The `state_transitions` columns, for a Core INSERT."""
        return {
            "resource_id": self.resource_id,
            "from_state": self.from_state.value if self.from_state is not None else None,
            "to_state": self.to_state.value,
            "at": self.at,
            "reason_code": self.reason_code,
            "reason_message": self.reason_message,
            "hourly_usd": self.hourly_usd,
            "lifecycle": self.lifecycle.value,
        }


def _cloud_fields(instance: Instance) -> dict[str, Any]:
    """Everything the cloud is the source of truth for (tags decide owner, project and management)."""
    return {
        "provider": instance.provider,
        "region": instance.region,
        "instance_type": instance.instance_type,
        "lifecycle": instance.lifecycle.value,
        "state": instance.state.value,
        "owner": instance.owner,
        "project": instance.project,
        "name": instance.name,
        "launch_time": instance.launch_time,
        "tags": dict(instance.tags),
        "managed": instance.managed,
    }


class ResourceRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert_from_cloud(
        self,
        instances: Sequence[Instance],
        seen_at: datetime,
        hourly_prices: Mapping[str, float] | None = None,
    ) -> list[TransitionRecord]:
        """Make the rows agree with what the cloud returned at `seen_at`; return every state change written.

        `hourly_prices` maps an instance id to the price in force for it now; it is stored on the transition
        rows so cost reports use the price of the time. A row already seen later than `seen_at` is left alone:
        an older listing finishing late must not roll a newer state back. A closed row that reappears reopens.

        One transaction, written in chunks of plain Core statements: a 10,000-machine listing builds no ORM
        objects, so memory stays bounded by a chunk whatever the fleet size.
        """
        require_aware(seen_at, "seen_at")
        prices = hourly_prices or {}
        latest = list({instance.id: instance for instance in instances}.values())
        records: list[TransitionRecord] = []
        with session_scope(self._engine, write=True) as session:
            for chunk in chunks(latest):
                records += self._upsert_chunk(session, chunk, seen_at, prices)
        return records

    @staticmethod
    def _upsert_chunk(
        session: Session, chunk: Sequence[Instance], seen_at: datetime, prices: Mapping[str, float]
    ) -> list[TransitionRecord]:
        connection = session.connection()
        known = {
            row.id: row
            for row in connection.execute(
                select(
                    _RESOURCES.c.id, _RESOURCES.c.state, _RESOURCES.c.last_seen, _RESOURCES.c.operation_id
                ).where(_RESOURCES.c.id.in_([instance.id for instance in chunk]))
            )
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        records: list[TransitionRecord] = []
        for instance in chunk:
            row = known.get(instance.id)
            fields = _cloud_fields(instance)
            # A terminated machine is gone for good: its row closes now, as if the listing had missed it.
            closed_at = seen_at if instance.state is InstanceState.TERMINATED else None
            previous: str | None
            if row is None:
                inserts.append(
                    {
                        "id": instance.id,
                        "first_seen": seen_at,
                        "last_seen": seen_at,
                        "closed_at": closed_at,
                        "operation_id": instance.operation_id,
                        **fields,
                    }
                )
                previous = None
            elif seen_at < row.last_seen:
                continue
            else:
                updates.append(
                    {
                        "key": instance.id,
                        "last_seen": seen_at,
                        "closed_at": closed_at,
                        "operation_id": row.operation_id or instance.operation_id,
                        **fields,
                    }
                )
                previous = row.state
            if previous != instance.state.value:
                # A machine first seen running has been running (and billing) since its launch, which the
                # cloud reports; later changes are dated when they were seen.
                running = instance.state in (InstanceState.RUNNING, InstanceState.STARTING)
                began = min(seen_at, instance.launch_time) if previous is None and running else seen_at
                records.append(
                    TransitionRecord(
                        resource_id=instance.id,
                        from_state=InstanceState(previous) if previous is not None else None,
                        to_state=instance.state,
                        at=began,
                        lifecycle=instance.lifecycle,
                        reason_code=instance.state_reason_code,
                        reason_message=instance.state_reason_message,
                        hourly_usd=prices.get(instance.id),
                        cloud_at=instance.state_changed_at,
                    )
                )
        if inserts:
            connection.execute(insert(_RESOURCES), inserts)
        if updates:
            connection.execute(_UPDATE_BY_KEY, updates)
        if records:  # after the resources they reference
            connection.execute(insert(_TRANSITIONS), [record.row() for record in records])
        return records

    def open_ids(self, *, provider: str | None = None, region: str | None = None) -> set[str]:
        """Ids of the rows not closed yet (of `provider`/`region`, when given): one plain-column read."""
        query = select(_RESOURCES.c.id).where(_RESOURCES.c.closed_at.is_(None))
        if provider is not None:
            query = query.where(_RESOURCES.c.provider == provider)
        if region is not None:
            query = query.where(_RESOURCES.c.region == region)
        with session_scope(self._engine) as session:
            return set(session.connection().execute(query).scalars())

    def close_missing(
        self,
        present_ids: Collection[str],
        at: datetime,
        *,
        provider: str | None = None,
        region: str | None = None,
    ) -> list[TransitionRecord]:
        """Close open rows (of `provider`/`region`, when given) that the cloud no longer returns.

        Rows seen at or after `at` are kept: they were written by something newer than the listing that
        produced `present_ids` (a launch that finished meanwhile, say).
        """
        require_aware(at, "at")
        present = set(present_ids)
        table = _RESOURCES
        with session_scope(self._engine, write=True) as session:
            connection = session.connection()
            query = select(table.c.id, table.c.state, table.c.lifecycle).where(
                table.c.closed_at.is_(None), table.c.last_seen < at
            )
            if provider is not None:
                query = query.where(table.c.provider == provider)
            if region is not None:
                query = query.where(table.c.region == region)
            missing = [row for row in connection.execute(query) if row.id not in present]
            records = [
                TransitionRecord(
                    resource_id=row.id,
                    from_state=InstanceState(row.state),
                    to_state=InstanceState.TERMINATED,
                    at=at,
                    lifecycle=Lifecycle(row.lifecycle),
                    reason_code=MISSING_REASON_CODE,
                    reason_message=MISSING_REASON_MESSAGE,
                )
                for row in missing
                if row.state != InstanceState.TERMINATED
            ]
            for chunk in chunks(missing):
                connection.execute(
                    update(table)
                    .where(table.c.id.in_([row.id for row in chunk]))
                    .values(state=InstanceState.TERMINATED.value, closed_at=at)
                )
            for record_chunk in chunks(records):
                connection.execute(insert(_TRANSITIONS), [record.row() for record in record_chunk])
            return records

    def get(self, resource_id: str) -> Resource | None:
        with session_scope(self._engine) as session:
            return session.get(Resource, resource_id)

    def list_open(self, owner: str | None = None, project: str | None = None) -> list[Resource]:
        with session_scope(self._engine) as session:
            query = select(Resource).where(col(Resource.closed_at).is_(None))
            if owner is not None:
                query = query.where(Resource.owner == owner)
            if project is not None:
                query = query.where(Resource.project == project)
            return list(session.exec(query.order_by(col(Resource.launch_time), col(Resource.id))))

    def transitions(
        self,
        resource_ids: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        include_prior: bool = False,
    ) -> list[TransitionRecord]:
        """Transitions with `since <= at < until`, oldest first.

        include_prior adds, per resource, the last transition before `since`: the state in force when the
        window opens, which cost reports need.
        """
        ids = None if resource_ids is None else list(dict.fromkeys(resource_ids))
        if ids == []:
            return []
        with session_scope(self._engine) as session:
            rows: dict[int, StateTransition] = {}
            for id_chunk in [None] if ids is None else list(chunks(ids)):
                query = select(StateTransition)
                if id_chunk is not None:
                    query = query.where(col(StateTransition.resource_id).in_(id_chunk))
                if since is not None:
                    query = query.where(col(StateTransition.at) >= since)
                if until is not None:
                    query = query.where(col(StateTransition.at) < until)
                rows.update((row.id or 0, row) for row in session.exec(query))
                if include_prior and since is not None:
                    latest_before = select(func.max(StateTransition.id))
                    latest_before = latest_before.where(col(StateTransition.at) < since)
                    if id_chunk is not None:
                        latest_before = latest_before.where(col(StateTransition.resource_id).in_(id_chunk))
                    latest_before = latest_before.group_by(col(StateTransition.resource_id))
                    prior = select(StateTransition).where(col(StateTransition.id).in_(latest_before))
                    rows.update((row.id or 0, row) for row in session.exec(prior))
            ordered = sorted(rows.values(), key=lambda row: (row.at, row.id or 0))
            return [TransitionRecord.from_row(row) for row in ordered]

    def link_operation(self, instance_id: str, operation_id: str) -> bool:
        """Record which operation launched the instance; False when there is no such row yet."""
        with session_scope(self._engine, write=True) as session:
            statement = (
                update(Resource)
                .where(col(Resource.id) == instance_id)
                .values(operation_id=operation_id)
                .execution_options(synchronize_session=False)
            )
            return session.exec(statement).rowcount == 1
