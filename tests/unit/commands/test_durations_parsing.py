"""Durations and deadlines as people type them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.core.durations import format_duration, parse_duration, parse_when
from bot.core.validation import ValidationError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1w", timedelta(weeks=1)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("  45m ", timedelta(minutes=45)),
        ("2hours", timedelta(hours=2)),
        ("10 min", timedelta(minutes=10)),
        ("3H", timedelta(hours=3)),
        ("1day", timedelta(days=1)),
        ("0h5m", timedelta(minutes=5)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("90", "has no unit"),
        ("4y", "months or years"),
        ("1M", "months or years"),
        ("3months", "months or years"),
        ("4x", "unknown unit"),
        ("0m", "more than zero"),
        ("0h0m", "more than zero"),
        ("-4h", "must be positive"),
        ("1.5h", "whole numbers"),
        ("1h1h", "repeats the unit"),
        ("1h30", "has no unit"),
        ("h", "is not a duration"),
        ("4h!", "is not a duration"),
        ("9999999999h", "too long"),
        ("999999999w", "too long"),
        ("4 h x", "is not a duration"),
    ],
)
def test_parse_duration_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_duration(text)
    assert reason in caught.value.message


def test_parse_duration_bounds_are_the_callers() -> None:
    assert parse_duration("24h", maximum=timedelta(days=1)) == timedelta(days=1)
    with pytest.raises(ValidationError, match="longer than the limit of 1d"):
        parse_duration("25h", maximum=timedelta(days=1))
    with pytest.raises(ValidationError, match="shorter than the minimum of 10m"):
        parse_duration("5m", minimum=timedelta(minutes=10))


def test_duration_error_names_the_accepted_forms() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_duration("soon")
    assert "30m" in caught.value.message and "1h30m" in caught.value.message


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(minutes=90), "1h 30m"),
        (timedelta(hours=4), "4h"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "1d 2h 3m 4s"),
        (timedelta(weeks=2), "14d"),
        (timedelta(seconds=61.9), "1m 1s"),
        (-timedelta(minutes=5), "-5m"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@pytest.mark.parametrize("text", ["30m", "4h", "1h30m", "2d", "1w", "1d2h3m4s"])
def test_format_round_trips_through_parse(text: str) -> None:
    td = parse_duration(text)
    assert parse_duration(format_duration(td).replace(" ", "")) == td


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4h", datetime(2026, 6, 1, 16, 0, tzinfo=UTC)),
        ("+4h", datetime(2026, 6, 1, 16, 0, tzinfo=UTC)),
        ("+1h30m", datetime(2026, 6, 1, 13, 30, tzinfo=UTC)),
        # British Summer Time: local midnight is 23:00 UTC the day before.
        ("2026-12-01", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
        ("2026-07-01", datetime(2026, 6, 30, 23, 0, tzinfo=UTC)),
        ("2026-07-01T18:00", datetime(2026, 7, 1, 17, 0, tzinfo=UTC)),
        ("2026-07-01 18:00:30", datetime(2026, 7, 1, 17, 0, 30, tzinfo=UTC)),
        ("2026-07-01T18:00Z", datetime(2026, 7, 1, 18, 0, tzinfo=UTC)),
        ("2026-07-01T18:00+02:00", datetime(2026, 7, 1, 16, 0, tzinfo=UTC)),
        ("2026-07-01T18:00-0500", datetime(2026, 7, 1, 23, 0, tzinfo=UTC)),
    ],
)
def test_parse_when_accepts(text: str, expected: datetime) -> None:
    result = parse_when(text, NOW, LONDON)
    assert result == expected
    assert result.tzinfo is UTC


def test_parse_when_defaults_to_nows_zone() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=9)))
    assert parse_when("2026-06-02", now) == datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("never", "not a duration or a date"),
        ("tomorrow", "not a duration or a date"),
        ("2026-02-30", "not a real date"),
        ("2026-13-01T10:00", "not a real date and time"),
        ("2026-05-01", "in the past"),
        ("2026-06-01T11:59Z", "in the past"),
        ("01/12/2026", "not a duration or a date"),
        ("9999-12-31T23:59-05:00", "out of range"),
        ("", "not a duration or a date"),
    ],
)
def test_parse_when_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_when(text, NOW, LONDON)
    assert reason in caught.value.message


def test_parse_when_error_lists_the_accepted_forms() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_when("next week", NOW)
    message = caught.value.message
    assert "4h" in message and "2026-12-01" in message and "+02:00" in message


def test_parse_when_maximum() -> None:
    assert parse_when("7d", NOW, maximum=timedelta(days=7)) == NOW + timedelta(days=7)
    with pytest.raises(ValidationError, match="more than 7d away"):
        parse_when("2026-07-01", NOW, maximum=timedelta(days=7))
    with pytest.raises(ValidationError, match="longer than the limit"):
        parse_when("8d", NOW, maximum=timedelta(days=7))


def test_parse_when_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_when("4h", datetime(2026, 6, 1, 12, 0))
