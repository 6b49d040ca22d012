"""Durations (`30m`, `1h30m`, `2d`) and deadlines (`+4h`, `2026-12-01`, ISO date-times) as people type them.

The current time is always an argument, so a deadline computed here is the same in a test as in production.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo

from bot.core.validation import ValidationError

__all__ = ["WHEN_FORMS", "format_duration", "looks_relative", "parse_duration", "parse_when"]

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_NAMES = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "wk": "w",
    "wks": "w",
    "week": "w",
    "weeks": "w",
}
_DURATION_FORMS = "e.g. 90s, 30m, 4h, 1h30m, 2d or 1w"
_PART_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)")
# A hard ceiling, independent of any caller's bound, so absurd input never overflows `timedelta`.
_ABSOLUTE_MAX_SECONDS = 10 * 366 * 86400


def parse_duration(
    text: str,
    *,
    field: str = "duration",
    maximum: timedelta | None = None,
    minimum: timedelta | None = None,
) -> timedelta:
    """A positive duration of whole numbers and units; `maximum` and `minimum` are the caller's bounds."""
    value = text.strip()
    if value == "":
        raise ValidationError(field, text, "is empty", f"expected a duration, {_DURATION_FORMS}")
    if value.startswith("-"):
        raise ValidationError(field, text, "must be positive", _DURATION_FORMS)
    if "." in value or "," in value:
        raise ValidationError(field, text, "must use whole numbers", "write 1h30m rather than 1.5h")
    total = 0
    seen: set[str] = set()
    position = 0
    while position < len(value):
        match = _PART_RE.match(value, position)
        if match is None or match.end() == position:
            raise ValidationError(field, text, "is not a duration", _DURATION_FORMS)
        number, unit_text = match.group(1), match.group(2)
        position = match.end()
        if unit_text == "":
            raise ValidationError(field, text, "has no unit", f"add s, m, h, d or w, {_DURATION_FORMS}")
        if unit_text in {"M", "mo", "mon", "month", "months", "y", "yr", "year", "years"}:
            raise ValidationError(field, text, "uses months or years, which are not supported", "use d or w")
        unit = _UNIT_NAMES.get(unit_text.lower())
        if unit is None:
            raise ValidationError(
                field,
                text,
                f"has an unknown unit {unit_text!r}",
                f"expected s, m, h, d or w, {_DURATION_FORMS}",
            )
        if unit in seen:
            raise ValidationError(field, text, f"repeats the unit {unit!r}", _DURATION_FORMS)
        seen.add(unit)
        if len(number) > 9:
            raise ValidationError(field, text, "is too long")
        total += int(number) * _UNIT_SECONDS[unit]
    if total == 0:
        raise ValidationError(field, text, "must be more than zero", _DURATION_FORMS)
    if total > _ABSOLUTE_MAX_SECONDS:
        raise ValidationError(field, text, "is too long")
    result = timedelta(seconds=total)
    if maximum is not None and result > maximum:
        raise ValidationError(field, text, f"is longer than the limit of {format_duration(maximum)}")
    if minimum is not None and result < minimum:
        raise ValidationError(field, text, f"is shorter than the minimum of {format_duration(minimum)}")
    return result


def format_duration(td: timedelta) -> str:
    """`1d 4h 30m`; seconds only when present, `0s` for zero, whole seconds only."""
    if td < timedelta(0):
        return "-" + format_duration(-td)
    seconds = int(td.total_seconds())
    if seconds == 0:
        return "0s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts)


WHEN_FORMS = (
    "a duration like 4h, 2d or +1h30m, a date like 2026-12-01 (midnight at its start), "
    "or a date and time like 2026-12-01T18:00 or 2026-12-01T18:00+02:00"
)
_DURATION_SHAPE_RE = re.compile(r"[0-9]+\s*[A-Za-z][0-9A-Za-z\s]*")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)


def looks_relative(text: str) -> bool:
    """Whether `parse_when` would read the text as a duration from now rather than as a date."""
    value = text.strip()
    return value.startswith("+") or bool(_DURATION_SHAPE_RE.fullmatch(value))


def parse_when(
    text: str,
    now: datetime,
    tz: tzinfo | None = None,
    *,
    field: str = "date",
    maximum: timedelta | None = None,
) -> datetime:
    """A future instant, returned in UTC; dates and times without an offset are read in `tz` (default: now's).

    `never` is not accepted: what "never" means (and who may say it) is the caller's decision.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    zone = tz if tz is not None else now.tzinfo
    value = text.strip()
    result: datetime
    if looks_relative(value):
        result = now + parse_duration(value.removeprefix("+"), field=field, maximum=maximum)
    elif _DATE_RE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(field, text, "is not a real date", "expected YYYY-MM-DD") from exc
        result = datetime(day.year, day.month, day.day, tzinfo=zone)
    elif _DATETIME_RE.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(field, text, "is not a real date and time", WHEN_FORMS) from exc
        result = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)
    else:
        raise ValidationError(field, text, "is not a duration or a date", f"expected {WHEN_FORMS}")
    try:
        in_utc = result.astimezone(UTC)
        ahead = in_utc - now
    except OverflowError as exc:
        raise ValidationError(field, text, "is out of range", f"expected {WHEN_FORMS}") from exc
    if ahead <= timedelta(0):
        raise ValidationError(field, text, "is in the past")
    if maximum is not None and ahead > maximum:
        raise ValidationError(field, text, f"is more than {format_duration(maximum)} away")
    return in_utc
