"""Cost maths from state-transition history.

A machine's history is its state changes (from reconcile and operations) and the hourly prices that were in
force (a transition may carry the price at that moment; `PriceChange` records a change while the state
stays, such as a new spot price). Cost is the sum over billed stretches of hours x the price in force, in
`Decimal`, with nothing rounded until `round_usd` is called for display.

Decisions:
- Only `running` bills (`BILLED_STATES`). EC2 does not bill `pending`, nor `stopping` (except into
  hibernation, which the bot never uses), nor `shutting-down`. Callers that want another rule pass
  `billed_states`.
- `unknown` says nothing new: the machine keeps the last known state across it.
- Before its first recorded change a machine does not exist for the maths.
- Billed time with no known price is reported as `unpriced_hours`, never guessed into the dollars.
- When a transition's price and a `PriceChange` share an instant, the `PriceChange` wins.
- Days and months are calendar days in the given zone (UTC by default), so a DST day has 23 or 25 hours.
  A range is cut into days once, at each local midnight from its start on, and every machine's stretches
  are split on those cuts.
- Savings: from each stop the bot made until the machine next starts (or is terminated, or `until`),
  hours x the price that would have been in force.

Speed: reports run this over every machine's week, so each history builds its timeline (the instants where
state or price change) once, and every range question is one bisect and one walk over it; dollars are
summed as `Decimal` products and divided only when read (`Cost.usd`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Generic, NamedTuple, TypeVar

from bot.core.clock import as_utc, require_utc
from providers.base import InstanceState, Lifecycle

K = TypeVar("K", bound=Hashable)

BILLED_STATES: frozenset[InstanceState] = frozenset({InstanceState.RUNNING})
_SAVING_ENDS = frozenset(
    {InstanceState.STARTING, InstanceState.RUNNING, InstanceState.TERMINATING, InstanceState.TERMINATED}
)
_STOPPED = frozenset({InstanceState.STOPPING, InstanceState.STOPPED})
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
_MICROSECOND = timedelta(microseconds=1)
ZERO = Decimal(0)
_AT = attrgetter("at")


def usd(value: Decimal | float | int | str) -> Decimal:
    """A price or amount as `Decimal`, through its decimal text so 0.1 stays 0.1."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"an amount must be finite (got {value!r})")
    return amount


