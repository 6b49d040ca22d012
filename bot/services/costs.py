"""Cost figures from the recorded state history (never from per-machine cloud calls)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.core import cost as costmath
from bot.services.deps import ServiceDeps
from providers.base import InstanceState
from storage.repos.history import HistoryRepository, ResourceSummary, TransitionPoint

# A stop the bot made on its own carries this reason code, so savings can be told from owners' stops.
BOT_STOP_REASON = "runctl.idle_stop"

_RUNNING = (InstanceState.RUNNING, InstanceState.STARTING)
_STATES = {state.value: state for state in InstanceState}


@dataclass(frozen=True)
class CostSummary:
    since: datetime
    until: datetime
    total: Decimal
    unpriced_hours: Decimal
    by_owner: dict[str | None, Decimal]
    by_project: dict[str | None, Decimal]
    by_instance: dict[str, Decimal]
    hourly_now: Decimal
    projected_month: Decimal


def history_reads(deps: ServiceDeps) -> HistoryRepository:
    """The read-side history queries over the services' database."""
    return deps.repos.history


def iter_histories(
    resources: Iterable[ResourceSummary], changes: Mapping[str, Sequence[TransitionPoint]]
) -> Iterator[costmath.InstanceHistory]:
    """One history per resource, in the order given, from its stored transitions; built as they are
    consumed, so a caller that streams them never holds the whole fleet's."""
    prices: dict[float, Decimal] = {}  # a fleet has few distinct prices: convert each one once

    def change(point: TransitionPoint) -> costmath.StateChange:
        at, state, hourly, reason = point
        price = None
        if hourly is not None:
            price = prices.get(hourly)
            if price is None:
                price = prices[hourly] = costmath.usd(hourly)
        return costmath.StateChange(
            at, _STATES.get(state) or InstanceState(state), price, by_bot=reason == BOT_STOP_REASON
        )

    for r in resources:
        yield costmath.InstanceHistory(
            r.id,
            tuple(change(point) for point in changes.get(r.id, ())),
            owner=r.owner,
            project=r.project,
            lifecycle=r.lifecycle,
        )


def histories(
    resources: Iterable[ResourceSummary], changes: Mapping[str, Sequence[TransitionPoint]]
) -> list[costmath.InstanceHistory]:
    """`iter_histories`, all at once, for figures that need them several times over."""
    return list(iter_histories(resources, changes))


class CostService:
    def __init__(self, deps: ServiceDeps) -> None:
        self._deps = deps
        self._history = history_reads(deps)

    def summary(
        self, *, since: datetime, owner: str | None = None, project: str | None = None
    ) -> CostSummary:
        now = self._deps.clock.now()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        snapshot = self._history.open_snapshot(min(since, month_start), owner=owner, project=project)
        hist = histories(snapshot.resources, snapshot.changes)
        cost_rows = costmath.cost_rows(hist, since, now)
        total = costmath.total(cost_rows)
        per_instance = costmath.aggregate(cost_rows, lambda r: r.instance_id)
        projection = costmath.project_month_end(hist, now)
        return CostSummary(
            since=since,
            until=now,
            total=total.usd,
            unpriced_hours=total.unpriced_hours,
            by_owner={k: v.usd for k, v in costmath.cost_by_owner(cost_rows).items()},
            by_project={k: v.usd for k, v in costmath.cost_by_project(cost_rows).items()},
            by_instance={k: v.usd for k, v in per_instance.items()},
            hourly_now=costmath.hourly_rate_at(hist, now),
            projected_month=projection.projected_usd,
        )

    def so_far(self, instance_ids: Sequence[str]) -> dict[str, Decimal]:
        """What each machine has cost since it was first seen."""
        rows = self._history.resources(instance_ids)
        if not rows:
            return {}
        since = min(r.launch_time for r in rows) - timedelta(seconds=1)
        hist = histories(rows, self._history.changes([r.id for r in rows], since))
        now = self._deps.clock.now()
        return {h.instance_id: costmath.instance_cost(h, since, now).usd for h in hist}


def running(rows: Iterable[ResourceSummary]) -> list[ResourceSummary]:
    return [r for r in rows if r.state in _RUNNING]
