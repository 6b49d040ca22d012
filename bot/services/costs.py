"""Cost figures from the recorded state history (never from per-machine cloud calls)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.core import cost as costmath
from bot.services.deps import ServiceDeps
from providers.base import InstanceState, Lifecycle
from storage.models import Resource
from storage.repositories import TransitionRecord

# A stop the bot made on its own carries this reason code, so savings can be told from owners' stops.
BOT_STOP_REASON = "runctl.idle_stop"


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


def histories(
    rows: Sequence[Resource], transitions: Iterable[TransitionRecord]
) -> list[costmath.InstanceHistory]:
    by_id: dict[str, list[costmath.StateChange]] = defaultdict(list)
    for t in transitions:
        by_id[t.resource_id].append(
            costmath.StateChange(
                t.at,
                t.to_state,
                Decimal(str(t.hourly_usd)) if t.hourly_usd is not None else None,
                by_bot=t.reason_code == BOT_STOP_REASON,
            )
        )
    return [
        costmath.InstanceHistory(
            r.id,
            tuple(by_id.get(r.id, ())),
            owner=r.owner,
            project=r.project,
            lifecycle=Lifecycle(r.lifecycle),
        )
        for r in rows
    ]


class CostService:
    def __init__(self, deps: ServiceDeps) -> None:
        self._deps = deps

    def _histories(self, rows: Sequence[Resource], since: datetime) -> list[costmath.InstanceHistory]:
        ids = [r.id for r in rows]
        transitions = self._deps.repos.resources.transitions(ids, since=since, include_prior=True)
        return histories(rows, transitions)

    def summary(
        self, *, since: datetime, owner: str | None = None, project: str | None = None
    ) -> CostSummary:
        now = self._deps.clock.now()
        rows = [r for r in self._deps.repos.resources.list_open(owner=owner, project=project) if r.managed]
        hist = self._histories(
            rows, min(since, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        )
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
        rows = [r for r in (self._deps.repos.resources.get(i) for i in instance_ids) if r is not None]
        if not rows:
            return {}
        since = min(r.launch_time for r in rows) - timedelta(seconds=1)
        hist = self._histories(rows, since)
        now = self._deps.clock.now()
        return {h.instance_id: costmath.instance_cost(h, since, now).usd for h in hist}


def running(rows: Iterable[Resource]) -> list[Resource]:
    return [r for r in rows if r.state in (InstanceState.RUNNING, InstanceState.STARTING)]
