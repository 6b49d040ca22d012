"""Cost alerts, each sent once per threshold crossing (claimed in the database).

An owner gets at most one DM per run: every alert of theirs that crossed in this run is claimed, then
said together. The team's monthly budget goes to the team channel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Alert:
    """One threshold crossing: `key` names it for the once-only claim, `text` is what the owner reads."""

    key: str
    text: str


def owner_message(alerts: list[Alert]) -> str:
    """One DM for all of an owner's alerts of a run; a single alert is said as it is."""
    if len(alerts) == 1:
        return alerts[0].text
    return f"*{len(alerts)} cost alerts:*\n" + "\n".join(f"• {a.text}" for a in alerts)


class CostAlertService:
    def __init__(self, deps: ServiceDeps, thresholds: AlertThresholds) -> None:
        self._deps = deps
        self._t = thresholds
        self._history = history_reads(deps)

    def _tell_owner(self, owner: str | None, alerts: list[Alert]) -> list[str]:
        """Claim each alert, then send the ones claimed here in one DM; a failed DM gives them all back."""
        repos, now = self._deps.repos, self._deps.clock.now()
        claimed = [a for a in alerts if repos.notices.first_time(a.key, now)]
        if not claimed:
            return []
        try:
            if owner and owner.startswith(("U", "W")):
                self._deps.notifier.dm(owner, owner_message(claimed), None)
        except Exception:
            log.exception("cost alerts for %s failed; they will be retried", owner)
            for alert in claimed:
                repos.notices.forget(alert.key)
            return []
        return [a.key for a in claimed]

    def _tell_team(self, alert: Alert) -> bool:
        repos, channel = self._deps.repos, self._deps.team_channel
        if not repos.notices.first_time(alert.key, self._deps.clock.now()):
            return False
        try:
            if channel:
                self._deps.notifier.post(channel, alert.text, None)
        except Exception:
            log.exception("cost alert %s failed; it will be retried", alert.key)
            repos.notices.forget(alert.key)
            return False
        return True

    def run(self) -> list[str]:
        """Send the alerts whose thresholds were crossed and not yet told; returns their keys."""
        deps, t = self._deps, self._t
        now = deps.clock.now()
        rows = self._history.open_resources()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        since = min(month_start, min((r.launch_time for r in rows), default=month_start))
        changes = self._history.changes([r.id for r in rows], since)
        hist = {h.instance_id: h for h in histories(rows, changes)}
        by_owner: dict[str | None, list[Alert]] = {}
        for row in rows:
            if row.state not in (InstanceState.RUNNING, InstanceState.STARTING):
                continue
            launched = row.launch_time
            spent = costmath.instance_cost(hist[row.id], launched - timedelta(seconds=1), now).usd
            hours = (now - launched).total_seconds() / 3600
            stamp = launched.strftime("%Y%m%dT%H%M")
            if t.machine_cost > 0 and spent >= t.machine_cost:
                by_owner.setdefault(row.owner, []).append(
                    Alert(
                        f"alert:machine-cost:{row.id}:{stamp}",
                        f":money_with_wings: `{row.id}` ({row.instance_type}) has cost {money(spent)} since "
                        f"it started (alert at {money(t.machine_cost)}).",
                    )
                )
            if t.machine_hours > 0 and hours >= t.machine_hours:
                by_owner.setdefault(row.owner, []).append(
                    Alert(
                        f"alert:machine-hours:{row.id}:{stamp}",
                        f":hourglass: `{row.id}` ({row.instance_type}) has been running {hours:.0f} h "
                        f"(alert at {t.machine_hours:.0f} h). `/runctl stop {row.id}` if it is done.",
                    )
                )
        today_rows = costmath.cost_rows(list(hist.values()), day_start, now)
        for owner, cost in costmath.cost_by_owner(today_rows).items():
            if owner and t.user_daily_cost > 0 and cost.usd >= t.user_daily_cost:
                by_owner.setdefault(owner, []).append(
                    Alert(
                        f"alert:user-day:{owner}:{day_start.date().isoformat()}",
                        f":money_with_wings: Your machines have cost {money(cost.usd)} today "
                        f"(alert at {money(t.user_daily_cost)}).",
                    )
                )
        sent: list[str] = []
        for owner, alerts in by_owner.items():
            sent += self._tell_owner(owner, alerts)
        if t.team_monthly_budget is not None:
            month = costmath.total(costmath.cost_rows(list(hist.values()), month_start, now)).usd
            if month >= t.team_monthly_budget:
                team = Alert(
                    f"alert:team-month:{month_start:%Y-%m}",
                    f":rotating_light: The team has spent {money(month)} this month, over the budget of "
                    f"{money(t.team_monthly_budget)}.",
                )
                if self._tell_team(team):
                    sent.append(team.key)
        return sent
