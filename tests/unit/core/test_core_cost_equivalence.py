"""The single-pass cost maths gives exactly what the plain definition gives.

`bot.core.cost` walks a per-history timeline and cuts a range into days once, for speed (issue 6). This
file keeps the straightforward definition it replaced (cut at every change, look up state and price at
each cut, split each stretch at its own local midnights) as an oracle, and compares the two on random
histories: same segments, same costs to the last digit, same rows, same savings, same hourly rate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import cost
from bot.core.cost import (
    BILLED_STATES,
    Cost,
    CostRow,
    InstanceHistory,
    PriceChange,
    Saving,
    Segment,
    StateChange,
)
from providers.base import InstanceState, Lifecycle

S = InstanceState
MON = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the week Europe's clocks move lies 3-4 weeks later
ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # half-hour DST
    ZoneInfo("America/Santiago"),  # DST changes at midnight
    ZoneInfo("Asia/Kolkata"),
]
STOPPED = frozenset({S.STOPPING, S.STOPPED})
SAVING_ENDS = frozenset({S.STARTING, S.RUNNING, S.TERMINATING, S.TERMINATED})


# --- the oracle: the plain definition -----------------------------------------------------------------


def _state_points(h: InstanceHistory) -> list[tuple[datetime, InstanceState]]:
    return [(c.at, c.state) for c in h.changes if c.state is not S.UNKNOWN]


def _price_points(h: InstanceHistory) -> list[tuple[datetime, Decimal]]:
    points = [(c.at, c.hourly_usd) for c in h.changes if c.hourly_usd is not None]
    points += [(p.at, p.hourly_usd) for p in h.prices]
    return sorted(points, key=lambda p: p[0])


def _last_at(points: list[tuple[datetime, object]], when: datetime) -> int:
    return bisect_right(points, when, key=lambda p: p[0]) - 1


def ref_segments(h: InstanceHistory, since: datetime, until: datetime) -> list[Segment]:
    states, prices = _state_points(h), _price_points(h)
    inner = {at for at, _ in states if since < at < until} | {at for at, _ in prices if since < at < until}
    out: list[Segment] = []
    for start, end in pairwise(sorted({since, until} | inner)):
        si, pi = _last_at(states, start), _last_at(prices, start)  # type: ignore[arg-type]
        state = states[si][1] if si >= 0 else None
        price = prices[pi][1] if pi >= 0 else None
        if out and out[-1].state == state and out[-1].hourly_usd == price:
            out[-1] = Segment(out[-1].start, end, state, price)
        else:
            out.append(Segment(start, end, state, price))
    return out


def _cost_of(seg: Segment, billed: frozenset[InstanceState]) -> Cost:
    if seg.state not in billed or seg.end <= seg.start:
        return Cost()
    micro = (seg.end - seg.start) // timedelta(microseconds=1)
    return (
        Cost(Decimal(0), micro, micro) if seg.hourly_usd is None else Cost(seg.hourly_usd * micro, micro, 0)
    )


def ref_instance_cost(
    h: InstanceHistory, since: datetime, until: datetime, billed: frozenset[InstanceState] = BILLED_STATES
) -> Cost:
    result = Cost()
    for seg in ref_segments(h, since, until):
        result += _cost_of(seg, billed)
    return result


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _split_by_day(seg: Segment, tz: tzinfo) -> Iterator[tuple[date, Segment]]:
    start = seg.start
    while start < seg.end:
        day = start.astimezone(tz).date()
        boundary = _midnight(day + timedelta(days=1), tz)
        if boundary <= start:
            boundary = _midnight(day + timedelta(days=2), tz)
        end = min(boundary, seg.end)
        yield day, Segment(start, end, seg.state, seg.hourly_usd)
        start = end


def ref_cost_rows(
    histories: Iterable[InstanceHistory],
    since: datetime,
    until: datetime,
    tz: tzinfo = UTC,
    billed: frozenset[InstanceState] = BILLED_STATES,
) -> list[CostRow]:
    rows: list[CostRow] = []
    for h in histories:
        by_day: dict[date, Cost] = defaultdict(Cost)
        for seg in ref_segments(h, since, until):
            if seg.state in billed:
                for day, part in _split_by_day(seg, tz):
                    by_day[day] += _cost_of(part, billed)
        rows.extend(
            CostRow(h.instance_id, h.owner, h.project, h.lifecycle, d, c) for d, c in sorted(by_day.items())
        )
    return rows


def ref_hourly_rate_at(histories: Iterable[InstanceHistory], when: datetime) -> Decimal:
    rate = Decimal(0)
    for h in histories:
        states, prices = _state_points(h), _price_points(h)
        si, pi = _last_at(states, when), _last_at(prices, when)  # type: ignore[arg-type]
        if si >= 0 and states[si][1] in BILLED_STATES and pi >= 0:
            rate += prices[pi][1]
    return rate


def ref_savings(histories: Iterable[InstanceHistory], since: datetime, until: datetime) -> list[Saving]:
    out = []
    for h in histories:
        changes = _state_points(h)
        flags = [c for c in h.changes if c.state is not S.UNKNOWN]
        i = 0
        while i < len(changes):
            at, state = changes[i]
            if not (flags[i].by_bot and state in STOPPED):
                i += 1
                continue
            j = i + 1
            while j < len(changes) and changes[j][1] not in SAVING_ENDS:
                j += 1
            resumed = changes[j][0] if j < len(changes) else None
            end = min(resumed, until) if resumed is not None else until
            window_start, window_end = max(at, since), min(end, until)
            saved = Cost()
            if window_start < window_end:
                as_running = InstanceHistory(
                    h.instance_id,
                    (StateChange(window_start, S.RUNNING),),
                    tuple(PriceChange(p_at, price) for p_at, price in _price_points(h)),
                )
                saved = ref_instance_cost(as_running, window_start, window_end)
            if window_start < window_end or since <= at < until:
                stop_end = resumed if resumed is not None and resumed <= until else None
                out.append(Saving(h.instance_id, h.owner, h.project, at, stop_end, saved))
            i = j
    return out


# --- random histories ----------------------------------------------------------------------------------

minutes = st.integers(0, 30 * 24 * 60)
prices = st.none() | st.decimals(min_value=0, max_value=40, places=3) | st.sampled_from([Decimal("1.006")])
changes = st.lists(
    st.tuples(
        minutes,
        st.sampled_from([S.RUNNING, S.STOPPED, S.STOPPING, S.STARTING, S.TERMINATED, S.UNKNOWN]),
        prices,
        st.booleans(),
    ),
    max_size=14,
)
price_changes = st.lists(st.tuples(minutes, st.decimals(min_value=0, max_value=40, places=4)), max_size=4)


@st.composite
def histories(draw: st.DrawFn) -> InstanceHistory:
    picked = draw(changes)
    instants = [m for m, *_ in picked]

    def instant(m: int) -> datetime:
        # Ties are where the rules are subtle: often reuse an instant already drawn.
        if len(instants) > 0 and draw(st.booleans()):
            m = draw(st.sampled_from(instants))
        return MON + timedelta(minutes=m)

    return InstanceHistory(
        f"i-{draw(st.integers(0, 3))}",
        tuple(StateChange(instant(m), s, p, by_bot=b) for m, s, p, b in picked),
        tuple(PriceChange(instant(m), p) for m, p in draw(price_changes)),
        owner=draw(st.sampled_from(["U1", "U2", None])),
        project=draw(st.sampled_from(["vision", "nlp", None])),
        lifecycle=draw(st.sampled_from(list(Lifecycle))),
    )


ranges = st.builds(
    lambda start, length, odd: (
        MON + timedelta(minutes=start, microseconds=odd),
        MON + timedelta(minutes=start + length, microseconds=2 * odd),
    ),
    st.integers(-2 * 24 * 60, 32 * 24 * 60),
    st.integers(0, 12 * 24 * 60 + 7),
    st.integers(0, 3),
)
billed_sets = st.sampled_from([BILLED_STATES, frozenset({S.RUNNING, S.STARTING, S.STOPPING})])


@settings(max_examples=300, deadline=None)
@given(history=histories(), span=ranges, billed=billed_sets)
def test_segments_and_instance_cost_match_the_definition(
    history: InstanceHistory, span: tuple[datetime, datetime], billed: frozenset[InstanceState]
) -> None:
    since, until = span
    assert cost.segments(history, since, until) == ref_segments(history, since, until)
    assert cost.instance_cost(history, since, until, billed_states=billed) == ref_instance_cost(
        history, since, until, billed
    )


@settings(max_examples=300, deadline=None)
@given(
    group=st.lists(histories(), max_size=4),
    span=ranges,
    zone=st.sampled_from(ZONES),
    billed=billed_sets,
)
def test_rows_and_daily_sums_match_the_definition(
    group: list[InstanceHistory],
    span: tuple[datetime, datetime],
    zone: tzinfo,
    billed: frozenset[InstanceState],
) -> None:
    since, until = span
    rows = cost.cost_rows(group, since, until, tz=zone, billed_states=billed)
    assert rows == ref_cost_rows(group, since, until, zone, billed)
    by_project_day = cost.daily_cost_by(
        group, lambda h: h.project, since, until, tz=zone, billed_states=billed
    )
    assert by_project_day == cost.aggregate(rows, lambda r: (r.project, r.day))


@settings(max_examples=300, deadline=None)
@given(group=st.lists(histories(), max_size=4), span=ranges)
def test_savings_and_hourly_rate_match_the_definition(
    group: list[InstanceHistory], span: tuple[datetime, datetime]
) -> None:
    since, until = span
    assert cost.savings(group, since, until) == ref_savings(group, since, until)
    assert cost.hourly_rate_at(group, since) == ref_hourly_rate_at(group, since)
    assert cost.hourly_rate_at(group, until) == ref_hourly_rate_at(group, until)


def test_a_dst_week_is_cut_the_same_way_in_every_zone() -> None:
    # A machine running at $1/h through the March and October clock changes of both hemispheres.
    history = InstanceHistory(
        "i-dst",
        (StateChange(datetime(2026, 3, 20, tzinfo=UTC), S.RUNNING, Decimal(1)),),
        (PriceChange(datetime(2026, 4, 3, 13, 30, tzinfo=UTC), Decimal("1.25")),),
    )
    for since in (datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)):
        until = since + timedelta(days=16)
        for zone in ZONES:
            assert cost.cost_rows([history], since, until, tz=zone) == ref_cost_rows(
                [history], since, until, zone
            )


def test_daily_sums_keep_the_digit_that_adding_rounded_dollars_loses() -> None:
    # 1.006 $/h from an odd second: each machine-day's dollars are a repeating decimal. Adding them after
    # dividing each one rounds 24 times; `daily_cost_by` adds exact products and divides once.
    group = [
        InstanceHistory(
            f"i-{n}",
            (StateChange(MON + timedelta(seconds=7 * n + 1), S.RUNNING, Decimal("1.006")),),
            project="p",
        )
        for n in range(6)
    ]
    until = MON + timedelta(days=3, hours=7, minutes=20)
    whole = sum((cost.instance_cost(h, MON, until) for h in group), Cost())
    daily = cost.daily_cost_by(group, lambda h: h.project, MON, until)
    assert len(daily) == 4
    assert sum(daily.values(), Cost()) == whole
    assert whole.usd == Decimal("478.8249816666666666666666667")
    per_row = sum((row.cost.usd for row in cost.cost_rows(group, MON, until)), Decimal(0))
    assert per_row == Decimal("478.8249816666666666666666664")
