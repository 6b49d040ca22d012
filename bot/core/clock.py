"""Time as an injectable dependency.

Rules never read the wall clock: they take `now` as an argument. Services hold a `Clock` and pass
`clock.now()` down, so tests move a `FixedClock` instead of sleeping, and every decision in one cycle sees
the same instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock; the only place in `bot.core` that reads the system time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to, for tests and for replaying a cycle."""

    def __init__(self, start: datetime) -> None:
        self._now = require_utc(start, "start")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by `delta` and/or `timedelta(**units)`, e.g. `advance(minutes=61)`.

        Moving backwards is refused: every rule assumes time does not run back within one process.
        """
        step = (delta or timedelta()) + timedelta(**units)
        if step < timedelta():
            raise ValueError(f"a clock cannot move backwards (asked to move {step})")
        self._now += step
        return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to `when` (not earlier than now)."""
        when = require_utc(when, "when")
        if when < self._now:
            raise ValueError(f"a clock cannot move backwards ({when.isoformat()} < {self._now.isoformat()})")
        self._now = when
        return self._now


def require_utc(value: datetime, name: str = "now") -> datetime:
    """`value` converted to UTC; a naive datetime is a programming error, so it raises instead of guessing."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` in UTC, reading a naive datetime as UTC.

    For data that comes from outside (cloud launch times, tag values, database rows), where the tag schema
    and the providers promise UTC but a driver may have dropped the offset.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ShiftedClock:
    """Real time moved by an offset that can grow: scheduler tests and the sandbox move it forward, while
    the cloud (or its emulator) keeps stamping real times."""

    def __init__(self, offset: timedelta = timedelta()) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return SystemClock().now() + self._offset

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        step = (delta or timedelta()) + timedelta(**units)
        if step < timedelta():
            raise ValueError(f"a clock cannot move backwards (asked to move {step})")
        self._offset += step
        return self.now()
