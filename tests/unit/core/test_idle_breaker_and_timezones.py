"""The breaker lets the first stops through and holds the rest for an admin; a guessed zone never acts."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.core.approvals import Decision, Refusal, Transition, decide, new_approval
from bot.core.quiet_hours import check_working_time, is_known_timezone
from bot.core.safety import Action, Actor, ResourceFacts, Role, Rule, evaluate, evaluate_batch
from providers.aws.families import may_have_accelerators
from tests.unit.core.core_factories import (
    NOW,
    ZONES,
    auto_context,
    command_context,
    make_instance,
    ready_facts,
)


def _fleet(count: int) -> list[ResourceFacts]:
    return [ready_facts(f"i-{n:04d}") for n in range(count)]


def test_the_first_stops_up_to_the_cap_go_ahead_and_the_rest_are_held() -> None:
    result = evaluate_batch(Action.IDLE_STOP, _fleet(5), auto_context(fleet_size=12))  # cap: 25 % of 12 = 3
    assert result.breaker_cap == 3 and result.breaker_tripped
    assert [v.instance_id for v in result.allowed] == ["i-0000", "i-0001", "i-0002"]
    held = result.held_by_breaker
    assert [v.instance_id for v in held] == ["i-0003", "i-0004"]
    assert held[0].evidence["actions_allowed"] == 3 and held[0].evidence["actions_held"] == 2
    assert "the first 3 go ahead and i-0003 is one of the 2 held for an admin" in held[0].reason


def test_actions_already_taken_shrink_the_room_and_a_full_cycle_holds_everything() -> None:
    some = evaluate_batch(Action.IDLE_STOP, _fleet(3), auto_context(fleet_size=40, actions_this_cycle=9))
    assert [v.instance_id for v in some.allowed] == ["i-0000"] and len(some.held_by_breaker) == 2
    full = evaluate_batch(Action.IDLE_STOP, _fleet(2), auto_context(fleet_size=40, actions_this_cycle=10))
    assert full.allowed == () and len(full.held_by_breaker) == 2


def test_machines_other_rules_skip_do_not_use_up_the_cap() -> None:
    protected = ready_facts(
        "i-0000",
        instance=make_instance("i-0000", tags={"runctl:managed": "true", "runctl:protected": "true"}),
    )
    result = evaluate_batch(Action.IDLE_STOP, [protected, *_fleet(5)[1:]], auto_context(fleet_size=12))
    assert [v.instance_id for v in result.allowed] == ["i-0001", "i-0002", "i-0003"]
    assert [v.instance_id for v in result.held_by_breaker] == ["i-0004"]
    assert result.verdicts[0].rule is Rule.PROTECTED


def test_dry_run_reports_what_would_go_ahead_and_what_would_be_held() -> None:
    result = evaluate_batch(Action.IDLE_STOP, _fleet(5), auto_context(fleet_size=8, dry_run=True))  # cap 2
    assert result.breaker_tripped and result.allowed == ()
    would = [v for v in result.verdicts if v.would_allow]
    assert [v.instance_id for v in would] == ["i-0000", "i-0001"]
    held = result.held_by_breaker
    assert len(held) == 3 and all(v.also == (Rule.DRY_RUN,) for v in held)


def test_an_approved_batch_is_not_held() -> None:
    approved = evaluate_batch(Action.IDLE_STOP, _fleet(5), auto_context(fleet_size=12, breaker_approved=True))
    assert len(approved.allowed) == 5 and not approved.breaker_tripped


@given(count=st.integers(0, 30), fleet=st.integers(0, 60), done=st.integers(0, 12))
def test_never_more_than_the_cap_and_nothing_lost(count: int, fleet: int, done: int) -> None:
    ctx = auto_context(fleet_size=fleet, actions_this_cycle=done)
    result = evaluate_batch(Action.IDLE_STOP, _fleet(count), ctx)
    cap = ctx.policy.breaker.cap(fleet)
    assert len(result.allowed) <= max(0, cap - done)
    assert len(result.allowed) + len(result.held_by_breaker) == count
    assert len(result.allowed) == min(count, max(0, cap - done))


def test_an_unknown_owner_zone_never_stops_but_still_reminds() -> None:
    for zone in (None, "Mars/Olympus", ""):
        stop = evaluate(Action.IDLE_STOP, ready_facts(owner_timezone=zone), auto_context())
        assert stop.rule is Rule.QUIET_HOURS and stop.also == ()
        assert stop.evidence["timezone_unknown"] is True
        assert "the bot never stops a machine on a guessed time zone" in stop.reason
        remind = evaluate(Action.IDLE_REMIND, ready_facts(owner_timezone=zone), auto_context())
        assert remind.allowed  # Wednesday 10:00 UTC: a reminder may go out, timed in the default zone
        assert remind.evidence["timezone_problem"]
    bad = evaluate(Action.IDLE_STOP, ready_facts(owner_timezone="Mars/Olympus"), auto_context())
    assert "time zone 'Mars/Olympus' is unknown for i-0abc" in bad.reason


def test_a_manual_stop_is_not_held_by_an_unknown_zone() -> None:
    verdict = evaluate(Action.STOP, ready_facts(owner_timezone=None), command_context())
    assert verdict.allowed


def test_a_team_zone_standing_in_is_acted_on_with_its_note() -> None:
    facts = ready_facts(
        owner_timezone="Europe/Berlin", timezone_note="the team default Europe/Berlin was used"
    )
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert verdict.allowed
    assert verdict.evidence["timezone_note"] == "the team default Europe/Berlin was used"
    assert "timezone_unknown" not in verdict.evidence


@given(zone=st.sampled_from(ZONES), hours=st.integers(0, 24 * 14))
def test_a_known_zone_is_never_a_guess(zone: str, hours: int) -> None:
    check = check_working_time(NOW + timedelta(hours=hours), zone, auto_context().policy.working_hours)
    assert not check.guessed and check.cause is None and is_known_timezone(zone)


def test_only_admins_decide_a_breaker_batch_and_the_refusal_says_so() -> None:
    batch = new_approval("ap-9", "runctl-bot", NOW, action=Action.IDLE_STOP, instance_ids=["i-1", "i-2"])
    admins = frozenset({"U0ADM"})
    approver = Actor("U0APP", frozenset({Role.APPROVER}))
    refused = decide(batch, Decision.APPROVE, approver, NOW, admins, approver_setting="RUNCTL_ADMINS")
    assert isinstance(refused, Refusal)
    assert refused.message == "Only admins (RUNCTL_ADMINS) can approve or deny this, and <@U0APP> is not one."
    admin = Actor("U0ADM", frozenset({Role.ADMIN}))
    approved = decide(batch, Decision.APPROVE, admin, NOW, admins, approver_setting="RUNCTL_ADMINS")
    assert isinstance(approved, Transition) and approved.after.decided_by == "U0ADM"


def test_gpu_metric_is_asked_for_wherever_an_accelerator_may_be() -> None:
    accelerated = ["g5.xlarge", "g4ad.xlarge", "p5.48xlarge", "p6-b200.48xlarge", "gr6.4xlarge", "g6f.large"]
    accelerated += [
        "trn1.32xlarge",
        "inf2.xlarge",
        "dl1.24xlarge",
        "dl2q.24xlarge",
        "f1.2xlarge",
        "vt1.3xlarge",
    ]
    cpu_only = [
        "t3.micro",
        "m7g.large",
        "c7gn.16xlarge",
        "m7i-flex.large",
        "u-6tb1.112xlarge",
        "mac2-m2pro.metal",
    ]
    assert all(may_have_accelerators(t) for t in accelerated)
    assert not any(may_have_accelerators(t) for t in cpu_only)
    assert may_have_accelerators("G5.XLARGE")  # names are read case-insensitively
    assert all(may_have_accelerators(t) for t in (None, "", "weird"))  # unknown: fail safe
