"""Channel reports: what runs, what it costs, what the bot saved, with a cost chart.

Built from the database (state history and prices), plus one paginated listing of unmanaged machines;
nothing is fetched per machine. One message and one chart upload per channel per schedule slot, claimed
in the database so that several bot processes send it once.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.core import cost as costmath
from bot.services.costs import history_reads, iter_histories, running
from bot.services.deps import ServiceDeps
from bot.views import blocks as bk
from bot.views.common import mention, money
from providers.base import Instance
from storage.models import Cadence, ChannelSubscription

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportData:
    at: datetime
    running: int
    hourly_now: Decimal
    running_by_owner: dict[str | None, int]
    running_by_project: dict[str | None, int]
    cost_today: Decimal
    cost_week: Decimal
    daily: dict[date, dict[str | None, Decimal]]  # day -> project -> cost, last 7 days
    top_spenders: list[tuple[str | None, Decimal]]
    saved_hours: Decimal
    saved_usd: Decimal
    unmanaged: tuple[Instance, ...]


def cost_chart(data: ReportData) -> bytes:
    """Stacked daily cost per project over the last 7 days, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    days = sorted(data.daily)
    projects = sorted({p for d in days for p in data.daily[d]}, key=lambda p: p or "")
    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot()
    bottoms = [0.0] * len(days)
    labels = [d.strftime("%a %d") for d in days]
    for project in projects or [None]:
        values = [float(data.daily[d].get(project, Decimal(0))) for d in days]
        axes.bar(labels, values, bottom=bottoms, label=project or "(no project)")
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    axes.set_ylabel("USD per day")
    axes.set_title(f"Fleet cost, last {len(days)} days · week ${float(data.cost_week):,.2f}")
    axes.grid(axis="y", alpha=0.3)
    if projects:
        axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class ReportService:
    def __init__(self, deps: ServiceDeps) -> None:
        self._deps = deps
        self._history = history_reads(deps)

    def build(self) -> ReportData:
        """The figures, from one read of the open machines and their history since the week's start.

        Each machine's history is built, tallied and let go in one pass. Costs are summed per (owner,
        project, day) as exact `Cost`s and turned into dollars once per figure, not once per machine-day.
        """
        deps = self._deps
        now = deps.clock.now()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        week_start = day_start - timedelta(days=day_start.weekday())
        chart_start = day_start - timedelta(days=6)
        since = min(week_start, chart_start)
        snapshot = self._history.open_snapshot(since)
        rows = snapshot.resources
        tally = costmath.DailyCosts(lambda h: (h.owner, h.project), since, now)
        saved: list[costmath.Saving] = []
        hourly_now = Decimal(0)
        for history in iter_histories(rows, snapshot.changes):
            tally.add(history)
            saved += costmath.savings((history,), week_start, now)
            hourly_now += costmath.hourly_rate_at((history,), now)
        today, week_from = now.date(), week_start.date()
        daily: dict[date, dict[str | None, costmath.Cost]] = {
            (chart_start + timedelta(days=k)).date(): {} for k in range(7)
        }
        cost_today, cost_week = costmath.Cost(), costmath.Cost()
        by_owner_week: dict[str | None, costmath.Cost] = {}
        for ((owner, project), day), cost in tally.result().items():
            per_project = daily.get(day)
            if per_project is not None:
                per_project[project] = per_project.get(project, costmath.Cost()) + cost
            if day == today:
                cost_today += cost
            if day >= week_from:
                cost_week += cost
                by_owner_week[owner] = by_owner_week.get(owner, costmath.Cost()) + cost
        top = sorted(((k, v.usd) for k, v in by_owner_week.items()), key=lambda kv: kv[1], reverse=True)[:5]
        running_rows = running(rows)
        by_owner: dict[str | None, int] = defaultdict(int)
        by_project: dict[str | None, int] = defaultdict(int)
        for r in running_rows:
            by_owner[r.owner] += 1
            by_project[r.project] += 1
        try:
            unmanaged = tuple(deps.provider.list_unmanaged_running())
        except Exception:
            log.exception("could not list unmanaged machines for the report")
            unmanaged = ()
        return ReportData(
            at=now,
            running=len(running_rows),
            hourly_now=hourly_now,
            running_by_owner=dict(by_owner),
            running_by_project=dict(by_project),
            cost_today=cost_today.usd,
            cost_week=cost_week.usd,
            daily={d: {p: c.usd for p, c in v.items()} for d, v in daily.items()},
            top_spenders=top,
            saved_hours=sum((s.cost.running_hours for s in saved), Decimal(0)),
            saved_usd=sum((s.usd for s in saved), Decimal(0)),
            unmanaged=unmanaged,
        )

    @staticmethod
    def render(data: ReportData, title: str) -> tuple[str, list[bk.Block]]:
        def ranked(values: dict[str | None, int], who: bool) -> str:
            items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:8]
            return "\n".join(f"{mention(k) if who else (k or '—')}: {v}" for k, v in items) or "—"

        blocks = [
            bk.header(title),
            bk.fields_section(
                [
                    f"*Running now*\n{data.running} machine(s) · {money(data.hourly_now, per_hour=True)}",
                    f"*Cost today*\n{money(data.cost_today)}",
                    f"*Cost this week*\n{money(data.cost_week)}",
                    f"*Saved by the bot this week*\n{money(data.saved_usd)} "
                    f"({data.saved_hours:.1f} idle hours caught)",
                ]
            ),
            bk.fields_section(
                [
                    f"*Running by owner*\n{ranked(data.running_by_owner, True)}",
                    f"*Running by project*\n{ranked(data.running_by_project, False)}",
                ]
            ),
        ]
        if data.top_spenders:
            spenders = " · ".join(f"{mention(k)} {money(v)}" for k, v in data.top_spenders)
            blocks.append(bk.section(f"*Top spenders this week:* {spenders}"))
        if data.unmanaged:
            shown = ", ".join(f"`{i.id}` ({i.instance_type})" for i in data.unmanaged[:10])
            more = f" and {len(data.unmanaged) - 10} more" if len(data.unmanaged) > 10 else ""
            blocks.append(
                bk.section(f":eyes: *Unmanaged running machines* (listed, never touched): {shown}{more}")
            )
        blocks.append(bk.context(f"Report of {data.at:%Y-%m-%d %H:%M} UTC · cost chart below"))
        now_rate = money(data.hourly_now, per_hour=True)
        text = f"{title}: {data.running} running, {now_rate}, week {money(data.cost_week)}"
        return text, blocks

    def post(self, channel: str, title: str = "Fleet report") -> None:
        """One message and one chart upload (in the message's thread) for `channel`."""
        data = self.build()
        text, blocks = self.render(data, title)
        ref = self._deps.notifier.post(channel, text, blocks)
        self._deps.notifier.upload(
            channel,
            f"fleet-cost-{data.at:%Y%m%d-%H%M}.png",
            cost_chart(data),
            title="Fleet cost, last 7 days",
            alt_text="Bar chart of daily fleet cost per project over the last 7 days",
            thread_ts=ref.ts,
        )

    # --- schedules -----------------------------------------------------------------------------

    @staticmethod
    def due_slot(sub: ChannelSubscription, now: datetime) -> str | None:
        """The slot this subscription owes now (its local date or ISO week), or None before its time."""
        tz = ZoneInfo(sub.timezone)
        local = now.astimezone(tz)
        hours, minutes = (int(x) for x in sub.at_time.split(":"))
        if local.time() < time(hours, minutes):
            return None
        if sub.cadence == Cadence.WEEKLY:
            if local.weekday() != sub.weekday:
                return None
            return f"{local.date().isoformat()}T{sub.at_time}"
        return f"{local.date().isoformat()}T{sub.at_time}"

    def send_due(self) -> list[str]:
        """Post every report whose time has come and that no process has sent for this slot.

        The slot is claimed before posting, so two processes post once. If the post fails (slack_sdk's
        retries gave up: Slack is down), the claim is given back with a compare-and-set and a later tick
        posts it. If only the chart upload fails, the message is out and is not posted again.
        """
        now = self._deps.clock.now()
        sent: list[str] = []
        data: ReportData | None = None
        repos, notifier = self._deps.repos, self._deps.notifier
        for sub in repos.subscriptions.list_all():
            slot = self.due_slot(sub, now)
            if slot is None or (sub.last_sent_slot is not None and sub.last_sent_slot >= slot):
                continue
            if not repos.subscriptions.claim_slot(sub.id or 0, slot):
                continue
            title = "Daily fleet report" if sub.cadence == Cadence.DAILY else "Weekly fleet report"
            try:
                data = data or self.build()
                text, blocks = self.render(data, title)
                ref = notifier.post(sub.channel, text, blocks)
            except Exception:
                released = repos.subscriptions.release_slot(sub.id or 0, slot, sub.last_sent_slot)
                log.exception(
                    "report for %s (%s) was not posted; %s",
                    sub.channel,
                    slot,
                    "a later tick retries it" if released else "the slot moved on meanwhile",
                )
                continue
            sent.append(f"{sub.channel}:{slot}")
            try:
                notifier.upload(
                    sub.channel,
                    f"fleet-cost-{data.at:%Y%m%d}.png",
                    cost_chart(data),
                    title="Fleet cost, last 7 days",
                    alt_text="Bar chart of daily fleet cost per project over the last 7 days",
                    thread_ts=ref.ts,
                )
            except Exception:
                log.exception(
                    "the chart of report %s (%s) was not uploaded; the report itself is out",
                    sub.channel,
                    slot,
                )
        return sent
