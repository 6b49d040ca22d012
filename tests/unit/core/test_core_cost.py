"""Cost maths on hand-computed histories: stop/start cycles, a price change mid-run, days, months, savings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.cost import (
    BILLED_STATES,
    Cost,
    InstanceHistory,
    PriceChange,
    StateChange,
    aggregate,
    cost_by_day,
    cost_by_lifecycle,
    cost_by_owner,
    cost_by_project,
    cost_rows,
    hourly_rate_at,
    hours_between,
    instance_cost,
    project_month_end,
    round_usd,
    savings,
    segments,
    total,
    usd,
)
from providers.base import InstanceState, Lifecycle

S = InstanceState
D = Decimal


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# Machine A (alice/vision, on-demand, $1.00/h, then $1.50/h from 15:31):
#   Mon 2 Mar  08:00 running · 10:00 stopping · 10:02 stopped · 13:00 starting · 13:01 running
#              15:31 price -> 1.50 · 17:01 stopped by the bot
#   Tue 3 Mar  09:00 running (the owner started it again)
# Billed: 08:00-10:00 2 h x 1.00 = 2.00; 13:01-15:31 2.5 h x 1.00 = 2.50; 15:31-17:01 1.5 h x 1.50 = 2.25;
#         Tue 09:00-10:00 1 h x 1.50 = 1.50. Total until Tue 10:00: 8.25 for 7 h.
A = InstanceHistory(
    "i-a",
    (
        StateChange(utc(2026, 3, 2, 8, 0), S.RUNNING, D("1.00")),
        StateChange(utc(2026, 3, 2, 10, 0), S.STOPPING),
        StateChange(utc(2026, 3, 2, 10, 2), S.STOPPED),
        StateChange(utc(2026, 3, 2, 13, 0), S.STARTING),
        StateChange(utc(2026, 3, 2, 13, 1), S.RUNNING),
        StateChange(utc(2026, 3, 2, 17, 1), S.STOPPED, by_bot=True),
        StateChange(utc(2026, 3, 3, 9, 0), S.RUNNING),
    ),
    (PriceChange(utc(2026, 3, 2, 15, 31), D("1.50")),),
    owner="U-alice",
    project="vision",
)

# Machine B (bob/nlp, spot): running from midnight before any price is known, $0.30 from 01:00, $0.45 from
# 03:00, terminated at 04:00. Billed: 1 h unpriced + 2 h x 0.30 + 1 h x 0.45 = 1.05 for 4 h.
B = InstanceHistory(
    "i-b",
    (StateChange(utc(2026, 3, 2, 0, 0), S.RUNNING), StateChange(utc(2026, 3, 2, 4, 0), S.TERMINATED)),
    (PriceChange(utc(2026, 3, 2, 3, 0), D("0.45")), PriceChange(utc(2026, 3, 2, 1, 0), D("0.30"))),
    owner="U-bob",
    project="nlp",
    lifecycle=Lifecycle.SPOT,
)

MON, TUE_10 = utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 10, 0)


def test_stop_start_cycles_with_a_price_change_mid_run() -> None:
    cost = instance_cost(A, MON, TUE_10)
    assert cost.usd == D("8.25")
    assert cost.running_hours == D(7)
    assert cost.unpriced_hours == 0


def test_a_range_clips_the_intervals() -> None:
    # 09:00-10:00 1.00 + 13:01-15:31 2.50 + 15:31-16:01 0.5 h x 1.50 = 0.75
    assert instance_cost(A, utc(2026, 3, 2, 9, 0), utc(2026, 3, 2, 16, 1)).usd == D("4.25")
    assert instance_cost(A, utc(2026, 3, 2, 10, 0), utc(2026, 3, 2, 13, 1)) == Cost()


def test_unpriced_time_is_reported_not_guessed() -> None:
    cost = instance_cost(B, MON, TUE_10)
    assert cost.usd == D("1.05")
    assert cost.running_hours == D(4)
    assert cost.unpriced_hours == D(1)


def test_segments_merge_equal_neighbours_and_show_state_and_price() -> None:
    parts = segments(A, utc(2026, 3, 2, 7, 0), utc(2026, 3, 2, 13, 30))
    assert [(p.start.hour, p.start.minute, p.state, p.hourly_usd) for p in parts] == [
        (7, 0, None, None),
        (8, 0, S.RUNNING, D("1.00")),
        (10, 0, S.STOPPING, D("1.00")),
        (10, 2, S.STOPPED, D("1.00")),
        (13, 0, S.STARTING, D("1.00")),
        (13, 1, S.RUNNING, D("1.00")),
    ]
    assert parts[-1].end == utc(2026, 3, 2, 13, 30)
    assert parts[1].hours == D(2)


def test_only_running_bills_unless_told_otherwise() -> None:
    assert S.STOPPING not in BILLED_STATES
    with_stopping = instance_cost(
        A, MON, TUE_10, billed_states=frozenset({S.RUNNING, S.STOPPING, S.STARTING})
    )
    # + 2 min stopping + 1 min starting at $1.00/h = 0.05
    assert with_stopping.usd == D("8.30")


def test_unknown_state_keeps_the_last_known_one() -> None:
    history = InstanceHistory(
        "i-u",
        (
            StateChange(utc(2026, 3, 2, 0, 0), S.RUNNING, D("2")),
            StateChange(utc(2026, 3, 2, 1, 0), S.UNKNOWN),
            StateChange(utc(2026, 3, 2, 2, 0), S.STOPPED),
        ),
    )
    assert instance_cost(history, MON, TUE_10).usd == D(4)


def test_price_change_wins_a_tie_with_a_transitions_price() -> None:
    at = utc(2026, 3, 2, 0, 0)
    history = InstanceHistory("i-t", (StateChange(at, S.RUNNING, D("1")),), (PriceChange(at, D("3")),))
    assert instance_cost(history, at, at + timedelta(hours=1)).usd == D(3)


def test_floats_from_storage_become_exact_decimals() -> None:
    history = InstanceHistory("i-f", (StateChange(utc(2026, 3, 2, 0, 0), S.RUNNING, 0.1),))  # type: ignore[arg-type]
    cost = instance_cost(history, MON, utc(2026, 3, 2, 3, 0))
    assert cost.usd == D("0.3")


def test_aggregation_by_owner_project_day_and_lifecycle() -> None:
    rows = cost_rows([A, B], MON, TUE_10)
    owners = cost_by_owner(rows)
    assert {k: (v.usd, v.running_hours, v.unpriced_hours) for k, v in owners.items()} == {
        "U-alice": (D("8.25"), D(7), D(0)),
        "U-bob": (D("1.05"), D(4), D(1)),
    }
    assert {k: v.usd for k, v in cost_by_project(rows).items()} == {"vision": D("8.25"), "nlp": D("1.05")}
    assert {k: v.usd for k, v in cost_by_day(rows).items()} == {
        date(2026, 3, 2): D("6.75") + D("1.05"),
        date(2026, 3, 3): D("1.50"),
    }
    assert cost_by_lifecycle(rows)[Lifecycle.SPOT].usd == D("1.05")
    by_owner_day = aggregate(rows, lambda r: (r.owner, r.day))
    assert by_owner_day[("U-alice", date(2026, 3, 3))].usd == D("1.50")
    assert total(rows).usd == D("9.30")


def test_days_follow_the_given_zone() -> None:
    # $2/h from 22:30 to 00:30 UTC: in UTC 1.5 h on the 2nd and 0.5 h on the 3rd; in Berlin (UTC+1) the
    # first half hour falls on the 2nd and the rest on the 3rd.
    history = InstanceHistory(
        "i-z",
        (
            StateChange(utc(2026, 3, 2, 22, 30), S.RUNNING, D(2)),
            StateChange(utc(2026, 3, 3, 0, 30), S.STOPPED),
        ),
    )
    in_utc = cost_by_day(cost_rows([history], MON, TUE_10))
    assert {k: v.usd for k, v in in_utc.items()} == {date(2026, 3, 2): D(3), date(2026, 3, 3): D(1)}
    berlin = cost_by_day(cost_rows([history], MON, TUE_10, tz=ZoneInfo("Europe/Berlin")))
    assert {k: v.usd for k, v in berlin.items()} == {date(2026, 3, 2): D(1), date(2026, 3, 3): D(3)}


def test_a_dst_day_has_twenty_three_hours() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    history = InstanceHistory("i-d", (StateChange(utc(2026, 3, 28, 0, 0), S.RUNNING, D(1)),))
    rows = cost_rows([history], utc(2026, 3, 28, 0, 0), utc(2026, 3, 31, 0, 0), tz=berlin)
    days = {k: v.running_hours for k, v in cost_by_day(rows).items()}
    assert days[date(2026, 3, 29)] == D(23)
    assert days[date(2026, 3, 30)] == D(24)


def test_month_end_projection() -> None:
    # Running at $0.50/h since 1 March; a second machine ran 10 h at $2 and is stopped.
    # On 20 March 12:00 UTC: spent 468 h x 0.50 + 20 = 254; 276 h left at $0.50/h -> 392.
    running = InstanceHistory("i-r", (StateChange(utc(2026, 3, 1, 0, 0), S.RUNNING, D("0.50")),))
    stopped = InstanceHistory(
        "i-s",
        (
            StateChange(utc(2026, 3, 5, 0, 0), S.RUNNING, D(2)),
            StateChange(utc(2026, 3, 5, 10, 0), S.STOPPED),
        ),
    )
    # Last month's running time is not this month's spend.
    older = InstanceHistory(
        "i-o",
        (StateChange(utc(2026, 2, 27, 0, 0), S.RUNNING, D(1)), StateChange(utc(2026, 3, 1, 1, 0), S.STOPPED)),
    )
    now = utc(2026, 3, 20, 12, 0)
    projection = project_month_end([running, stopped, older], now)
    assert projection.month_start == utc(2026, 3, 1, 0, 0)
    assert projection.month_end == utc(2026, 4, 1, 0, 0)
    assert projection.spent.usd == D(234) + D(20) + D(1)
    assert projection.hourly_now == D("0.50")
    assert projection.hours_left == D(276)
    assert projection.projected_usd == D(255) + D(138)


def test_month_end_projection_in_a_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    running = InstanceHistory("i-r", (StateChange(utc(2026, 3, 1, 0, 0), S.RUNNING, D(1)),))
    projection = project_month_end([running], utc(2026, 3, 31, 21, 0), tz=berlin)
    assert projection.month_start == utc(2026, 2, 28, 23, 0)
    assert projection.month_end == utc(2026, 3, 31, 22, 0)  # midnight CEST
    assert projection.hours_left == D(1)


def test_hourly_rate_at() -> None:
    assert hourly_rate_at([A, B], utc(2026, 3, 2, 3, 30)) == D("0.45")
    assert hourly_rate_at([A, B], utc(2026, 3, 2, 16, 0)) == D("1.50")
    assert hourly_rate_at([A, B], utc(2026, 3, 2, 11, 0)) == 0
    assert hourly_rate_at([B], utc(2026, 3, 2, 0, 30)) == 0  # running but unpriced


def test_savings_count_from_the_bots_stop_until_the_owner_starts_again() -> None:
    (saving,) = savings([A, B], MON, TUE_10)
    assert saving.instance_id == "i-a"
    assert saving.stopped_at == utc(2026, 3, 2, 17, 1)
    assert saving.resumed_at == utc(2026, 3, 3, 9, 0)
    # 15 h 59 min at $1.50/h
    assert saving.cost.running_hours == D(959) / D(60)
    assert saving.usd == D("23.975")
    assert round_usd(saving.usd) == D("23.98")


def test_savings_run_until_now_while_still_stopped_and_stop_at_termination() -> None:
    still = savings([A], MON, utc(2026, 3, 2, 19, 1))
    assert still[0].resumed_at is None
    assert still[0].usd == D(3)  # 2 h x 1.50
    terminated = InstanceHistory(
        "i-x",
        (
            StateChange(utc(2026, 3, 2, 0, 0), S.RUNNING, D(1)),
            StateChange(utc(2026, 3, 2, 1, 0), S.STOPPING, by_bot=True),
            StateChange(utc(2026, 3, 2, 1, 1), S.STOPPED, by_bot=True),
            StateChange(utc(2026, 3, 2, 5, 0), S.TERMINATED),
        ),
    )
    (one,) = savings([terminated], MON, TUE_10)
    assert one.stopped_at == utc(2026, 3, 2, 1, 0)
    assert one.resumed_at == utc(2026, 3, 2, 5, 0)
    assert one.usd == D(4)


def test_a_person_stopping_a_machine_saves_nothing_for_the_bot() -> None:
    person = InstanceHistory(
        "i-p",
        (StateChange(utc(2026, 3, 2, 0, 0), S.RUNNING, D(1)), StateChange(utc(2026, 3, 2, 1, 0), S.STOPPED)),
    )
    assert savings([person], MON, TUE_10) == []


def test_savings_are_clipped_to_the_range() -> None:
    (saving,) = savings([A], utc(2026, 3, 3, 0, 0), TUE_10)
    assert saving.usd == D(9) * D("1.50")  # 00:00-09:00 on Tuesday


def test_helpers() -> None:
    assert usd(0.1) == D("0.1")
    assert usd("2.50") == D("2.50")
    with pytest.raises(ValueError, match="finite"):
        usd(float("inf"))
    assert round_usd(D("2.345")) == D("2.35")
    assert round_usd(D("2.344")) == D("2.34")
    assert hours_between(MON, MON - timedelta(hours=1)) == 0
    assert hours_between(MON, MON + timedelta(minutes=90)) == D("1.5")


def test_ranges_are_checked() -> None:
    with pytest.raises(ValueError, match="before since"):
        instance_cost(A, TUE_10, MON)
    with pytest.raises(ValueError, match="timezone-aware"):
        instance_cost(A, datetime(2026, 3, 2), TUE_10)


transitions = st.lists(
    st.tuples(
        st.integers(0, 72 * 60),
        st.sampled_from([S.RUNNING, S.STOPPED, S.STOPPING, S.STARTING, S.UNKNOWN]),
        st.none() | st.decimals(min_value=0, max_value=40, places=3),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(changes=transitions, cut=st.integers(0, 72 * 60))
def test_cost_is_additive_over_adjacent_ranges_and_days(
    changes: list[tuple[int, InstanceState, Decimal | None]], cut: int
) -> None:
    history = InstanceHistory(
        "i-h", tuple(StateChange(MON + timedelta(minutes=m), s, p) for m, s, p in changes)
    )
    end = MON + timedelta(hours=72)
    middle = MON + timedelta(minutes=cut)
    whole = instance_cost(history, MON, end)
    assert instance_cost(history, MON, middle) + instance_cost(history, middle, end) == whole
    assert total(cost_rows([history], MON, end, tz=ZoneInfo("America/New_York"))) == whole
    assert whole.usd >= 0 and whole.unpriced_hours <= whole.running_hours <= D(72)