def round_usd(amount: Decimal, places: int = 2) -> Decimal:
    """For display only: half-up to cents (or `places`)."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def hours_between(start: datetime, end: datetime) -> Decimal:
    """Exact hours (to the microsecond) from `start` to `end`; zero when `end` is not after `start`."""
    if end <= start:
        return ZERO
    return Decimal((end - start) // _MICROSECOND) / _MICROSECONDS_PER_HOUR


@dataclass(frozen=True)
class StateChange:
    at: datetime
    state: InstanceState
    hourly_usd: Decimal | None = None  # the price in force from this moment, when known
    by_bot: bool = False  # a stop the bot made, which counts towards savings

    def __post_init__(self) -> None:
        # Histories are built by the ten thousand for a report: skip the work when there is none to do.
        if self.at.tzinfo is not UTC:
            object.__setattr__(self, "at", as_utc(self.at))
        price = self.hourly_usd
        if price is not None and (type(price) is not Decimal or not price.is_finite()):
            object.__setattr__(self, "hourly_usd", usd(price))


@dataclass(frozen=True)
class PriceChange:
    at: datetime
    hourly_usd: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at))
        object.__setattr__(self, "hourly_usd", usd(self.hourly_usd))


_Piece = tuple[datetime, datetime, InstanceState | None, Decimal | None]


class _Timeline(NamedTuple):
    """Each instant (strictly increasing) where the state or the price changes, with both as in force
    from then on; before the first instant, `before`.

    Instants and prices are tuples of plain values, which the garbage collector stops tracking: reports
    build timelines by the ten thousand.
    """

    ats: tuple[datetime, ...]
    states: tuple[InstanceState | None, ...]
    prices: tuple[Decimal | None, ...]
    before: InstanceState | None = None

    @classmethod
    def of(cls, changes: Sequence[StateChange], prices: Sequence[PriceChange]) -> _Timeline:
        # Changes before price changes, then a stable sort by time: at a shared instant a price change
        # comes last, so it wins, and of several changes at one instant the last one holds.
        events: Sequence[StateChange | PriceChange] = changes
        if prices:
            events = sorted((*changes, *prices), key=_AT)
        ats: list[datetime] = []
        states: list[InstanceState | None] = []
        amounts: list[Decimal | None] = []
        state: InstanceState | None = None
        price: Decimal | None = None
        for event in events:
            if isinstance(event, StateChange):
                if event.state is not InstanceState.UNKNOWN:
                    state = event.state
                elif event.hourly_usd is None:
                    continue  # learnt nothing: the last known state carries on
                if event.hourly_usd is not None:
                    price = event.hourly_usd
            else:
                price = event.hourly_usd
            if ats and ats[-1] == event.at:
                states[-1], amounts[-1] = state, price
            else:
                ats.append(event.at)
                states.append(state)
                amounts.append(price)
        return cls(tuple(ats), tuple(states), tuple(amounts))

    def as_running(self) -> _Timeline:
        """The same prices with the machine running throughout (what a stopped stretch would have cost)."""
        running = InstanceState.RUNNING
        return _Timeline(self.ats, (running,) * len(self.ats), self.prices, running)

    def at(self, when: datetime) -> tuple[InstanceState | None, Decimal | None]:
        i = bisect_right(self.ats, when) - 1
        return (self.states[i], self.prices[i]) if i >= 0 else (self.before, None)

    def walk(self, since: datetime, until: datetime) -> list[_Piece]:
        """`[since, until)` cut where state or price changes; equal neighbours make one piece (which takes
        the later of two equal prices)."""
        ats, states, prices = self.ats, self.states, self.prices
        i = bisect_right(ats, since) - 1
        state, price = (states[i], prices[i]) if i >= 0 else (self.before, None)
        pieces: list[_Piece] = []
        start = since
        for j in range(i + 1, len(ats)):
            at = ats[j]
            if at >= until:
                break
            next_state, next_price = states[j], prices[j]
            if next_state != state or next_price != price:
                pieces.append((start, at, state, price))
                start = at
            state, price = next_state, next_price
        if start < until:
            pieces.append((start, until, state, price))
        return pieces


@dataclass(frozen=True)
class InstanceHistory:
    instance_id: str
    changes: tuple[StateChange, ...]
    prices: tuple[PriceChange, ...] = ()
    owner: str | None = None
    project: str | None = None
    lifecycle: Lifecycle = Lifecycle.ON_DEMAND
    # Built once from the two above, so each question about a range is one bisect and one walk.
    _timeline: _Timeline = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        changes = tuple(sorted(self.changes, key=_AT))
        prices = tuple(sorted(self.prices, key=_AT))
        object.__setattr__(self, "changes", changes)
        object.__setattr__(self, "prices", prices)
        object.__setattr__(self, "_timeline", _Timeline.of(changes, prices))


@dataclass(frozen=True)
class Segment:
    """A stretch of time with one state and one price."""

    start: datetime
    end: datetime
    state: InstanceState | None  # None before the first recorded change
    hourly_usd: Decimal | None

    @property
    def hours(self) -> Decimal:
        return hours_between(self.start, self.end)


@dataclass(frozen=True)
class Cost:
    """Exact: dollars are kept as hourly price x billed microseconds and divided only when read, so sums
    over days, ranges or owners agree to the last digit with the cost of the whole."""

    price_microseconds: Decimal = ZERO  # sum of hourly price x billed microseconds
    running_microseconds: int = 0
    unpriced_microseconds: int = 0  # billed time whose price is unknown; not in `usd`

    @property
    def usd(self) -> Decimal:
        return self.price_microseconds / _MICROSECONDS_PER_HOUR

    @property
    def running_hours(self) -> Decimal:
        return Decimal(self.running_microseconds) / _MICROSECONDS_PER_HOUR

    @property
    def unpriced_hours(self) -> Decimal:
        return Decimal(self.unpriced_microseconds) / _MICROSECONDS_PER_HOUR

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.price_microseconds + other.price_microseconds,
            self.running_microseconds + other.running_microseconds,
            self.unpriced_microseconds + other.unpriced_microseconds,
        )


def _check_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    since, until = require_utc(since, "since"), require_utc(until, "until")
    if until < since:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
    return since, until


def segments(history: InstanceHistory, since: datetime, until: datetime) -> list[Segment]:
    """The history cut into stretches of constant state and price within `[since, until)`."""
    since, until = _check_range(since, until)
    return [
        Segment(start, end, state, price) for start, end, state, price in history._timeline.walk(since, until)
    ]


def _billed(
    timeline: _Timeline, since: datetime, until: datetime, billed_states: frozenset[InstanceState]
) -> Cost:
    price_micro, running, unpriced = ZERO, 0, 0
    for start, end, state, price in timeline.walk(since, until):
        if state not in billed_states:
            continue
        micro = (end - start) // _MICROSECOND
        running += micro
        if price is None:
            unpriced += micro
        else:
            price_micro += price * micro
    return Cost(price_micro, running, unpriced)


def instance_cost(
    history: InstanceHistory,
    since: datetime,
    until: datetime,
    *,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> Cost:
    since, until = _check_range(since, until)
    return _billed(history._timeline, since, until, billed_states)


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


class _Days:
    """`[since, until)` cut at each local midnight in `tz`: piece k is `[starts[k], ends[k])` on `days[k]`."""

    def __init__(self, since: datetime, until: datetime, tz: tzinfo) -> None:
        self.starts: list[datetime] = []
        self.ends: list[datetime] = []
        self.days: list[date] = []
        start = since
        while start < until:
            day = start.astimezone(tz).date()
            boundary = _local_midnight(day + timedelta(days=1), tz)
            if boundary <= start:  # a midnight that does not exist; take the next one
                boundary = _local_midnight(day + timedelta(days=2), tz)
            end = min(boundary, until)
            self.starts.append(start)
            self.ends.append(end)
            self.days.append(day)
            start = end  # a local midnight, so the next piece's date is a later one


# (day, hourly price x billed microseconds, billed microseconds, unpriced microseconds)
_DayTotal = tuple[date, Decimal, int, int]


def _day_totals(
    history: InstanceHistory, days: _Days, billed_states: frozenset[InstanceState]
) -> list[_DayTotal]:
    """One machine's billed time per day of `days`, oldest first; days it did not bill are left out."""
    if not days.starts:
        return []
    starts, ends, names = days.starts, days.ends, days.days
    count = len(starts)
    out: list[_DayTotal] = []
    current = -1
    price_micro, running, unpriced = ZERO, 0, 0
    for start, end, state, price in history._timeline.walk(starts[0], ends[-1]):
        if state not in billed_states:
            continue
        k = bisect_right(starts, start) - 1
        while k < count and starts[k] < end:
            piece_start = start if start > starts[k] else starts[k]
            piece_end = end if end < ends[k] else ends[k]
            micro = (piece_end - piece_start) // _MICROSECOND
            if k != current:
                if current >= 0:
                    out.append((names[current], price_micro, running, unpriced))
                current, price_micro, running, unpriced = k, ZERO, 0, 0
            running += micro
            if price is None:
                unpriced += micro
            else:
                price_micro += price * micro
            k += 1
    if current >= 0:
        out.append((names[current], price_micro, running, unpriced))
    return out


