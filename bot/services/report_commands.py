"""`/runctl report`, `subscribe` and `unsubscribe`: channel reports on demand and on a schedule."""

from __future__ import annotations

from bot.core import commands as cmds
from bot.services.deps import ServiceDeps
from bot.services.dispatch import Origin, Reply
from bot.services.reports import ReportService
from bot.views import blocks as bk

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ReportCommands:
    def __init__(self, deps: ServiceDeps, reports: ReportService, default_timezone: str) -> None:
        self._deps = deps
        self._reports = reports
        self._default_tz = default_timezone

    def report(self, _command: cmds.ReportCommand, origin: Origin) -> Reply:
        if origin.channel is None:
            return Reply("Run `/runctl report` in a channel: the report is posted there.")
        self._reports.post(origin.channel, "Fleet report")
        return Reply("")

    def subscribe(self, command: cmds.SubscribeCommand, origin: Origin) -> Reply:
        channel = command.channel or origin.channel
        if channel is None:
            return Reply("Name a channel: `/runctl subscribe #channel daily 09:00`.")
        tz = command.timezone.key if command.timezone else None
        tz = tz or self._deps.notifier.user_timezone(origin.user) or self._default_tz
        weekday = int(command.weekday) if command.weekday is not None else None
        at_time = command.at.strftime("%H:%M")
        sub = self._deps.repos.subscriptions.upsert(
            channel,
            command.frequency.value,
            at_time=at_time,
            timezone=tz,
            created_by=origin.user,
            at=self._deps.clock.now(),
            weekday=weekday,
        )
        when = f"every {_DAYS[sub.weekday]}" if sub.weekday is not None else "every day"
        text = f"<#{channel}> gets the {sub.cadence} fleet report {when} at {sub.at_time} ({sub.timezone})."
        return Reply(text, [bk.section(f":calendar: {text}")], public=True)

    def unsubscribe(self, command: cmds.UnsubscribeCommand, origin: Origin) -> Reply:
        channel = command.channel or origin.channel
        if channel is None:
            return Reply("Name a channel: `/runctl unsubscribe #channel`.")
        cadence = command.frequency.value if command.frequency else None
        removed = self._deps.repos.subscriptions.remove(channel, cadence)
        if not removed:
            return Reply(f"<#{channel}> has no {cadence or ''} report subscription.".replace("  ", " "))
        what = f"{cadence} report" if cadence else "reports"
        return Reply(f"<#{channel}> no longer gets scheduled {what}.", public=True)
