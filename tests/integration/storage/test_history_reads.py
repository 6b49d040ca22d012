"""HistoryRepository: the read side that cost figures and reports use, on SQLite and PostgreSQL.

It must read exactly what `ResourceRepository` wrote and what its own `transitions(include_prior=True)`
returns, only as plain tuples instead of ORM entities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
from sqlalchemy import Engine

from bot.core import cost as costmath
from bot.core.access import RoleBook
from bot.core.clock import FixedClock
from bot.core.policy import SafetyPolicy
from bot.services.costs import BOT_STOP_REASON, histories
from bot.services.deps import ServiceDeps
from bot.services.ports import Notifier
from bot.services.reports import ReportData, ReportService
from providers.base import Instance, InstanceState, Lifecycle, Provider
from storage.engine import session_scope
from storage.models import StateTransition
from storage.repos.history import HistoryRepository, HistorySnapshot, ResourceSummary, TransitionPoint
from storage.repos.resources import TransitionRecord
from storage.repositories import Repositories

Factory = Callable[..., Instance]
At = Callable[[float], datetime]
S = InstanceState


@pytest.fixture
def history(db_engine: Engine) -> HistoryRepository:
    return HistoryRepository(db_engine)


def _points(records: list[TransitionRecord]) -> dict[str, tuple[TransitionPoint, ...]]:
    """What `ResourceRepository.transitions` says, in the shape HistoryRepository gives it."""
    out: dict[str, list[TransitionPoint]] = defaultdict(list)
    for r in records:
        out[r.resource_id].append((r.at, r.to_state.value, r.hourly_usd, r.reason_code))
    return {resource_id: tuple(points) for resource_id, points in out.items()}


def _entity_histories(repos: Repositories, since: datetime) -> list[costmath.InstanceHistory]:
    """Histories the way the services built them before: from ORM rows and `TransitionRecord`s."""
    rows = [r for r in repos.resources.list_open() if r.managed]
    records = repos.resources.transitions([r.id for r in rows], since=since, include_prior=True)
    by_id: dict[str, list[costmath.StateChange]] = defaultdict(list)
    for t in records:
        price = Decimal(str(t.hourly_usd)) if t.hourly_usd is not None else None
        by_bot = t.reason_code == BOT_STOP_REASON
        by_id[t.resource_id].append(costmath.StateChange(t.at, t.to_state, price, by_bot=by_bot))
    return [
        costmath.InstanceHistory(
            r.id, tuple(by_id[r.id]), owner=r.owner, project=r.project, lifecycle=Lifecycle(r.lifecycle)
        )
        for r in rows
    ]


def _fleet(repos: Repositories, make_instance: Factory, at: At) -> None:
    """Four machines over two hours: stops and starts, a price, an unmanaged one, a closed one."""
    owners = {"i-a": ("U1", "vision"), "i-b": ("U2", "nlp"), "i-c": ("U1", "nlp"), "i-x": (None, None)}
    launched = {"i-a": at(-90), "i-b": at(-80), "i-c": at(-70), "i-x": at(-60)}

    def seen(minutes: float, states: dict[str, InstanceState]) -> None:
        instances = [
            make_instance(
                iid,
                state,
                owner=owners[iid][0],
                project=owners[iid][1],
                managed=iid != "i-x",
                lifecycle=Lifecycle.SPOT if iid == "i-b" else Lifecycle.ON_DEMAND,
                launch_time=launched[iid],
            )
            for iid, state in states.items()
        ]
        prices = {iid: 1.006 if iid != "i-b" else 0.3017 for iid in states}
        repos.resources.upsert_from_cloud(instances, seen_at=at(minutes), hourly_prices=prices)

    seen(0, {"i-a": S.RUNNING, "i-b": S.RUNNING, "i-c": S.STOPPED, "i-x": S.RUNNING})
    seen(30, {"i-a": S.STOPPED, "i-b": S.RUNNING, "i-c": S.RUNNING, "i-x": S.RUNNING})
    seen(90, {"i-a": S.RUNNING, "i-b": S.STOPPED, "i-c": S.RUNNING, "i-x": S.RUNNING})
    repos.resources.close_missing({"i-a", "i-b", "i-x"}, at(100))  # i-c is gone


def test_open_resources_are_the_open_managed_rows_oldest_launch_first(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    _fleet(repos, make_instance, at)

    rows = history.open_resources()
    assert [r.id for r in rows] == [r.id for r in repos.resources.list_open() if r.managed] == ["i-a", "i-b"]
    a, b = rows
    assert a == ResourceSummary(
        "i-a", S.RUNNING, Lifecycle.ON_DEMAND, "U1", "vision", "g5.xlarge", at(-90), True
    )
    assert (b.state, b.lifecycle, b.owner, b.project) == (S.STOPPED, Lifecycle.SPOT, "U2", "nlp")
    assert a.launch_time.tzinfo is UTC
    assert [r.id for r in history.open_resources(managed_only=False)] == ["i-a", "i-b", "i-x"]
    assert [r.id for r in history.open_resources(owner="U2")] == ["i-b"]
    assert [r.id for r in history.open_resources(project="vision")] == ["i-a"]
    assert history.open_resources(owner="U1", project="nlp") == []


def test_resources_by_id_keep_the_order_asked_for_and_include_closed_rows(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    _fleet(repos, make_instance, at)

    rows = history.resources(["i-c", "i-nope", "i-a", "i-c"])
    assert [(r.id, r.state) for r in rows] == [("i-c", S.TERMINATED), ("i-a", S.RUNNING)]
    assert history.resources([]) == []


def test_changes_are_the_window_plus_the_state_in_force_when_it_opens(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    _fleet(repos, make_instance, at)
    ids = ["i-a", "i-b", "i-c", "i-x"]

    for since in (at(-120), at(0), at(10), at(30), at(95), at(200)):
        expected = _points(repos.resources.transitions(ids, since=since, include_prior=True))
        assert history.changes(ids, since) == expected
    window = history.changes(["i-a"], at(10))["i-a"]
    assert window == (
        (at(-90), "running", 1.006, None),  # in force at 10 min: running since its launch
        (at(30), "stopped", 1.006, None),
        (at(90), "running", 1.006, None),
    )
    assert all(point[0].tzinfo is UTC for point in window)
    assert history.changes([], at(0)) == {}
    assert history.changes(["i-nope"], at(0)) == {}


def test_a_snapshot_reads_open_managed_machines_and_only_their_changes(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    _fleet(repos, make_instance, at)

    snapshot = history.open_snapshot(at(10))
    assert snapshot.since == at(10)
    assert snapshot.resources == history.open_resources()
    assert snapshot.changes == history.changes(["i-a", "i-b"], at(10))
    assert set(snapshot.changes) == {"i-a", "i-b"}  # not the unmanaged i-x, not the closed i-c

    mine = history.open_snapshot(at(10), owner="U1")
    assert [r.id for r in mine.resources] == ["i-a"] and set(mine.changes) == {"i-a"}
    everything = history.open_snapshot(at(10), managed_only=False)
    assert set(everything.changes) == {"i-a", "i-b", "i-x"}
    assert history.open_snapshot(at(10), owner="U9") == HistorySnapshot(at(10), [], {})


def test_transitions_at_one_instant_keep_the_order_they_were_written(
    repos: Repositories, db_engine: Engine, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-t", launch_time=at(0))], seen_at=at(0))
    with session_scope(db_engine, write=True) as session:
        for state, reason in (("stopping", BOT_STOP_REASON), ("stopped", BOT_STOP_REASON), ("running", None)):
            session.add(
                StateTransition(
                    resource_id="i-t", to_state=state, at=at(20), reason_code=reason, lifecycle="on-demand"
                )
            )
            session.flush()  # one id after the other
    expected = _points(repos.resources.transitions(["i-t"], since=at(-5), include_prior=True))
    got = history.changes(["i-t"], at(-5))
    assert got == expected
    assert [state for _, state, _, _ in got["i-t"]] == ["running", "stopping", "stopped", "running"]
    # The last of several changes at one instant holds; and prior-to-window points come from the same rule.
    assert history.changes(["i-t"], at(21))["i-t"] == ((at(20), "running", None, None),)


def test_more_machines_than_one_query_chunk(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    machines = [make_instance(f"i-{n:05d}", launch_time=at(-60)) for n in range(1_201)]
    repos.resources.upsert_from_cloud(machines, seen_at=at(0), hourly_prices={m.id: 0.5 for m in machines})
    stopped = [make_instance(m.id, S.STOPPED, launch_time=at(-60)) for m in machines[::2]]
    repos.resources.upsert_from_cloud(stopped, seen_at=at(30))
    ids = [m.id for m in machines]

    changes = history.changes(ids, at(10))
    assert len(changes) == 1_201
    assert changes == _points(repos.resources.transitions(ids, since=at(10), include_prior=True))
    assert history.open_snapshot(at(10)).changes == changes
    assert len(history.resources(reversed(ids))) == 1_201


def test_histories_from_these_reads_cost_what_the_entity_reads_cost(
    repos: Repositories, history: HistoryRepository, make_instance: Factory, at: At
) -> None:
    """The whole path a report takes: the figures match the ones built from ORM rows, digit for digit."""
    _fleet(repos, make_instance, at)
    since, now = at(-120), at(150)
    from_entities = _entity_histories(repos, since)
    snapshot = history.open_snapshot(since)
    from_tuples = histories(snapshot.resources, snapshot.changes)

    rows_from_tuples = costmath.cost_rows(from_tuples, since, now)
    assert rows_from_tuples == costmath.cost_rows(from_entities, since, now)
    assert (
        costmath.hourly_rate_at(from_tuples, now)
        == costmath.hourly_rate_at(from_entities, now)
        == Decimal("1.006")
    )
    # i-a ran 120 + 60 min at 1.006 $/h; i-b 170 min at 0.3017 $/h.
    spent = costmath.total(rows_from_tuples)
    assert spent.running_microseconds == 350 * 60 * 1_000_000
    assert costmath.round_usd(spent.usd) == Decimal("3.87")


def test_naive_times_are_refused(history: HistoryRepository) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        history.changes(["i-a"], datetime(2025, 3, 3, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        history.open_snapshot(datetime(2025, 3, 3, 9, 0))


def test_the_bundle_reads_what_the_resource_repository_wrote(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-s")], seen_at=at(0))
    assert [r.id for r in repos.history.open_resources()] == ["i-s"]


class _NoUnmanaged:
    def list_unmanaged_running(self) -> list[Instance]:
        return []


def test_the_report_over_these_reads_adds_up_what_the_cost_rows_say(
    repos: Repositories, make_instance: Factory
) -> None:
    """`ReportService.build` streams histories and sums per (owner, project, day): its figures are the
    exact sums of the per-machine, per-day rows, over a week boundary, with bot stops and unpriced time."""
    now = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)  # a Wednesday: the week began on Monday the 3rd
    hour = timedelta(hours=1)
    # (id, owner, project, hourly price, what reconcile saw: (hours before now, state, reason))
    fleet: list[tuple[str, str, str | None, float | None, list[tuple[int, InstanceState, str | None]]]] = [
        (
            "i-1",
            "U1",
            "vision",
            1.006,
            [(144, S.RUNNING, None), (48, S.STOPPED, BOT_STOP_REASON), (24, S.RUNNING, None)],
        ),
        ("i-2", "U2", "nlp", 0.3017, [(48, S.RUNNING, None)]),
        ("i-3", "U1", "nlp", 2.5, [(192, S.RUNNING, None), (72, S.STOPPED, None)]),
        ("i-4", "U3", None, None, [(216, S.RUNNING, None)]),
        ("i-5", "U2", "vision", 0.5, [(96, S.RUNNING, None), (5, S.STOPPED, BOT_STOP_REASON)]),
    ]
    for iid, owner, project, price, seen in fleet:
        launched = now - seen[0][0] * hour
        for hours, state, reason in seen:
            machine = make_instance(
                iid, state, owner=owner, project=project, launch_time=launched, reason_code=reason
            )
            prices = {iid: price} if price is not None else None
            repos.resources.upsert_from_cloud([machine], seen_at=now - hours * hour, hourly_prices=prices)
    deps = ServiceDeps(
        cast(Provider, _NoUnmanaged()),
        repos,
        cast(Notifier, None),
        FixedClock(now),
        SafetyPolicy(),
        RoleBook(),
    )

    data = ReportService(deps).build()

    week_start, chart_start = datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 2, 27, tzinfo=UTC)
    hist = _entity_histories(repos, chart_start)
    rows = costmath.cost_rows(hist, chart_start, now)
    daily: dict[date, dict[str | None, costmath.Cost]] = {
        (chart_start + timedelta(days=k)).date(): {} for k in range(7)
    }
    for row in rows:
        daily[row.day][row.project] = daily[row.day].get(row.project, costmath.Cost()) + row.cost
    this_week = [r for r in rows if r.day >= week_start.date()]
    by_owner = costmath.cost_by_owner(this_week)
    saved = costmath.savings(hist, week_start, now)
    assert len(saved) == 2 and all(s.usd > 0 for s in saved)
    assert (
        data
        == ReportData(
            at=now,
            running=3,
            hourly_now=Decimal("1.006") + Decimal("0.3017"),  # i-4 runs unpriced
            running_by_owner={"U1": 1, "U2": 1, "U3": 1},
            running_by_project={"vision": 1, "nlp": 1, None: 1},
            cost_today=costmath.total(r for r in rows if r.day == now.date()).usd,
            cost_week=costmath.total(this_week).usd,
            daily={d: {p: c.usd for p, c in by_project.items()} for d, by_project in daily.items()},
            top_spenders=sorted(
                ((k, v.usd) for k, v in by_owner.items()), key=lambda kv: kv[1], reverse=True
            )[:5],
            saved_hours=sum((s.cost.running_hours for s in saved), Decimal(0)),
            saved_usd=sum((s.usd for s in saved), Decimal(0)),
            unmanaged=(),
        )
    )
    # This week U2 ran 48 h at 0.3017 and 58 h at 0.5, U1 39 h at 1.006, U3 only unpriced hours.
    assert [owner for owner, _ in data.top_spenders] == ["U2", "U1", "U3"]
    assert data.top_spenders[1][1] == Decimal("1.006") * 39
