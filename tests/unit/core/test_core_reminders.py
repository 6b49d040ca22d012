"""The mark -> notify -> grace -> re-check -> act lifecycle, driven by a moved clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.clock import FixedClock
from bot.core.idle import IdleVerdict
from bot.core.policy import DEFAULT_POLICY
from bot.core.reminders import KeepRefusal, Mark, MarkPhase, Observation, Step, StepKind, next_step, take_keep
from bot.core.safety import Action, ResourceFacts, Rule, SafetyContext
from providers.base import InstanceState
from tests.unit.core.core_factories import (
    ADMIN,
    MANAGED_TAGS,
    NOW,
    USER,
    auto_context,
    busy_evidence,
    idle_evidence,
    make_instance,
    missing_evidence,
)

IID = "i-0abc"
LAUNCHED = NOW - timedelta(hours=6)


def observe(now: datetime, *, idle: IdleVerdict | None = None, **changes: Any) -> Observation:
    """The machine as a cycle at `now` sees it: launched at a fixed time, idle unless told otherwise."""
    instance = make_instance(IID, now=now, age=now - LAUNCHED)
    if "tags" in changes:
        instance = replace(instance, tags=changes.pop("tags"))
    if "state" in changes:
        instance = replace(instance, state=changes.pop("state"))
    facts = ResourceFacts(
        instance, idle=idle if idle is not None else idle_evidence(IID, now), owner_timezone="UTC"
    )
    return Observation(IID, replace(facts, **changes))


def step_at(mark: Mark | None, now: datetime, **changes: Any) -> Step:
    ctx_changes = {k: changes.pop(k) for k in ("dry_run", "fleet_size", "actions_this_cycle") if k in changes}
    return next_step(mark, observe(now, **changes), auto_context(now=now, **ctx_changes))


def test_an_idle_machine_in_working_hours_is_marked_and_notified_at_once() -> None:
    step = step_at(None, NOW)
    assert step.kind is StepKind.NOTIFY
    assert step.mark == Mark(IID, NOW, notified_at=NOW)
    assert step.mark.phase is MarkPhase.NOTIFIED
    assert step.until == NOW + timedelta(hours=1)
    assert "the bot stops it in 1 h unless kept" in step.reason
    assert step.verdict is not None and step.verdict.action is Action.IDLE_REMIND
    assert step.verdict.evidence["cpu_max"] == 1.0  # the reminder shows the evidence


def test_outside_working_hours_it_is_only_marked_and_the_notice_waits() -> None:
    saturday = datetime(2026, 3, 7, 11, 0, tzinfo=UTC)
    step = step_at(None, saturday)
    assert step.kind is StepKind.MARK
    assert step.mark == Mark(IID, saturday)
    assert step.mark.phase is MarkPhase.MARKED
    assert step.until == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    notify = step_at(step.mark, monday)
    assert notify.kind is StepKind.NOTIFY
    assert notify.mark == Mark(IID, saturday, notified_at=monday)


def test_the_notice_waits_for_the_owners_own_morning() -> None:
    # 10:00 UTC is 05:00 in New York.
    step = step_at(None, NOW, owner_timezone="America/New_York")
    assert step.kind is StepKind.MARK
    assert step.until == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)


def test_grace_runs_from_the_notice_not_the_mark() -> None:
    mark = Mark(IID, NOW - timedelta(hours=3), notified_at=NOW - timedelta(minutes=30))
    step = step_at(mark, NOW)
    assert step.kind is StepKind.WAIT
    assert step.until == NOW + timedelta(minutes=30)
    assert step.mark == mark
    assert "grace runs until 2026-03-04 10:30 UTC" in step.reason


def test_after_grace_and_a_fresh_check_it_acts() -> None:
    clock = FixedClock(NOW)
    step = step_at(None, clock.now())
    assert step.kind is StepKind.NOTIFY
    mark = step.mark
    clock.advance(minutes=59)
    assert step_at(mark, clock.now()).kind is StepKind.WAIT
    clock.advance(minutes=1)
    act = step_at(mark, clock.now())
    assert act.kind is StepKind.ACT
    assert act.mark is None
    assert act.verdict is not None and act.verdict.allowed and act.verdict.action is Action.IDLE_STOP
    assert act.reason == "stop i-0abc: idle past the grace period"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"idle": busy_evidence(IID, NOW)}, "i-0abc is busy again: CPU reached 60.0 %"),
        (
            {"tags": {**MANAGED_TAGS, "runctl:protected": "true"}},
            "i-0abc is protected by tag runctl:protected",
        ),
        ({"running_job": "job-9"}, "training job job-9 is running on i-0abc"),
        ({"state": InstanceState.STOPPED}, "i-0abc is already stopped"),
        ({"tags": {"Name": "x"}}, "i-0abc is not managed by runctl"),
        ({"tags": {**MANAGED_TAGS, "runctl:keep-until": "never"}}, "i-0abc is kept indefinitely"),
    ],
)
def test_these_unmark(changes: dict[str, Any], expected: str) -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    step = step_at(mark, NOW, **changes)
    assert step.kind is StepKind.UNMARK
    assert step.mark is None
    assert step.reason.startswith(expected)
    assert step_at(None, NOW, **changes).kind is StepKind.NOTHING


def test_a_restarted_machine_is_unmarked() -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    young = Observation(
        IID, ResourceFacts(make_instance(IID, age=timedelta(minutes=20)), idle=idle_evidence())
    )
    step = next_step(mark, young, auto_context())
    assert step.kind is StepKind.UNMARK
    assert step.verdict is not None and step.verdict.rule is Rule.MIN_AGE


def test_a_vanished_machine_is_unmarked() -> None:
    mark = Mark(IID, NOW)
    assert next_step(mark, Observation(IID, None), auto_context()).kind is StepKind.UNMARK
    assert next_step(None, Observation(IID, None), auto_context()).kind is StepKind.NOTHING


def test_missing_data_waits_rather_than_unmarking() -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    step = step_at(mark, NOW, idle=missing_evidence(IID, NOW))
    assert step.kind is StepKind.WAIT
    assert step.mark == mark
    assert "missing data is not idle" in step.reason
    assert step_at(None, NOW, idle=missing_evidence(IID, NOW)).kind is StepKind.NOTHING


def test_keep_restarts_the_lifecycle_after_it_ends() -> None:
    clock = FixedClock(NOW)
    mark = step_at(None, clock.now()).mark
    assert mark is not None
    clock.advance(minutes=30)
    kept = take_keep(mark, DEFAULT_POLICY.keep_short, USER, clock.now(), DEFAULT_POLICY)
    assert isinstance(kept, Mark)
    assert kept.notified_at is None and kept.keep_count == 1
    assert kept.keep_until == NOW + timedelta(hours=4, minutes=30)
    assert kept.phase is MarkPhase.KEPT
    clock.advance(hours=2)
    during = step_at(kept, clock.now())
    assert during.kind is StepKind.KEEP
    assert during.until == kept.keep_until
    assert "its owner chose Keep" in during.reason
    clock.set(kept.keep_until)
    again = step_at(kept, clock.now())
    assert again.kind is StepKind.NOTIFY  # told again, and a new grace period starts
    assert again.mark is not None and again.mark.notified_at == clock.now()
    clock.advance(minutes=59)
    assert step_at(again.mark, clock.now()).kind is StepKind.WAIT
    clock.advance(minutes=1)
    assert step_at(again.mark, clock.now()).kind is StepKind.ACT


def test_a_machine_busy_during_a_keep_is_unmarked() -> None:
    kept = Mark(IID, NOW - timedelta(hours=1), keep_until=NOW + timedelta(hours=3), keep_count=1)
    assert step_at(kept, NOW, idle=busy_evidence(IID, NOW)).kind is StepKind.UNMARK


def test_keeps_are_capped_for_owners_but_not_for_admins() -> None:
    mark = Mark(IID, NOW, notified_at=NOW, keep_count=3)
    refusal = take_keep(mark, timedelta(hours=4), USER, NOW, DEFAULT_POLICY)
    assert isinstance(refusal, KeepRefusal)
    assert "has been kept 3 times already (limit 3)" in refusal.message
    extended = take_keep(mark, timedelta(days=1), ADMIN, NOW, DEFAULT_POLICY)
    assert isinstance(extended, Mark) and extended.keep_count == 4
    assert isinstance(take_keep(mark, timedelta(0), ADMIN, NOW, DEFAULT_POLICY), KeepRefusal)


def test_a_shorter_keep_never_cuts_a_longer_one() -> None:
    mark = Mark(IID, NOW, keep_until=NOW + timedelta(days=1), keep_count=1)
    kept = take_keep(mark, timedelta(hours=4), USER, NOW, DEFAULT_POLICY)
    assert isinstance(kept, Mark) and kept.keep_until == NOW + timedelta(days=1)


def test_dry_run_reports_and_keeps_the_mark() -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    step = step_at(mark, NOW, dry_run=True)
    assert step.kind is StepKind.WOULD_ACT
    assert step.mark == mark
    assert step.reason == "dry run: would stop i-0abc (enforcement is off)"


def test_the_breaker_holds_the_act() -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    step = step_at(mark, NOW, fleet_size=3)
    assert step.kind is StepKind.WAIT
    assert step.verdict is not None and step.verdict.rule is Rule.CIRCUIT_BREAKER


def test_grace_that_ends_after_hours_waits_for_the_morning() -> None:
    evening = datetime(2026, 3, 4, 19, 30, tzinfo=UTC)
    mark = Mark(IID, evening, notified_at=evening)
    night = evening + timedelta(hours=1)
    step = step_at(mark, night)
    assert step.kind is StepKind.WAIT
    assert step.until == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    assert step_at(mark, datetime(2026, 3, 5, 8, 0, tzinfo=UTC)).kind is StepKind.ACT


def test_a_mark_for_another_machine_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="mark for i-other"):
        next_step(Mark("i-other", NOW), observe(NOW), auto_context())


def test_force_and_the_actor_do_not_reach_the_idle_cycle() -> None:
    mark = Mark(IID, NOW - timedelta(hours=2), notified_at=NOW - timedelta(hours=2))
    protected = observe(NOW, tags={**MANAGED_TAGS, "runctl:protected": "true"})
    ctx = SafetyContext(now=NOW, actor=ADMIN, force=True, automatic=False, fleet_size=100)
    assert next_step(mark, protected, ctx).kind is StepKind.UNMARK


# ---- property: the lifecycle never acts before grace from the notice ------------------------------

events = st.lists(
    st.tuples(
        st.integers(0, 150),  # minutes until the next cycle
        st.sampled_from(["idle"] * 6 + ["busy", "missing", "protected", "job", "stopped", "gone", "keep"]),
        st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
        st.booleans(),  # dry run
    ),
    max_size=30,
)


@settings(max_examples=250, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
    cycles=events,
)
def test_the_lifecycle_never_acts_before_grace_from_the_notice(
    start: datetime, cycles: list[tuple[int, str, str, bool]]
) -> None:
    clock = FixedClock(start)
    mark: Mark | None = None
    last_notice: datetime | None = None
    acted = 0
    for minutes, event, zone, dry_run in cycles:
        clock.advance(minutes=minutes)
        now = clock.now()
        if event == "keep":
            if mark is not None:
                kept = take_keep(mark, timedelta(hours=4), USER, now, DEFAULT_POLICY)
                if isinstance(kept, Mark):
                    mark, last_notice = kept, None
            continue
        facts: ResourceFacts | None = ResourceFacts(
            make_instance(IID, now=now, age=timedelta(hours=3)),
            idle={"busy": busy_evidence, "missing": missing_evidence}.get(event, idle_evidence)(IID, now),
            owner_timezone=zone,
            running_job="job-1" if event == "job" else None,
        )
        assert facts is not None
        if event == "protected":
            facts = replace(
                facts, instance=make_instance(IID, now=now, tags={**MANAGED_TAGS, "runctl:important": "true"})
            )
        elif event == "stopped":
            facts = replace(facts, instance=make_instance(IID, now=now, state=InstanceState.STOPPED))
        elif event == "gone":
            facts = None
        step = next_step(
            mark,
            Observation(IID, facts),
            SafetyContext(now=now, automatic=True, dry_run=dry_run, fleet_size=40),
        )
        local = now.astimezone(ZoneInfo(zone))
        working = local.weekday() < 5 and 8 <= local.hour < 20
        if step.kind is StepKind.NOTIFY:
            assert working
            assert step.mark is not None and step.mark.notified_at == now
            last_notice = now
        if step.kind is StepKind.ACT:
            acted += 1
            assert mark is not None and mark.notified_at is not None
            assert last_notice is not None and mark.notified_at == last_notice
            assert now >= last_notice + DEFAULT_POLICY.grace
            assert event == "idle" and working and not dry_run
            assert step.verdict is not None and step.verdict.allowed
            assert step.mark is None
        if step.kind in {StepKind.UNMARK, StepKind.NOTHING}:
            assert step.mark is None
        if step.kind is StepKind.UNMARK:
            last_notice = None
        if event in {"busy", "protected", "job", "stopped", "gone"}:
            assert step.kind in {StepKind.UNMARK, StepKind.NOTHING}
        mark = step.mark
        if mark is None:
            last_notice = None
    assert acted <= len(cycles)
