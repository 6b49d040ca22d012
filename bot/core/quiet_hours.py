"""Working hours in the owner's own time zone (DESIGN §3 rule 6).

Automatic stops and idle reminders happen only inside working hours as the owner's wall clock shows them.
The instant is converted with `zoneinfo`, so a DST change needs no special case: 07:30 UTC is 08:30 in
Berlin in winter and 09:30 in summer, and on the night the clocks change the hour that does not exist is
simply never shown.

An owner whose Slack time zone is unknown (the lookup failed, or the profile has none) or not an IANA name
is judged in the default zone, and the check is marked `guessed` with a sentence saying why. A guess is
good enough to time a reminder, never to act: the safety rules refuse an automatic stop on a guessed zone.
A team that wants unknown owners treated as being in one zone configures it (the idle cycle then passes
that zone as the owner's, with a note), so the zone is a decision, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.clock import require_utc
from bot.core.policy import WorkingHours

# ValueError: keys that are paths or not TZif files; OSError: anything the file system objects to.
_ZONE_ERRORS = (ZoneInfoNotFoundError, ValueError, OSError)
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class ResolvedZone:
    zone: ZoneInfo
    name: str
    problem: str | None = None  # set when the requested zone could not be used
    cause: str | None = None  # the problem without what was used instead ("time zone 'X' is unknown")


def is_known_timezone(name: str | None) -> bool:
    """Whether `name` is an IANA zone this interpreter can load."""
    if not name:
        return False
    try:
        ZoneInfo(name)
    except _ZONE_ERRORS:
        return False
    return True


def resolve_timezone(name: str | None, default: str = "UTC") -> ResolvedZone:
    """The owner's zone, or `default` with a sentence saying why the owner's could not be used."""
    if name:
        try:
            return ResolvedZone(ZoneInfo(name), name)
        except _ZONE_ERRORS:
            problem = f"time zone {name!r} is unknown"
    else:
        problem = "the owner's time zone is unknown"
    try:
        return ResolvedZone(ZoneInfo(default), default, f"{problem}, so {default} was used", problem)
    except _ZONE_ERRORS:
        return ResolvedZone(
            ZoneInfo("UTC"), "UTC", f"{problem} and so is {default!r}, so UTC was used", problem
        )


def is_working_time(now: datetime, zone: ZoneInfo, hours: WorkingHours) -> bool:
    local = require_utc(now).astimezone(zone)
    wall, day = local.time().replace(tzinfo=None), local.weekday()
    if hours.start == hours.end:
        return day in hours.workdays
    if hours.start < hours.end:
        return day in hours.workdays and hours.start <= wall < hours.end
    # Overnight: the window belongs to the day it starts on.
    return (wall >= hours.start and day in hours.workdays) or (
        wall < hours.end and (day - 1) % 7 in hours.workdays
    )


def _window_start(day: date, zone: ZoneInfo, hours: WorkingHours) -> datetime:
    """The first instant the owner's wall clock reads `hours.start` (midnight for all-day) on `day`, in UTC.

    When `start` falls in a spring-forward gap the window opens at the jump itself, found by bisection
    between the two readings of the missing wall time.
    """
    naive = datetime.combine(day, hours.start if hours.start != hours.end else time(0))
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # In a gap: fold=1 reads the wall time with the offset after the jump, which is the earlier instant.
    low, high = naive.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    low, high = min(low, high), max(low, high)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0) + (timedelta(seconds=1) if high.microsecond else timedelta())


def next_working_time(now: datetime, zone: ZoneInfo, hours: WorkingHours) -> datetime:
    """`now` if it is working time, else the next instant working hours begin (UTC)."""
    now = require_utc(now)
    if is_working_time(now, zone, hours):
        return now
    today = now.astimezone(zone).date()
    candidates = []
    for offset in range(-1, 9):
        day = today + timedelta(days=offset)
        if day.weekday() not in hours.workdays:
            continue
        opening = _window_start(day, zone, hours)
        if opening > now and is_working_time(opening, zone, hours):
            candidates.append(opening)
    if not candidates:  # unreachable with at least one workday, kept as a loud guard
        raise ValueError("working hours never begin; check the workdays setting")
    return min(candidates)


@dataclass(frozen=True)
class WorkingTimeCheck:
    within: bool
    local: datetime  # `now` on the owner's wall clock
    zone: str
    next_start: datetime  # UTC; equals `now` when within
    problem: str | None = None  # set when the owner's own zone could not be used
    cause: str | None = None  # why, without the stand-in ("the owner's time zone is unknown")

    @property
    def guessed(self) -> bool:
        """The owner's zone is unknown and `zone` is a stand-in: fine for a reminder, never for a stop."""
        return self.problem is not None

    @property
    def local_label(self) -> str:
        """`Sat 10:15 CET` — what the owner's clock showed, for reasons and evidence."""
        return f"{_DAY_NAMES[self.local.weekday()]} {self.local:%H:%M} {self.local.tzname() or self.zone}"


def check_working_time(now: datetime, timezone_name: str | None, hours: WorkingHours) -> WorkingTimeCheck:
    """Whether `now` is inside the owner's working hours, with what the rules need to explain it."""
    now = require_utc(now)
    resolved = resolve_timezone(timezone_name, hours.default_timezone)
    return WorkingTimeCheck(
        within=is_working_time(now, resolved.zone, hours),
        local=now.astimezone(resolved.zone),
        zone=resolved.name,
        next_start=next_working_time(now, resolved.zone, hours),
        problem=resolved.problem,
        cause=resolved.cause,
    )


def describe_hours(hours: WorkingHours) -> str:
    """`08:00-20:00 Mon-Fri`, for messages."""
    days = sorted(hours.workdays)
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        day_text = f"{_DAY_NAMES[days[0]]}-{_DAY_NAMES[days[-1]]}"
    else:
        day_text = ",".join(_DAY_NAMES[d] for d in days)
    if hours.start == hours.end:
        return f"all day {day_text}"
    return f"{hours.start:%H:%M}-{hours.end:%H:%M} {day_text}"
