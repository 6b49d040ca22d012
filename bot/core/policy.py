"""The thresholds every rule reads, as frozen values with the defaults of DESIGN §3.

Configuration (`bot/config.py`, documented in `docs/configuration.md`) builds one `SafetyPolicy` at start-up
and passes it down; the rules never read settings themselves. Each dataclass checks its own values when it
is built, so a bad setting fails at start-up with the field named, not halfway through a cleanup cycle.

Mapping to the documented settings:

| setting | field |
| --- | --- |
| `RUNCTL_MIN_AGE_COMMAND` / `RUNCTL_MIN_AGE_IDLE` | `SafetyPolicy.min_age_command` / `.min_age_idle` |
| `RUNCTL_IDLE_CPU_THRESHOLD` | `IdlePolicy.threshold_percent` (CPU and GPU) |
| `RUNCTL_IDLE_WINDOW`, `_MIN_COVERAGE`, `_STATISTIC`, `_PERIOD_SECONDS` | the same `IdlePolicy` fields |
| `RUNCTL_GRACE_PERIOD` | `SafetyPolicy.grace` |
| `RUNCTL_BREAKER_MAX_ACTIONS` / `_MAX_SHARE` | `BreakerPolicy.max_actions` / `.max_fleet_share` |
| `RUNCTL_WORK_START`, `_END`, `_DAYS`, `RUNCTL_DEFAULT_TIMEZONE` | `WorkingHours` |
| `RUNCTL_KEEP_MAX_PER_MACHINE` | `SafetyPolicy.max_keeps_per_machine` |
| `RUNCTL_APPROVAL_EXPIRY`, `_COST_PER_HOUR` | `ApprovalPolicy.expiry`, `.cost_per_hour` |
| `RUNCTL_USER_MAX_INSTANCES`, `_MAX_COST_PER_HOUR` | `ApprovalPolicy.user_max_instances`, `…` |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)
WEEKDAYS: frozenset[int] = frozenset({MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY})


class IdleStatistic(StrEnum):
    MAX = "max"  # every datapoint under the threshold
    MEAN = "mean"  # the average under the threshold


def _positive(name: str, value: timedelta) -> None:
    if value <= timedelta():
        raise ValueError(f"{name} must be positive (got {value})")


def _not_negative(name: str, value: timedelta) -> None:
    if value < timedelta():
        raise ValueError(f"{name} must not be negative (got {value})")


@dataclass(frozen=True)
class IdlePolicy:
    """What "proven idle" means (DESIGN §3 rule 4)."""

    threshold_percent: float = 5.0
    window: timedelta = timedelta(minutes=60)
    min_coverage: float = 0.8
    statistic: IdleStatistic = IdleStatistic.MAX
    period_seconds: int = 300
    # Metrics that must be present; any other metric that is present (GPU) must be idle too.
    required_metrics: frozenset[str] = frozenset({"cpu"})
    # How old an idle verdict may be when a rule relies on it: a stop acts on fresh evidence only.
    max_evidence_age: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold_percent) and 0 < self.threshold_percent <= 100):
            raise ValueError(f"idle threshold must be in (0, 100] percent (got {self.threshold_percent})")
        _positive("idle window", self.window)
        if not (0 < self.min_coverage <= 1):
            raise ValueError(f"idle min_coverage must be in (0, 1] (got {self.min_coverage})")
        if self.period_seconds <= 0:
            raise ValueError(f"idle period_seconds must be positive (got {self.period_seconds})")
        if not self.required_metrics:
            raise ValueError("idle required_metrics must name at least one metric (normally 'cpu')")
        _positive("idle max_evidence_age", self.max_evidence_age)
        object.__setattr__(self, "statistic", IdleStatistic(self.statistic))

    @property
    def expected_datapoints(self) -> int:
        """Datapoints a full window holds at `period_seconds` resolution."""
        return max(1, int(self.window.total_seconds()) // self.period_seconds)


@dataclass(frozen=True)
class WorkingHours:
    """When automatic stops and reminders may happen, in the owner's own time zone (rule 6).

    `start == end` means the whole day; `start > end` is an overnight window (22:00-06:00), which belongs to
    the day it starts on. `workdays` uses Python's numbering, Monday = 0.
    """

    start: time = time(8, 0)
    end: time = time(20, 0)
    workdays: frozenset[int] = WEEKDAYS
    default_timezone: str = "UTC"  # for owners whose Slack time zone is unknown

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is not None:
                raise ValueError(f"working hours {name} is a wall-clock time and must not carry a time zone")
        if not self.workdays:
            raise ValueError("working hours need at least one workday")
        if not self.workdays <= frozenset(range(7)):
            raise ValueError(f"workdays must be 0 (Monday) to 6 (Sunday) (got {sorted(self.workdays)})")
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown default time zone {self.default_timezone!r}") from exc


@dataclass(frozen=True)
class BreakerPolicy:
    """Rule 7: how much the bot may do on its own in one cycle.

    The cap is `min(max_actions, max(min_allowance, floor(max_fleet_share * fleet)))`. With the default
    `min_allowance = 0` the share is strict, so in a fleet of fewer than four machines every automatic stop
    waits for an admin; raise `min_allowance` to 1 to let small teams have one stop per cycle.
    """

    max_actions: int = 10
    max_fleet_share: float = 0.25
    min_allowance: int = 0

    def __post_init__(self) -> None:
        if self.max_actions < 0:
            raise ValueError(f"breaker max_actions must not be negative (got {self.max_actions})")
        if not (0 <= self.max_fleet_share <= 1):
            raise ValueError(f"breaker max_fleet_share must be in [0, 1] (got {self.max_fleet_share})")
        if self.min_allowance < 0:
            raise ValueError(f"breaker min_allowance must not be negative (got {self.min_allowance})")

    def cap(self, fleet_size: int) -> int:
        """How many automatic actions a cycle may take in a managed fleet of `fleet_size` machines."""
        # Exact arithmetic on the share as written (0.29 * 100 is 29, not 28.999…).
        share = math.floor(Fraction(str(self.max_fleet_share)) * max(0, fleet_size))
        return min(self.max_actions, max(self.min_allowance, share))


def _decimal(value: Decimal | float | int | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class ApprovalPolicy:
    """Rule 9: what waits for a second person besides termination."""

    expiry: timedelta = timedelta(minutes=30)
    cost_per_hour: Decimal = Decimal("5.0")  # a launch or start above this $/h needs an approver
    user_max_instances: int = 4  # running machines a user may own before launches need approval
    user_max_cost_per_hour: Decimal = Decimal("10.0")  # $/h a user may run before launches need approval

    def __post_init__(self) -> None:
        _positive("approval expiry", self.expiry)
        for name in ("cost_per_hour", "user_max_cost_per_hour"):
            value = _decimal(getattr(self, name))
            if not value.is_finite() or value < 0:
                raise ValueError(f"approval {name} must be a non-negative amount (got {value})")
            object.__setattr__(self, name, value)
        if self.user_max_instances < 0:
            raise ValueError(f"user_max_instances must not be negative (got {self.user_max_instances})")


@dataclass(frozen=True)
class SafetyPolicy:
    """Every threshold of DESIGN §3 in one value."""

    min_age_command: timedelta = timedelta(minutes=5)
    min_age_idle: timedelta = timedelta(hours=2)
    idle: IdlePolicy = field(default_factory=IdlePolicy)
    grace: timedelta = timedelta(minutes=60)
    working_hours: WorkingHours = field(default_factory=WorkingHours)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    keep_short: timedelta = timedelta(hours=4)
    keep_long: timedelta = timedelta(days=1)
    max_keeps_per_machine: int = 3
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    def __post_init__(self) -> None:
        _not_negative("min_age_command", self.min_age_command)
        _not_negative("min_age_idle", self.min_age_idle)
        _not_negative("grace", self.grace)
        _positive("keep_short", self.keep_short)
        _positive("keep_long", self.keep_long)
        if self.max_keeps_per_machine < 0:
            raise ValueError(f"max_keeps_per_machine must not be negative (got {self.max_keeps_per_machine})")

    @property
    def approval_expiry(self) -> timedelta:
        return self.approvals.expiry


DEFAULT_POLICY = SafetyPolicy()
