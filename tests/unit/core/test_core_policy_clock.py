"""Policy defaults match DESIGN §3 and reject bad settings at start-up; clocks move only when told."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from bot.core.clock import Clock, FixedClock, SystemClock, as_utc, require_utc
from bot.core.policy import (
    DEFAULT_POLICY,
    WEEKDAYS,
    ApprovalPolicy,
    BreakerPolicy,
    IdlePolicy,
    IdleStatistic,
    SafetyPolicy,
    WorkingHours,
)


def test_defaults_are_the_designs() -> None:
    p = DEFAULT_POLICY
    assert p.min_age_command == timedelta(minutes=5)
    assert p.min_age_idle == timedelta(hours=2)
    assert p.idle.threshold_percent == 5.0
    assert p.idle.window == timedelta(minutes=60)
    assert p.idle.min_coverage == 0.8
    assert p.idle.statistic is IdleStatistic.MAX
    assert p.idle.expected_datapoints == 12
    assert p.grace == timedelta(minutes=60)
    assert (p.working_hours.start, p.working_hours.end) == (time(8), time(20))
    assert p.working_hours.workdays == WEEKDAYS == frozenset(range(5))
    assert (p.breaker.max_actions, p.breaker.max_fleet_share) == (10, 0.25)
    assert (p.keep_short, p.keep_long) == (timedelta(hours=4), timedelta(days=1))
    assert p.max_keeps_per_machine == 3
    assert p.approval_expiry == timedelta(minutes=30)
    assert p.approvals.cost_per_hour == Decimal("5.0")
    assert p.approvals.user_max_instances == 4
    assert p.approvals.user_max_cost_per_hour == Decimal("10.0")


@pytest.mark.parametrize(
    ("fleet", "cap"),
    [(0, 0), (3, 0), (4, 1), (7, 1), (8, 2), (39, 9), (40, 10), (41, 10), (1000, 10)],
)
def test_breaker_cap_is_count_and_share(fleet: int, cap: int) -> None:
    assert BreakerPolicy().cap(fleet) == cap


def test_breaker_share_uses_exact_arithmetic() -> None:
    assert BreakerPolicy(max_actions=100, max_fleet_share=0.29).cap(100) == 29
    assert BreakerPolicy(min_allowance=1).cap(2) == 1
    assert BreakerPolicy(max_actions=0, min_allowance=1).cap(100) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: IdlePolicy(threshold_percent=0),
        lambda: IdlePolicy(threshold_percent=float("nan")),
        lambda: IdlePolicy(window=timedelta(0)),
        lambda: IdlePolicy(min_coverage=1.5),
        lambda: IdlePolicy(period_seconds=0),
        lambda: IdlePolicy(required_metrics=frozenset()),
        lambda: IdlePolicy(statistic="median"),  # type: ignore[arg-type]
        lambda: WorkingHours(workdays=frozenset()),
        lambda: WorkingHours(workdays=frozenset({7})),
        lambda: WorkingHours(start=time(8, tzinfo=UTC)),
        lambda: WorkingHours(default_timezone="Mars/Olympus"),
        lambda: BreakerPolicy(max_actions=-1),
        lambda: BreakerPolicy(max_fleet_share=1.5),
        lambda: BreakerPolicy(min_allowance=-1),
        lambda: ApprovalPolicy(expiry=timedelta(0)),
        lambda: ApprovalPolicy(cost_per_hour=Decimal(-1)),
        lambda: ApprovalPolicy(user_max_instances=-1),
        lambda: SafetyPolicy(min_age_command=timedelta(minutes=-1)),
        lambda: SafetyPolicy(keep_short=timedelta(0)),
        lambda: SafetyPolicy(max_keeps_per_machine=-1),
    ],
)
def test_bad_settings_fail_when_the_policy_is_built(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_statistic_accepts_its_config_text_and_amounts_accept_floats() -> None:
    assert IdlePolicy(statistic="mean").statistic is IdleStatistic.MEAN  # type: ignore[arg-type]
    assert ApprovalPolicy(cost_per_hour=2.5).cost_per_hour == Decimal("2.5")  # type: ignore[arg-type]


def test_fixed_clock_moves_only_forward() -> None:
    clock = FixedClock(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
    assert isinstance(clock, Clock)
    assert clock.advance(minutes=61) == datetime(2026, 3, 4, 11, 1, tzinfo=UTC)
    assert clock.advance(timedelta(hours=1), minutes=1) == datetime(2026, 3, 4, 12, 2, tzinfo=UTC)
    assert clock.set(datetime(2026, 3, 5, tzinfo=UTC)) == datetime(2026, 3, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(minutes=-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime(2026, 3, 4, tzinfo=UTC))


def test_fixed_clock_normalises_to_utc_and_refuses_naive_times() -> None:
    berlin_winter = timezone(timedelta(hours=1))
    assert FixedClock(datetime(2026, 3, 4, 11, 0, tzinfo=berlin_winter)).now() == datetime(
        2026, 3, 4, 10, 0, tzinfo=UTC
    )
    assert FixedClock(datetime(2026, 3, 4, 11, 0, tzinfo=berlin_winter)).now().tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 3, 4))


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert isinstance(SystemClock(), Clock)
    assert now.tzinfo is UTC


def test_utc_helpers() -> None:
    naive = datetime(2026, 3, 4, 10, 0)
    assert as_utc(naive) == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert require_utc(datetime(2026, 3, 4, 5, 0, tzinfo=timezone(timedelta(hours=-5)))) == as_utc(naive)
    with pytest.raises(ValueError, match="since must be timezone-aware"):
        require_utc(naive, "since")
