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
- Savings: from each stop the bot made until the machine next starts (or is terminated, or `until`),
  hours x the price that would have been in force.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import TypeVar

from bot.core.clock import as_utc, require_utc
from providers.base import InstanceState, Lifecycle

K = TypeVar("K", bound=Hashable)

BILLED_STATES: frozenset[InstanceState] = frozenset({InstanceState.RUNNING})
_SAVING_ENDS = frozenset(
    {InstanceState.STARTING, InstanceState.RUNNING, InstanceState.TERMINATING, InstanceState.TERMINATED}
)
_STOPPED = frozenset({InstanceState.STOPPING, InstanceState.STOPPED})
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
ZERO = Decimal(0)


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
    return Decimal((end - start) // timedelta(microseconds=1)) / _MICROSECONDS_PER_HOUR


@dataclass(frozen=True)
class StateChange:
    at: datetime
    state: InstanceState
    hourly_usd: Decimal | None = None  # the price in force from this moment, when known
    by_bot: bool = False  # a stop the bot made, which counts towards savings

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at))
        if self.hourly_usd is not None:
            object.__setattr__(self, "hourly_usd", usd(self.hourly_usd))


@dataclass(frozen=True)
class PriceChange:
    at: datetime
    hourly_usd: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at))
        object.__setattr__(self, "hourly_usd", usd(self.hourly_usd))


@dataclass(frozen=True)
class InstanceHistory:
    instance_id: str
    changes: tuple[StateChange, ...]
    prices: tuple[PriceChange, ...] = ()
    owner: str | None = None
    project: str | None = None
    lifecycle: Lifecycle = Lifecycle.ON_DEMAND

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", tuple(sorted(self.changes, key=lambda c: c.at)))
        object.__setattr__(self, "prices", tuple(sorted(self.prices, key=lambda p: p.at)))

    def _price_points(self) -> list[tuple[datetime, Decimal]]:
        points = [(c.at, c.hourly_usd) for c in self.changes if c.hourly_usd is not None]
        points += [(p.at, p.hourly_usd) for p in self.prices]
        return sorted(points, key=lambda p: p[0])  # stable: price changes win ties

    def _state_points(self) -> list[tuple[datetime, InstanceState]]:
        points: list[tuple[datetime, InstanceState]] = []
        for change in self.changes:
            if change.state is InstanceState.UNKNOWN:
                continue  # learnt nothing: the last known state carries on
            points.append((change.at, change.state))
        return points


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


def _last_at(points: Sequence[tuple[datetime, object]], when: datetime) -> int:
    """Index of the last point at or before `when` (points sorted by time), or -1."""
    return bisect_right(points, when, key=lambda p: p[0]) - 1


def _check_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    since, until = require_utc(since, "since"), require_utc(until, "until")
    if until < since:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
    return since, until


def segments(history: InstanceHistory, since: datetime, until: datetime) -> list[Segment]:
    """The history cut into stretches of constant state and price within `[since, until)`."""
    since, until = _check_range(since, until)
    states, prices = history._state_points(), history._price_points()
    inner = {at for at, _ in states if since < at < until} | {at for at, _ in prices if since < at < until}
    cuts = sorted({since, until} | inner)
    out: list[Segment] = []
    for start, end in pairwise(cuts):
        si, pi = _last_at(states, start), _last_at(prices, start)
        state = states[si][1] if si >= 0 else None
        price = prices[pi][1] if pi >= 0 else None
        if out and out[-1].state == state and out[-1].hourly_usd == price and out[-1].end == start:
            out[-1] = Segment(out[-1].start, end, state, price)
        else:
            out.append(Segment(start, end, state, price))
    return out


def _cost_of(segment: Segment, billed_states: frozenset[InstanceState]) -> Cost:
    if segment.state not in billed_states or segment.end <= segment.start:
        return Cost()
    micro = (segment.end - segment.start) // timedelta(microseconds=1)
    if segment.hourly_usd is None:
        return Cost(ZERO, micro, micro)
    return Cost(segment.hourly_usd * micro, micro, 0)


def instance_cost(
    history: InstanceHistory,
    since: datetime,
    until: datetime,
    *,
    billed_states: frozenset[InstanceState] = BILLED_STATES,
) -> Cost:
    total = Cost()
    for segment in segments(history, since, until):
        total += _cost_of(segment, billed_states)
    return total


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _split_by_day(segment: Segment, tz: tzinfo) -> Iterable[tuple[date, Segment]]:
    start = segment.start
    while start < segment.end:
        day = start.astimezone(tz).date()
        boundary = _local_midnight(day + timedelta(days=1), tz)
        if boundary <= start:  # a midnight that does not exist; take the next one
            boundary = _local_midnight(day + timedelta(days=2), tz)
        end = min(boundary, segment.end)
        yield day, Segment(start, end, segment.state, segment.hourly_usd)
        start = end


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
    rows: list[CostRow] = []
    for history in histories:
        by_day: dict[date, Cost] = defaultdict(Cost)
        for segment in segments(history, since, until):
            if segment.state not in billed_states:
                continue
            for day, part in _split_by_day(segment, tz):
                by_day[day] += _cost_of(part, billed_states)
        rows.extend(
            CostRow(history.instance_id, history.owner, history.project, history.lifecycle, day, cost)
            for day, cost in sorted(by_day.items())
        )
    return rows


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
        states, prices = history._state_points(), history._price_points()
        si, pi = _last_at(states, when), _last_at(prices, when)
        if si >= 0 and states[si][1] in billed_states and pi >= 0:
            rate += prices[pi][1]
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
        changes = history._state_points()
        flags = [c for c in history.changes if c.state is not InstanceState.UNKNOWN]
        i = 0
        while i < len(changes):
            at, state = changes[i]
            if not (flags[i].by_bot and state in _STOPPED):
                i += 1
                continue
            j = i + 1
            while j < len(changes) and changes[j][1] not in _SAVING_ENDS:
                j += 1
            resumed = changes[j][0] if j < len(changes) else None
            end = min(resumed, until) if resumed is not None else until
            window_start, window_end = max(at, since), min(end, until)
            cost = Cost()
            if window_start < window_end:
                as_running = InstanceHistory(
                    history.instance_id,
                    (StateChange(window_start, InstanceState.RUNNING),),
                    tuple(PriceChange(p_at, price) for p_at, price in history._price_points()),
                )
                cost = instance_cost(as_running, window_start, window_end)
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