@dataclass(frozen=True)
class CostRow:
    """One machine's cost on one calendar day: the unit every report aggregates."""

    instance_id: str
    owner: str | None
    project: str | None
    lifecycle: Lifecycle
    day: date
    cost: Cost


def cost_rows(
    histories: Iterable[InstanceHistory],
    since: datetime,
    until: datetime,
    *,
    tz: tzinfo = UTC,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> list[CostRow]:
    """Per machine per day (in `tz`) within `[since, until)`; days that cost nothing are left out."""
    since, until = _check_range(since, until)
    days = _Days(since, until, tz)
    rows: list[CostRow] = []
    for history in histories:
        rows.extend(
            CostRow(
                history.instance_id,
                history.owner,
                history.project,
                history.lifecycle,
                day,
                Cost(price_micro, running, unpriced),
            )
            for day, price_micro, running, unpriced in _day_totals(history, days, billed_states)
        )
    return rows


class DailyCosts(Generic[K]):
    """Exact cost per (key of a machine, day in `tz`) within `[since, until)`, added one machine at a time.

    A caller can stream histories through `add` and let each one go, instead of holding ten thousand at
    once (which also kept the garbage collector busy). Sums are exact, as `aggregate` of `cost_rows` would
    give; pairs that cost nothing are left out.
    """

    def __init__(
        self,
        key: Callable[[InstanceHistory], K],
        since: datetime,
        until: datetime,
        *,
        tz: tzinfo = UTC,
        billed_states: frozenset[InstanceState] = BILLED_STATES,
    ) -> None:
        since, until = _check_range(since, until)
        self._key = key
        self._days = _Days(since, until, tz)
        self._billed = billed_states
        self._price_micro: dict[tuple[K, date], Decimal] = {}
        self._running: dict[tuple[K, date], int] = {}
        self._unpriced: dict[tuple[K, date], int] = {}

    def add(self, history: InstanceHistory) -> None:
        group = self._key(history)
        price_micro, running, unpriced = self._price_micro, self._running, self._unpriced
        for day, p, r, u in _day_totals(history, self._days, self._billed):
            slot = (group, day)
            if slot in running:
                price_micro[slot] += p
                running[slot] += r
                unpriced[slot] += u
            else:
                price_micro[slot], running[slot], unpriced[slot] = ZERO + p, r, u

    def result(self) -> dict[tuple[K, date], Cost]:
        return {
            slot: Cost(self._price_micro[slot], n, self._unpriced[slot]) for slot, n in self._running.items()
        }


def daily_cost_by(
    histories: Iterable[InstanceHistory],
    key: Callable[[InstanceHistory], K],
    since: datetime,
    until: datetime,
    *,
    tz: tzinfo = UTC,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> dict[tuple[K, date], Cost]:
    """Cost per (key of the machine, day in `tz`) within `[since, until)`, without a row per machine:
    `daily_cost_by(histories, lambda h: h.project, since, until)` (see `DailyCosts`)."""
    costs = DailyCosts(key, since, until, tz=tz, billed_states=billed_states)
    for history in histories:
        costs.add(history)
    return costs.result()


def aggregate(rows: Iterable[CostRow], key: Callable[[CostRow], K]) -> dict[K, Cost]:
    """Sum rows by any key: `aggregate(rows, lambda r: (r.owner, r.day))`."""
    out: dict[K, Cost] = defaultdict(Cost)
    for row in rows:
        out[key(row)] += row.cost
    return dict(out)


def total(rows: Iterable[CostRow]) -> Cost:
    result = Cost()
    for row in rows:
        result += row.cost
    return result


def cost_by_owner(rows: Iterable[CostRow]) -> dict[str | None, Cost]:
    return aggregate(rows, lambda r: r.owner)


def cost_by_project(rows: Iterable[CostRow]) -> dict[str | None, Cost]:
    return aggregate(rows, lambda r: r.project)


def cost_by_day(rows: Iterable[CostRow]) -> dict[date, Cost]:
    return aggregate(rows, lambda r: r.day)


def cost_by_lifecycle(rows: Iterable[CostRow]) -> dict[Lifecycle, Cost]:
    return aggregate(rows, lambda r: r.lifecycle)


def hourly_rate_at(
    histories: Iterable[InstanceHistory],
    when: datetime,
    *,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> Decimal:
    """What the fleet costs per hour at `when` (machines billed then, at the price then in force)."""
    when = require_utc(when, "when")
    rate = ZERO
    for history in histories:
        state, price = history._timeline.at(when)
        if state in billed_states and price is not None:
            rate += price
    return rate


@dataclass(frozen=True)
class MonthProjection:
    month_start: datetime  # UTC instant of the month's first local midnight
    month_end: datetime
    spent: Cost
    hourly_now: Decimal
    hours_left: Decimal
    projected_usd: Decimal  # spent + hourly_now x hours_left


def project_month_end(
    histories: Sequence[InstanceHistory],
    now: datetime,
    *,
    tz: tzinfo = UTC,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> MonthProjection:
    """Spent this month so far plus what today's running machines would add by the month's end."""
    now = require_utc(now)
    local = now.astimezone(tz)
    first = local.date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    start, end = _local_midnight(first, tz), _local_midnight(following, tz)
    spent = total(cost_rows(histories, start, now, tz=tz, billed_states=billed_states))
    rate = hourly_rate_at(histories, now, billed_states=billed_states)
    hours_left = hours_between(now, end)
    return MonthProjection(start, end, spent, rate, hours_left, spent.usd + rate * hours_left)


@dataclass(frozen=True)
class Saving:
    instance_id: str
    owner: str | None
    project: str | None
    stopped_at: datetime
    resumed_at: datetime | None  # when the avoided stretch ended; None while it still runs at `until`
    cost: Cost = field(default_factory=Cost)  # running_hours = hours avoided

    @property
    def usd(self) -> Decimal:
        return self.cost.usd


def savings(histories: Iterable[InstanceHistory], since: datetime, until: datetime) -> list[Saving]:
    """What the bot's stops avoided within `[since, until)`, one entry per bot stop."""
    since, until = _check_range(since, until)
    out = []
    for history in histories:
        if not any(change.by_bot for change in history.changes):
            continue
        changes = [c for c in history.changes if c.state is not InstanceState.UNKNOWN]
        as_running: _Timeline | None = None
        i = 0
        while i < len(changes):
            at, state = changes[i].at, changes[i].state
            if not (changes[i].by_bot and state in _STOPPED):
                i += 1
                continue
            j = i + 1
            while j < len(changes) and changes[j].state not in _SAVING_ENDS:
                j += 1
            resumed = changes[j].at if j < len(changes) else None
            end = min(resumed, until) if resumed is not None else until
            window_start, window_end = max(at, since), min(end, until)
            cost = Cost()
            if window_start < window_end:
                as_running = as_running or history._timeline.as_running()
                cost = _billed(as_running, window_start, window_end, BILLED_STATES)
            if window_start < window_end or since <= at < until:
                out.append(
                    Saving(
                        history.instance_id,
                        history.owner,
                        history.project,
                        at,
                        resumed if resumed is not None and resumed <= until else None,
                        cost,
                    )
                )
            i = j
    return out
