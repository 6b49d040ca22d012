"""Read side of the state history, for cost figures and reports.

Reports read every open machine and a week or a month of its transitions. Loading those as ORM entities
cost more than all the maths done on them, so these queries select plain columns with Core and return
tuples. Nothing here writes; `ResourceRepository` stays the only writer of resources and transitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Dialect, Engine, Select, func, select, type_coerce

from providers.base import InstanceState, Lifecycle
from storage.models import Resource, StateTransition, UTCDateTime
from storage.repos._common import chunks, require_aware, table_of

_RESOURCES = table_of(Resource)
_TRANSITIONS = table_of(StateTransition)
_FIRST = itemgetter(0)


class _RepeatedUTC(UTCDateTime):
    """`UTCDateTime` that converts each distinct stored value once: a history repeats its instants (every
    change one reconcile pass writes shares the pass's time), and converting was half the cost of a row."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        process = super().result_processor(dialect, coltype)
        # Kept with the compiled statement, so bounded; datetimes are immutable, so sharing them is safe.
        return None if process is None else lru_cache(maxsize=4096)(process)


def _instants(column: ColumnElement[datetime]) -> ColumnElement[datetime]:
    return type_coerce(column, _RepeatedUTC())


_STATES = {state.value: state for state in InstanceState}
_LIFECYCLES = {lifecycle.value: lifecycle for lifecycle in Lifecycle}


def _state(value: str) -> InstanceState:
    return _STATES.get(value) or InstanceState(value)


def _lifecycle(value: str) -> Lifecycle:
    return _LIFECYCLES.get(value) or Lifecycle(value)


class ResourceSummary(NamedTuple):
    """The columns of a `resources` row that cost figures and reports use."""

    id: str
    state: InstanceState
    lifecycle: Lifecycle
    owner: str | None
    project: str | None
    instance_type: str
    launch_time: datetime
    managed: bool


# One state change of one resource: (at, to_state, hourly_usd, reason_code), to_state being an
# `InstanceState` value. A plain tuple of atoms, which the garbage collector stops tracking: a report reads
# tens of thousands of them, and tracked ones made it run full collections in the middle of the report.
TransitionPoint = tuple[datetime, str, float | None, str | None]

# resource id -> its transitions, oldest first (by time, then by the order they were written).
Changes = dict[str, tuple[TransitionPoint, ...]]


@dataclass(frozen=True)
class HistorySnapshot:
    """Open resources and their history from `since`, read in one transaction."""

    since: datetime
    resources: list[ResourceSummary]
    changes: Changes


_SUMMARY_COLUMNS = (
    _RESOURCES.c.id,
    _RESOURCES.c.state,
    _RESOURCES.c.lifecycle,
    _RESOURCES.c.owner,
    _RESOURCES.c.project,
    _RESOURCES.c.instance_type,
    _instants(_RESOURCES.c.launch_time),
    _RESOURCES.c.managed,
)
_POINT_COLUMNS = (
    _TRANSITIONS.c.resource_id,
    _instants(_TRANSITIONS.c.at),
    _TRANSITIONS.c.to_state,
    _TRANSITIONS.c.hourly_usd,
    _TRANSITIONS.c.reason_code,
)


class HistoryRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open_resources(
        self, *, owner: str | None = None, project: str | None = None, managed_only: bool = True
    ) -> list[ResourceSummary]:
        """Resources not closed, oldest launch first (as `ResourceRepository.list_open`)."""
        with self._reading() as connection:
            return self._open_resources(connection, owner, project, managed_only)

    def resources(self, resource_ids: Iterable[str]) -> list[ResourceSummary]:
        """The rows of `resource_ids` that exist, open or closed, in the order asked for."""
        ids = list(dict.fromkeys(resource_ids))
        found: dict[str, ResourceSummary] = {}
        with self._reading() as connection:
            for id_chunk in chunks(ids):
                query = select(*_SUMMARY_COLUMNS).where(_RESOURCES.c.id.in_(id_chunk))
                for row in connection.execute(query):
                    found[row[0]] = _summary(row)
        return [found[i] for i in ids if i in found]

    def changes(self, resource_ids: Iterable[str], since: datetime) -> Changes:
        """Per resource, the last transition before `since` (the state in force when the window opens) and
        every transition at or after it. Resources without any are left out."""
        require_aware(since, "since")
        ids = list(dict.fromkeys(resource_ids))
        out: Changes = {}
        if not ids:
            return out
        with self._reading() as connection:
            for id_chunk in chunks(ids):
                # Chunks hold distinct resources, so each resource's points come from one chunk.
                self._read_changes(connection, _TRANSITIONS.c.resource_id.in_(id_chunk), since, out)
        return out

    def open_snapshot(
        self,
        since: datetime,
        *,
        owner: str | None = None,
        project: str | None = None,
        managed_only: bool = True,
    ) -> HistorySnapshot:
        """`open_resources` and their `changes` from `since` in one transaction, so both agree (on
        PostgreSQL under REPEATABLE READ; a SQLite read transaction is a snapshot already)."""
        require_aware(since, "since")
        with self._reading(snapshot=True) as connection:
            resources = self._open_resources(connection, owner, project, managed_only)
            out: Changes = {}
            if resources:
                ids = _open_ids(owner, project, managed_only)
                self._read_changes(connection, _TRANSITIONS.c.resource_id.in_(ids), since, out)
        return HistorySnapshot(since, resources, out)

    # --- queries ---------------------------------------------------------------------------------

    @contextmanager
    def _reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only transaction on a plain Core connection (SQLite's BEGIN comes from the engine hook)."""
        with self._engine.connect() as connection:
            if snapshot and self._engine.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin() as transaction:
                yield connection
                transaction.rollback()  # nothing was written

    @staticmethod
    def _open_resources(
        connection: Connection, owner: str | None, project: str | None, managed_only: bool
    ) -> list[ResourceSummary]:
        query = _filtered(select(*_SUMMARY_COLUMNS), owner, project, managed_only)
        query = query.order_by(_RESOURCES.c.launch_time, _RESOURCES.c.id)
        return [_summary(row) for row in connection.execute(query)]

    @staticmethod
    def _read_changes(
        connection: Connection, which: ColumnElement[bool], since: datetime, out: Changes
    ) -> None:
        t = _TRANSITIONS
        latest_before = select(func.max(t.c.id)).where(which, t.c.at < since).group_by(t.c.resource_id)
        prior: dict[str, TransitionPoint] = {
            resource_id: (at, to_state, hourly_usd, reason_code)
            for resource_id, at, to_state, hourly_usd, reason_code in connection.execute(
                select(*_POINT_COLUMNS).where(t.c.id.in_(latest_before))
            )
        }
        window = select(*_POINT_COLUMNS).where(which, t.c.at >= since)
        rows = connection.execute(window.order_by(t.c.resource_id, t.c.at, t.c.id))
        # Each resource's points are gathered into one tuple as soon as its rows end: tuples of plain values
        # drop out of the garbage collector's sight, where ten thousand lists kept it busy.
        for resource_id, group in groupby(rows, key=_FIRST):
            first = prior.pop(resource_id, None)
            points = tuple(
                (at, to_state, hourly_usd, reason) for _, at, to_state, hourly_usd, reason in group
            )
            out[resource_id] = points if first is None else (first, *points)
        for resource_id, first in prior.items():  # no change since the window opened
            out[resource_id] = (first,)


def _filtered(query: Select[Any], owner: str | None, project: str | None, managed_only: bool) -> Select[Any]:
    query = query.where(_RESOURCES.c.closed_at.is_(None))
    if managed_only:
        query = query.where(_RESOURCES.c.managed.is_(True))
    if owner is not None:
        query = query.where(_RESOURCES.c.owner == owner)
    if project is not None:
        query = query.where(_RESOURCES.c.project == project)
    return query


def _open_ids(owner: str | None, project: str | None, managed_only: bool) -> Select[Any]:
    return _filtered(select(_RESOURCES.c.id), owner, project, managed_only)


def _summary(row: Sequence[Any]) -> ResourceSummary:
    resource_id, state, lifecycle, owner, project, instance_type, launch_time, managed = row
    return ResourceSummary(
        resource_id,
        _state(state),
        _lifecycle(lifecycle),
        owner,
        project,
        instance_type,
        launch_time,
        bool(managed),
    )
