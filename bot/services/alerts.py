"""Cost alerts, each sent once per threshold crossing (claimed in the database)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from bot.core import cost as costmath
from bot.services.costs import histories, history_reads
from bot.services.deps import ServiceDeps
from bot.views.common import money
from providers.base import InstanceState

log = logging.getLogger(__name__)


class AlertThresholds:
    def __init__(
        self,
        *,
        machine_cost: float,
        machine_hours: float,
        user_daily_cost: float,
        team_monthly_budget: float | None,
    ) -> None:
        self.machine_cost = Decimal(str(machine_cost))
        self.machine_hours = machine_hours
        self.user_daily_cost = Decimal(str(user_daily_cost))
        self.team_monthly_budget = (
            Decimal(str(team_monthly_budget)) if team_monthly_budget is not None else None
        )


class CostAlertService:
    def __init__(self, deps: ServiceDeps, thresholds: AlertThresholds) -> None:
        self._deps = deps
        self._t = thresholds
        self._history = history_reads(deps)

    def _send_once(self, key: str, user: str | None, text: str, *, team: bool = False) -> bool:
        repos, notifier = self._deps.repos, self._deps.notifier
        if not repos.notices.first_time(key, self._deps.clock.now()):
            return False
        try:
            if user and user.startswith(("U", "W")):
                notifier.dm(user, text, None)
            if team and self._deps.team_channel:
                notifier.post(self._deps.team_channel, text, None)
        except Exception:
            log.exception("cost alert %s failed; it will be retried", key)
            repos.notices.forget(key)
            return False
        return True

    def run(self) -> list[str]:
        deps, t = self._deps, self._t
        now = deps.clock.now()
        rows = self._history.open_resources()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        since = min(month_start, min((r.launch_time for r in rows), default=month_start))
        changes = self._history.changes([r.id for r in rows], since)
        hist = {h.instance_id: h for h in histories(rows, changes)}
        sent: list[str] = []
        for row in rows:
            if row.state not in (InstanceState.RUNNING, InstanceState.STARTING):
                continue
            launched = row.launch_time
            spent = costmath.instance_cost(hist[row.id], launched - timedelta(seconds=1), now).usd
            hours = (now - launched).total_seconds() / 3600
            stamp = launched.strftime("%Y%m%dT%H%M")
            if t.machine_cost > 0 and spent >= t.machine_cost:
                key = f"alert:machine-cost:{row.id}:{stamp}"
                text = (
                    f":money_with_wings: `{row.id}` ({row.instance_type}) has cost {money(spent)} since it "
                    f"started (alert at {money(t.machine_cost)})."
                )
                if self._send_once(key, row.owner, text):
                    sent.append(key)
            if t.machine_hours > 0 and hours >= t.machine_hours:
                key = f"alert:machine-hours:{row.id}:{stamp}"
                text = (
                    f":hourglass: `{row.id}` ({row.instance_type}) has been running {hours:.0f} h "
                    f"(alert at {t.machine_hours:.0f} h). `/runctl stop {row.id}` if it is done."
                )
                if self._send_once(key, row.owner, text):
                    sent.append(key)
        today_rows = costmath.cost_rows(list(hist.values()), day_start, now)
        for owner, cost in costmath.cost_by_owner(today_rows).items():
            if owner and t.user_daily_cost > 0 and cost.usd >= t.user_daily_cost:
                key = f"alert:user-day:{owner}:{day_start.date().isoformat()}"
                text = (
                    f":money_with_wings: Your machines have cost {money(cost.usd)} today "
                    f"(alert at {money(t.user_daily_cost)})."
                )
                if self._send_once(key, owner, text):
                    sent.append(key)
        if t.team_monthly_budget is not None:
            month = costmath.total(costmath.cost_rows(list(hist.values()), month_start, now)).usd
            if month >= t.team_monthly_budget:
                key = f"alert:team-month:{month_start:%Y-%m}"
                text = (
                    f":rotating_light: The team has spent {money(month)} this month, over the budget of "
                    f"{money(t.team_monthly_budget)}."
                )
                if self._send_once(key, None, text, team=True):
                    sent.append(key)
        return sent
