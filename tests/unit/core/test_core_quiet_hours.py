"""Working hours in the owner's zone, across DST changes in two hemispheres' worth of rules."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.policy import WorkingHours
from bot.core.quiet_hours import (
    check_working_time,
    describe_hours,
    is_working_time,
    next_working_time,
    resolve_timezone,
)
from bot.core.safety import Action, Rule, Verdict, evaluate
from tests.unit.core.core_factories import ZONES, auto_context, ready_facts

HOURS = WorkingHours()
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# Europe/Berlin springs forward on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST) and falls back on 2026-10-25.
# Working hours are Monday to Friday, so the Monday after each change shows the new offset.
@pytest.mark.parametrize(
    ("instant", "within"),
    [
        (utc(2026, 3, 27, 6, 59), False),  # Fri 07:59 CET
        (utc(2026, 3, 27, 7, 0), True),  # Fri 08:00 CET
        (utc(2026, 3, 27, 18, 59), True),  # Fri 19:59 CET
        (utc(2026, 3, 27, 19, 0), False),  # Fri 20:00 CET
        (utc(2026, 3, 29, 10, 0), False),  # the DST Sunday itself
        (utc(2026, 3, 30, 5, 59), False),  # Mon 07:59 CEST
        (utc(2026, 3, 30, 6, 0), True),  # Mon 08:00 CEST: one UTC hour earlier than the Friday before
        (utc(2026, 3, 30, 17, 59), True),  # Mon 19:59 CEST
        (utc(2026, 3, 30, 18, 0), False),  # Mon 20:00 CEST
        (utc(2026, 10, 26, 6, 30), False),  # Mon 07:30 CET, after falling back
        (utc(2026, 10, 26, 7, 0), True),  # Mon 08:00 CET
    ],
)
def test_berlin_across_dst(instant: datetime, within: bool) -> None:
    assert is_working_time(instant, BERLIN, HOURS) is within


# America/New_York springs forward on Sunday 2026-03-08 and falls back on Sunday 2026-11-01.
@pytest.mark.parametrize(
    ("instant", "within"),
    [
        (utc(2026, 3, 6, 12, 59), False),  # Fri 07:59 EST
        (utc(2026, 3, 6, 13, 0), True),  # Fri 08:00 EST
        (utc(2026, 3, 9, 11, 59), False),  # Mon 07:59 EDT
        (utc(2026, 3, 9, 12, 0), True),  # Mon 08:00 EDT
        (utc(2026, 3, 10, 0, 0), False),  # Mon 20:00 EDT
        (utc(2026, 3, 9, 23, 59), True),  # Mon 19:59 EDT
        (utc(2026, 10, 30, 12, 0), True),  # Fri 08:00 EDT
        (utc(2026, 11, 2, 12, 0), False),  # Mon 07:00 EST, after falling back
        (utc(2026, 11, 2, 13, 0), True),  # Mon 08:00 EST
        (utc(2026, 11, 3, 0, 59), True),  # Mon 19:59 EST
        (utc(2026, 11, 3, 1, 0), False),  # Mon 20:00 EST
    ],
)
def test_new_york_across_dst(instant: datetime, within: bool) -> None:
    assert is_working_time(instant, NEW_YORK, HOURS) is within


def test_next_working_time_skips_the_weekend_and_the_dst_change() -> None:
    friday_evening = utc(2026, 3, 27, 19, 30)  # Fri 20:30 CET
    assert next_working_time(friday_evening, BERLIN, HOURS) == utc(2026, 3, 30, 6, 0)  # Mon 08:00 CEST
    new_york_saturday = utc(2026, 10, 31, 15, 0)
    assert next_working_time(new_york_saturday, NEW_YORK, HOURS) == utc(2026, 11, 2, 13, 0)  # Mon 08:00 EST


def test_next_working_time_is_now_inside_hours() -> None:
    inside = utc(2026, 3, 30, 9, 0)
    assert next_working_time(inside, BERLIN, HOURS) == inside


def test_a_start_inside_the_spring_forward_gap_opens_at_the_jump() -> None:
    # Working from 02:30 on Sundays: on 2026-03-29 Berlin's clocks go from 02:00 straight to 03:00.
    hours = WorkingHours(start=time(2, 30), end=time(12, 0), workdays=frozenset({6}))
    saturday = utc(2026, 3, 28, 12, 0)
    assert next_working_time(saturday, BERLIN, hours) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert is_working_time(utc(2026, 3, 29, 1, 0), BERLIN, hours)
    assert not is_working_time(utc(2026, 3, 29, 0, 59), BERLIN, hours)


def test_a_start_in_the_repeated_hour_opens_at_its_first_occurrence() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01; a 01:30 start opens at the first 01:30 (EDT).
    hours = WorkingHours(start=time(1, 30), end=time(12, 0), workdays=frozenset({6}))
    assert next_working_time(utc(2026, 10, 31, 20, 0), NEW_YORK, hours) == utc(2026, 11, 1, 5, 30)


def test_overnight_windows_belong_to_the_day_they_start() -> None:
    night = WorkingHours(start=time(22, 0), end=time(6, 0), workdays=frozenset({4}))  # Friday night
    assert is_working_time(utc(2026, 3, 6, 23, 0), ZoneInfo("UTC"), night)  # Fri 23:00
    assert is_working_time(utc(2026, 3, 7, 5, 59), ZoneInfo("UTC"), night)  # Sat 05:59, still Friday's night
    assert not is_working_time(utc(2026, 3, 7, 6, 0), ZoneInfo("UTC"), night)
    assert not is_working_time(utc(2026, 3, 7, 23, 0), ZoneInfo("UTC"), night)  # Saturday night
    assert not is_working_time(utc(2026, 3, 6, 5, 0), ZoneInfo("UTC"), night)  # Thursday's night


def test_equal_start_and_end_means_all_day() -> None:
    always = WorkingHours(start=time(0), end=time(0), workdays=frozenset(range(7)))
    assert is_working_time(utc(2026, 3, 8, 3, 0), NEW_YORK, always)
    assert describe_hours(always) == "all day Mon-Sun"


def test_resolve_timezone() -> None:
    assert resolve_timezone("Europe/Berlin").problem is None
    unknown = resolve_timezone("Mars/Olympus", "Europe/Berlin")
    assert unknown.name == "Europe/Berlin"
    assert unknown.problem == "time zone 'Mars/Olympus' is unknown, so Europe/Berlin was used"
    assert resolve_timezone("../../etc/passwd").name == "UTC"
    assert resolve_timezone(None).problem == "the owner's time zone is unknown, so UTC was used"
    both_bad = resolve_timezone("Nowhere/City", "Also/Nowhere")
    assert both_bad.name == "UTC"
    assert both_bad.problem is not None and "UTC was used" in both_bad.problem


def test_check_working_time_labels_the_owners_clock() -> None:
    check = check_working_time(utc(2026, 3, 28, 9, 15), "Europe/Berlin", HOURS)
    assert not check.within
    assert check.local_label == "Sat 10:15 CET"
    assert check.next_start == utc(2026, 3, 30, 6, 0)


def test_describe_hours() -> None:
    assert describe_hours(HOURS) == "08:00-20:00 Mon-Fri"
    assert describe_hours(WorkingHours(workdays=frozenset({0, 2}))) == "08:00-20:00 Mon,Wed"


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
    start=st.times(),
    end=st.times(),
    workdays=st.frozensets(st.integers(0, 6), min_size=1),
)
def test_next_working_time_is_the_first_working_instant(
    instant: datetime, zone: str, start: time, end: time, workdays: frozenset[int]
) -> None:
    hours = WorkingHours(start=start, end=end, workdays=workdays)
    tz = ZoneInfo(zone)
    opening = next_working_time(instant, tz, hours)
    assert opening >= instant
    assert is_working_time(opening, tz, hours)
    assert opening - instant <= timedelta(days=8)
    if opening > instant:
        # Nothing before the opening was working time: the second before it, and a grid back to `instant`.
        assert not is_working_time(opening - timedelta(seconds=1), tz, hours)
        probe = instant
        while probe < opening:
            assert not is_working_time(probe, tz, hours), probe
            probe += timedelta(minutes=17)


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # 06:30 UTC: Fri 27 Mar 07:30 CET (quiet) / Mon 30 Mar 08:30 CEST (working).
        ("Europe/Berlin", utc(2026, 3, 27, 6, 30), utc(2026, 3, 30, 6, 30)),
        # 12:30 UTC: Fri 6 Mar 07:30 EST (quiet) / Mon 9 Mar 08:30 EDT (working).
        ("America/New_York", utc(2026, 3, 6, 12, 30), utc(2026, 3, 9, 12, 30)),
    ],
)
def test_the_same_utc_time_is_quiet_before_and_working_after_spring_forward(
    zone: str, before: datetime, after: datetime
) -> None:
    def verdict_at(now: datetime) -> Verdict:
        return evaluate(Action.IDLE_STOP, ready_facts(now=now, owner_timezone=zone), auto_context(now=now))

    held = verdict_at(before)
    assert held.rule is Rule.QUIET_HOURS
    assert "07:30" in held.reason
    assert verdict_at(after).allowed


def test_new_york_autumn_fall_back_moves_the_morning_an_hour_later_in_utc() -> None:
    def verdict_at(now: datetime) -> Verdict:
        return evaluate(
            Action.IDLE_STOP, ready_facts(now=now, owner_timezone="America/New_York"), auto_context(now=now)
        )

    assert verdict_at(utc(2026, 10, 30, 12, 30)).allowed  # Fri 08:30 EDT
    assert verdict_at(utc(2026, 11, 2, 12, 30)).rule is Rule.QUIET_HOURS  # Mon 07:30 EST
    assert verdict_at(utc(2026, 11, 2, 13, 30)).allowed  # Mon 08:30 EST
