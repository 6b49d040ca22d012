"""Property tests: over random fleets, tags, ages, clocks, zones and metrics, no verdict breaks a rule.

The checks below restate each rule from the tag schema and DESIGN §3 directly (not through the helpers the
engine uses), so a regression in a helper cannot make engine and test agree on a wrong answer.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.policy import SafetyPolicy, WorkingHours
from bot.core.quiet_hours import is_known_timezone
from bot.core.safety import (
    Action,
    ResourceFacts,
    Rule,
    SafetyContext,
    Verdict,
    evaluate,
    evaluate_batch,
)
from providers.base import InstanceState
from tests.unit.core.core_factories import ADMIN, actors, facts_for, idle_evidence, make_instance, nows

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AUTOMATIC_ACTIONS = [Action.IDLE_REMIND, Action.IDLE_STOP, Action.STOP]
ALL_ACTIONS = list(Action)
# Working hours that never close, so that random clocks do not hide the breaker behind quiet hours.
ALWAYS = SafetyPolicy(working_hours=WorkingHours(start=time(0), end=time(0), workdays=frozenset(range(7))))


def _protected(facts: ResourceFacts) -> bool:
    tags = facts.instance.tags
    return any(
        tags.get(k, "").strip().lower() == "true"
        for k in ("runctl:protected", "runctl:important", "runctl:persistent")
    )


def _managed(facts: ResourceFacts) -> bool:
    tags = facts.instance.tags
    return (
        tags.get("runctl:managed", "").lower() == "true"
        or tags.get("CreatedBy", "").lower() == "runctl"
        or bool(tags.get("runctl:user"))
    )


def _kept(facts: ResourceFacts, now: datetime) -> bool:
    if facts.kept_until is not None and now < facts.kept_until:
        return True
    raw = facts.instance.tags.get("runctl:keep-until", "").strip()
    if not raw:
        return False
    if raw.lower() == "never":
        return True
    try:
        until = datetime.fromisoformat(raw)
    except ValueError:
        return True  # unreadable: kept
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return now < until


def _local(now: datetime, zone: str | None) -> datetime:
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except Exception:
        tz = ZoneInfo("UTC")
    return now.astimezone(tz)


def _in_working_hours(now: datetime, zone: str | None) -> bool:
    local = _local(now, zone)
    return local.weekday() < 5 and 8 <= local.hour < 20


def _idle_proven(facts: ResourceFacts, now: datetime) -> bool:
    v = facts.idle
    if v is None or v.instance_id != facts.instance.id or not v.idle:
        return False
    if not (now - timedelta(minutes=15) <= v.as_of <= now + timedelta(minutes=1)):
        return False
    cpu = [m for m in v.metrics if m.metric == "cpu"]
    if not cpu:
        return False
    return all(
        m.received / m.expected >= 0.8 and m.maximum is not None and m.maximum < 5.0 for m in v.metrics
    )


def _automatic_violations(
    action: Action, facts: ResourceFacts, ctx: SafetyContext, *, always_working: bool = False
) -> list[str]:
    """Why the bot must not do `action` on its own; an allowed verdict must have none."""
    now, inst = ctx.now, facts.instance
    problems = []
    if not _managed(facts):
        problems.append("unmanaged")
    if _protected(facts):
        problems.append("protected")
    if now - inst.launch_time < timedelta(hours=2):
        problems.append("too young")
    if _kept(facts, now):
        problems.append("kept")
    if facts.running_job is not None or not facts.jobs_known:
        problems.append("job running or unknown")
    if not _idle_proven(facts, now):
        problems.append("idle not proven (busy, stale or data missing)")
    if inst.state is not InstanceState.RUNNING:
        problems.append("not running")
    if not always_working and not _in_working_hours(now, facts.owner_timezone):
        problems.append("quiet hours")
    if action is not Action.IDLE_REMIND:
        if not is_known_timezone(facts.owner_timezone):
            problems.append("owner time zone unknown")
        if facts.notified_at is None or now < facts.notified_at + timedelta(hours=1):
            problems.append("grace not over since notification")
        if ctx.dry_run:
            problems.append("dry run")
        if not ctx.breaker_approved:
            cap = min(10, math.floor(Fraction(1, 4) * ctx.fleet_size))
            if ctx.actions_this_cycle + 1 > cap:
                problems.append("breaker")
    return problems


def _consistent(verdict: Verdict) -> None:
    assert verdict.allowed == (verdict.rule is None)
    assert verdict.reason
    assert len(set(verdict.rules)) == len(verdict.rules)
    if verdict.overridden:
        assert verdict.evidence["force"] == "honoured"


contexts = st.builds(
    SafetyContext,
    now=nows,
    actor=actors,
    automatic=st.booleans(),
    force=st.booleans(),
    dry_run=st.booleans(),
    fleet_size=st.integers(0, 60),
    actions_this_cycle=st.integers(0, 12),
    breaker_approved=st.booleans() | st.just(False),
)


@PROPS
@given(data=st.data(), ctx=contexts, action=st.sampled_from(AUTOMATIC_ACTIONS))
def test_no_automatic_action_is_allowed_on_a_machine_any_rule_protects(
    data: st.DataObject, ctx: SafetyContext, action: Action
) -> None:
    ctx = replace(ctx, automatic=True)
    facts = data.draw(facts_for("i-0prop", ctx.now))
    verdict = evaluate(action, facts, ctx)
    _consistent(verdict)
    if verdict.allowed:
        assert _automatic_violations(action, facts, ctx) == []
    else:
        assert verdict.rule is not None


@PROPS
@given(now=nows, data=st.data())
def test_a_machine_that_passes_every_rule_is_allowed(now: datetime, data: st.DataObject) -> None:
    """The converse, so the rules are not simply refusing everything."""
    ctx = SafetyContext(now=now, automatic=True, fleet_size=100)
    facts = data.draw(facts_for("i-0prop", now))
    for action in AUTOMATIC_ACTIONS:
        verdict = evaluate(action, facts, ctx)
        if not _automatic_violations(action, facts, ctx):
            assert verdict.allowed, verdict.reason


@PROPS
@given(data=st.data(), ctx=contexts, action=st.sampled_from(ALL_ACTIONS))
def test_force_never_changes_an_automatic_verdict_and_only_counts_for_admins(
    data: st.DataObject, ctx: SafetyContext, action: Action
) -> None:
    facts = data.draw(facts_for("i-0prop", ctx.now))
    forced = evaluate(action, facts, replace(ctx, force=True))
    plain = evaluate(action, facts, replace(ctx, force=False))
    _consistent(forced)
    _consistent(plain)
    if ctx.is_automatic(action) or not ctx.actor.is_admin:
        assert (forced.allowed, forced.rule, forced.also) == (plain.allowed, plain.rule, plain.also)
        assert forced.overridden == ()
    else:
        # An admin's force only ever removes forceable rules; it never adds a refusal.
        assert set(forced.rules) <= set(plain.rules)
        assert set(forced.overridden) <= {Rule.MANAGED_ONLY, Rule.PROTECTED, Rule.TRAINING_JOB, Rule.MIN_AGE}
        assert set(plain.rules) - set(forced.rules) == set(forced.overridden)


@PROPS
@given(data=st.data(), ctx=contexts, action=st.sampled_from([Action.STOP, Action.TERMINATE]))
def test_commands_on_protected_unmanaged_young_or_busy_machines_need_an_admins_force(
    data: st.DataObject, ctx: SafetyContext, action: Action
) -> None:
    ctx = replace(ctx, automatic=False)
    facts = data.draw(facts_for("i-0prop", ctx.now))
    verdict = evaluate(action, facts, ctx)
    risky = (
        _protected(facts)
        or not _managed(facts)
        or facts.running_job is not None
        or ctx.now - facts.instance.launch_time < timedelta(minutes=5)
    )
    if verdict.allowed and risky:
        assert ctx.force and ctx.actor.is_admin
        assert verdict.overridden
    if verdict.allowed:
        assert not ctx.dry_run
        assert facts.instance.state not in {InstanceState.TERMINATED, InstanceState.TERMINATING}


@PROPS
@given(data=st.data(), ctx=contexts)
def test_the_breaker_never_lets_more_through_than_its_cap(data: st.DataObject, ctx: SafetyContext) -> None:
    ctx = replace(ctx, automatic=True, breaker_approved=False, policy=ALWAYS)
    count = data.draw(st.integers(0, 16))
    fleet = [data.draw(facts_for(f"i-{n:03d}", ctx.now)) for n in range(count)]
    # Make a good part of the fleet stoppable, so the cap is actually reached.
    ready = data.draw(st.integers(0, count))
    fleet = [_make_ready(f, ctx.now) if i < ready else f for i, f in enumerate(fleet)]
    result = evaluate_batch(Action.IDLE_STOP, fleet, ctx)
    cap = min(10, math.floor(Fraction(1, 4) * ctx.fleet_size))
    allowed = len(result.allowed)
    assert result.breaker_cap == cap
    assert ctx.actions_this_cycle + allowed <= cap or allowed == 0
    assert allowed <= 10
    assert allowed <= math.floor(ctx.fleet_size / 4)
    assert len(result.verdicts) + len(result.errors) == count
    for verdict in result.verdicts:
        _consistent(verdict)
        if verdict.allowed:
            facts = next(f for f in fleet if f.instance.id == verdict.instance_id)
            unbounded_ctx = replace(ctx, breaker_approved=True)
            assert _automatic_violations(Action.IDLE_STOP, facts, unbounded_ctx, always_working=True) == []
    # Not tripped: the breaker dropped nothing that every other rule allowed.
    if not result.breaker_tripped:
        unbounded = evaluate_batch(Action.IDLE_STOP, fleet, replace(ctx, breaker_approved=True))
        assert [v.allowed for v in result.verdicts] == [v.allowed for v in unbounded.verdicts]


def _make_ready(facts: ResourceFacts, now: datetime) -> ResourceFacts:
    return replace(
        facts,
        instance=make_instance(facts.instance.id, now=now),
        idle=idle_evidence(facts.instance.id, now),
        running_job=None,
        jobs_known=True,
        owner_timezone="UTC",
        notified_at=now - timedelta(hours=3),
        kept_until=None,
    )


@PROPS
@given(data=st.data(), now=nows, action=st.sampled_from(ALL_ACTIONS))
def test_evaluation_is_deterministic_and_never_raises(
    data: st.DataObject, now: datetime, action: Action
) -> None:
    facts = data.draw(facts_for("i-0prop", now))
    ctx = SafetyContext(now=now, actor=ADMIN, force=data.draw(st.booleans()), fleet_size=20)
    first, second = evaluate(action, facts, ctx), evaluate(action, facts, ctx)
    assert first == second
    _consistent(first)
    assert first.evidence["instance_id"] == "i-0prop"
