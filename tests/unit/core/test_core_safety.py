"""The safety rules on hand-built cases: each rule, its sentence, its evidence and its place in the order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.policy import BreakerPolicy, SafetyPolicy
from bot.core.safety import (
    Action,
    Actor,
    ResourceFacts,
    Role,
    Rule,
    SafetyContext,
    evaluate,
    evaluate_batch,
    format_duration,
    parse_keep_until,
)
from providers.base import InstanceState
from tests.unit.core.core_factories import (
    ADMIN,
    MANAGED_TAGS,
    NOW,
    USER,
    auto_context,
    busy_evidence,
    command_context,
    idle_evidence,
    make_instance,
    missing_evidence,
    ready_facts,
)


def test_a_ready_machine_may_be_idle_stopped() -> None:
    verdict = evaluate(Action.IDLE_STOP, ready_facts(), auto_context())
    assert verdict.allowed
    assert verdict.rule is None and verdict.also == ()
    assert verdict.reason == "stop (idle) i-0abc: every rule passed"
    assert verdict.evidence["automatic"] is True
    assert verdict.at == NOW


def test_protected_tag_blocks_automatic_stop_with_a_sentence_and_evidence() -> None:
    facts = ready_facts(instance=make_instance(tags={**MANAGED_TAGS, "runctl:protected": "true"}))
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert not verdict.allowed
    assert verdict.rule is Rule.PROTECTED
    assert verdict.reason.startswith("i-0abc is protected by tag runctl:protected=true")
    assert verdict.evidence["protection_tag"] == "runctl:protected"


@pytest.mark.parametrize("tag", ["runctl:important", "runctl:persistent"])
def test_the_cli_protection_tags_count_too(tag: str) -> None:
    facts = ready_facts(instance=make_instance(tags={**MANAGED_TAGS, tag: "TRUE"}))
    assert evaluate(Action.IDLE_STOP, facts, auto_context()).rule is Rule.PROTECTED
    assert evaluate(Action.STOP, facts, command_context()).rule is Rule.PROTECTED


def test_protected_is_reported_before_a_younger_age() -> None:
    facts = ready_facts(
        instance=make_instance(age=timedelta(minutes=1), tags={**MANAGED_TAGS, "runctl:protected": "true"})
    )
    verdict = evaluate(Action.STOP, facts, command_context())
    assert verdict.rule is Rule.PROTECTED
    assert verdict.also == (Rule.MIN_AGE,)


def test_unmanaged_machines_are_never_touched_automatically() -> None:
    facts = ready_facts(instance=make_instance(tags={"Name": "someone-elses"}))
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert verdict.rule is Rule.MANAGED_ONLY
    assert "only list it" in verdict.reason


def test_runctl_cli_machines_count_as_managed() -> None:
    facts = ready_facts(instance=make_instance(tags={"CreatedBy": "runctl", "runctl:user": "alice"}))
    assert evaluate(Action.IDLE_STOP, facts, auto_context()).allowed


def test_commands_on_unmanaged_machines_need_an_admin_with_force() -> None:
    facts = ResourceFacts(make_instance(tags={}))
    user = evaluate(Action.STOP, facts, command_context(USER))
    assert user.rule is Rule.MANAGED_ONLY
    assert "only an admin with --force" in user.reason
    user_forcing = evaluate(Action.STOP, facts, command_context(USER, force=True))
    assert user_forcing.rule is Rule.MANAGED_ONLY
    assert "--force was ignored" in user_forcing.reason
    assert user_forcing.evidence["force"] == "ignored: only admins may force"
    admin = evaluate(Action.STOP, facts, command_context(ADMIN, force=True))
    assert admin.allowed
    assert admin.overridden == (Rule.MANAGED_ONLY,)
    assert "allowed by --force from <@U0ADMIN> over managed_only" in admin.reason


def test_admin_force_overrides_protection_age_and_job_but_not_state() -> None:
    facts = ResourceFacts(
        make_instance(age=timedelta(minutes=1), tags={**MANAGED_TAGS, "runctl:protected": "true"}),
        running_job="job-3",
    )
    forced = evaluate(Action.TERMINATE, facts, command_context(ADMIN, force=True))
    assert forced.allowed
    assert set(forced.overridden) == {Rule.PROTECTED, Rule.TRAINING_JOB, Rule.MIN_AGE}
    stopped = replace(facts, instance=replace(facts.instance, state=InstanceState.STOPPED))
    verdict = evaluate(Action.STOP, stopped, command_context(ADMIN, force=True))
    assert verdict.rule is Rule.STATE
    assert verdict.reason == "i-0abc is already stopped"


def test_force_never_applies_to_automatic_actions() -> None:
    facts = ready_facts(instance=make_instance(tags={**MANAGED_TAGS, "runctl:protected": "true"}))
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context(actor=ADMIN, force=True))
    assert verdict.rule is Rule.PROTECTED
    assert verdict.overridden == ()
    assert verdict.evidence["force"] == "ignored: automatic action"


def test_minimum_age_for_commands_is_five_minutes() -> None:
    young = ResourceFacts(make_instance(age=timedelta(minutes=4, seconds=59)))
    verdict = evaluate(Action.STOP, young, command_context())
    assert verdict.rule is Rule.MIN_AGE
    assert "nothing younger than 5 min is stopped without --force" in verdict.reason
    assert verdict.evidence["min_age_minutes"] == 5
    old_enough = ResourceFacts(make_instance(age=timedelta(minutes=5)))
    assert evaluate(Action.STOP, old_enough, command_context()).allowed
    terminate = evaluate(Action.TERMINATE, young, command_context())
    assert "is terminated without --force" in terminate.reason


def test_idle_rules_wait_two_hours_from_launch() -> None:
    facts = ready_facts(instance=make_instance(age=timedelta(hours=1, minutes=59)))
    verdict = evaluate(Action.IDLE_REMIND, facts, auto_context())
    assert verdict.rule is Rule.MIN_AGE
    assert "idle rules wait until a machine is 2 h old" in verdict.reason
    assert evaluate(
        Action.IDLE_REMIND, ready_facts(instance=make_instance(age=timedelta(hours=2))), auto_context()
    ).allowed


def test_a_launch_time_in_the_future_is_too_young() -> None:
    facts = ready_facts(instance=make_instance(age=-timedelta(minutes=3)))
    assert evaluate(Action.IDLE_STOP, facts, auto_context()).rule is Rule.MIN_AGE


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ((NOW + timedelta(hours=1)).isoformat(), True),
        ("2026-03-04T10:30:00Z", True),
        ("2026-03-04T10:30:00", True),  # no offset: UTC by the tag schema
        ("2026-03-04T11:30:00+02:00", False),  # 09:30 UTC, already past
        ((NOW - timedelta(minutes=1)).isoformat(), False),
        ("never", True),
        ("Never", True),
        ("next tuesday", True),  # unreadable: kept, fail safe
        ("", False),
    ],
)
def test_keep_until_tag(value: str, kept: bool) -> None:
    facts = ready_facts(instance=make_instance(tags={**MANAGED_TAGS, "runctl:keep-until": value}))
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert (verdict.rule is Rule.KEEP_UNTIL) is kept


def test_an_unreadable_keep_until_says_so() -> None:
    facts = ready_facts(instance=make_instance(tags={**MANAGED_TAGS, "runctl:keep-until": "soon"}))
    verdict = evaluate(Action.IDLE_REMIND, facts, auto_context())
    assert verdict.rule is Rule.KEEP_UNTIL
    assert "unreadable runctl:keep-until value 'soon'" in verdict.reason
    assert verdict.evidence["keep_until_malformed"] is True


def test_keep_until_does_not_block_a_persons_command() -> None:
    facts = ResourceFacts(make_instance(tags={**MANAGED_TAGS, "runctl:keep-until": "never"}))
    assert evaluate(Action.STOP, facts, command_context()).allowed


def test_a_keep_from_the_buttons_blocks_like_the_tag() -> None:
    facts = ready_facts(kept_until=NOW + timedelta(hours=4))
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert verdict.rule is Rule.KEEP_UNTIL
    assert "its owner chose Keep" in verdict.reason


def test_parse_keep_until() -> None:
    assert parse_keep_until(None) is None
    assert parse_keep_until("  ") is None
    never = parse_keep_until("never")
    assert never is not None and never.forever and never.keeps_at(NOW)
    parsed = parse_keep_until("2026-03-04T12:00:00+01:00")
    assert parsed is not None and parsed.until == datetime(2026, 3, 4, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (None, "there is no idle evidence for i-0abc"),
        (busy_evidence(), "i-0abc is not proven idle: CPU reached 60.0 %"),
        (missing_evidence(), "i-0abc is not proven idle: only 5 of 12 CPU datapoints"),
        (idle_evidence(now=NOW - timedelta(minutes=20)), "too old to act on"),
        (idle_evidence(iid="i-0other"), "there is no idle evidence for i-0abc"),
    ],
)
def test_idle_actions_need_fresh_proof(evidence: object, expected: str) -> None:
    facts = ready_facts(idle=evidence)
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert verdict.rule is Rule.NOT_IDLE
    assert expected in verdict.reason


def test_a_running_training_job_blocks_automatic_and_unforced_stops() -> None:
    facts = ready_facts(running_job="job-42")
    auto = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert auto.rule is Rule.TRAINING_JOB
    assert auto.reason == "training job job-42 is running on i-0abc"
    command = evaluate(Action.STOP, facts, command_context())
    assert command.rule is Rule.TRAINING_JOB
    assert "stop the job first" in command.reason
    assert evaluate(
        Action.START, replace(facts, instance=make_instance(state=InstanceState.STOPPED)), command_context()
    ).allowed


def test_unknown_job_status_blocks_only_automatic_actions() -> None:
    facts = ready_facts(jobs_known=False)
    assert evaluate(Action.IDLE_STOP, facts, auto_context()).rule is Rule.TRAINING_JOB
    assert evaluate(Action.STOP, facts, command_context()).allowed


def test_grace_runs_from_notification() -> None:
    notified = NOW - timedelta(minutes=59)
    verdict = evaluate(Action.IDLE_STOP, ready_facts(notified_at=notified), auto_context())
    assert verdict.rule is Rule.GRACE
    assert "grace period runs until 2026-03-04 10:01 UTC" in verdict.reason
    not_told = evaluate(Action.IDLE_STOP, ready_facts(notified_at=None), auto_context())
    assert not_told.rule is Rule.GRACE
    assert evaluate(
        Action.IDLE_STOP, ready_facts(notified_at=NOW - timedelta(minutes=60)), auto_context()
    ).allowed


def test_an_automatic_stop_is_judged_as_an_idle_stop() -> None:
    assert evaluate(Action.STOP, ready_facts(), auto_context()).allowed
    verdict = evaluate(Action.STOP, ready_facts(idle=None), auto_context())
    assert verdict.rule is Rule.NOT_IDLE
    assert verdict.action is Action.STOP


@pytest.mark.parametrize(
    "action", [Action.START, Action.TERMINATE, Action.PROTECT, Action.UNPROTECT, Action.KEEP]
)
def test_the_bot_never_does_these_on_its_own(action: Action) -> None:
    verdict = evaluate(action, ready_facts(), auto_context())
    assert verdict.rule is Rule.NEVER_AUTOMATIC
    assert "a person must ask" in verdict.reason


def test_quiet_hours_use_the_owners_zone_and_say_when_it_resumes() -> None:
    # Wednesday 10:00 UTC is 19:00 in Tokyo (inside) and 05:00 in New York (outside).
    assert evaluate(Action.IDLE_STOP, ready_facts(owner_timezone="Asia/Tokyo"), auto_context()).allowed
    verdict = evaluate(Action.IDLE_STOP, ready_facts(owner_timezone="America/New_York"), auto_context())
    assert verdict.rule is Rule.QUIET_HOURS
    assert "it is Wed 05:00 EST for the owner of i-0abc" in verdict.reason
    assert "(08:00-20:00 Mon-Fri); this waits until Wed 08:00" in verdict.reason
    assert verdict.evidence["working_hours_resume"] == "2026-03-04T13:00:00+00:00"


def test_an_unknown_zone_never_lets_an_automatic_stop_through() -> None:
    facts = ready_facts(owner_timezone="Mars/Olympus")
    verdict = evaluate(Action.IDLE_STOP, facts, auto_context())
    assert verdict.rule is Rule.QUIET_HOURS and verdict.evidence["timezone_unknown"] is True
    assert verdict.evidence["owner_timezone"] == "UTC"
    assert verdict.evidence["timezone_problem"] == "time zone 'Mars/Olympus' is unknown, so UTC was used"
    saturday = NOW + timedelta(days=3)
    held = evaluate(
        Action.IDLE_REMIND, ready_facts(now=saturday, owner_timezone=None), auto_context(now=saturday)
    )
    assert held.rule is Rule.QUIET_HOURS
    assert "the owner's time zone is unknown, so UTC was used" in held.reason


def test_quiet_hours_do_not_apply_to_commands() -> None:
    saturday_night = datetime(2026, 3, 7, 23, 0, tzinfo=UTC)
    facts = ResourceFacts(make_instance(now=saturday_night))
    assert evaluate(Action.STOP, facts, command_context(now=saturday_night)).allowed


@pytest.mark.parametrize(
    ("action", "state", "reason"),
    [
        (Action.STOP, InstanceState.STOPPED, "i-0abc is already stopped"),
        (Action.STOP, InstanceState.STOPPING, "i-0abc is already stopping"),
        (Action.STOP, InstanceState.STARTING, "i-0abc is still starting; it can be stopped once it runs"),
        (Action.START, InstanceState.RUNNING, "i-0abc is already running"),
        (Action.START, InstanceState.STOPPING, "i-0abc is still stopping; start it once it has stopped"),
        (
            Action.TERMINATE,
            InstanceState.TERMINATED,
            "i-0abc is terminated; there is nothing left to terminate",
        ),
        (
            Action.TERMINATE,
            InstanceState.TERMINATING,
            "i-0abc is terminating; there is nothing left to terminate",
        ),
        (Action.STOP, InstanceState.UNKNOWN, "the state of i-0abc is unknown; refresh it and try again"),
    ],
)
def test_state_rules(action: Action, state: InstanceState, reason: str) -> None:
    facts = ResourceFacts(make_instance(state=state))
    verdict = evaluate(action, facts, command_context())
    assert verdict.rule is Rule.STATE
    assert verdict.reason == reason


def test_terminate_works_from_stopped_and_start_from_stopped() -> None:
    stopped = ResourceFacts(make_instance(state=InstanceState.STOPPED))
    assert evaluate(Action.TERMINATE, stopped, command_context()).allowed
    assert evaluate(Action.START, stopped, command_context()).allowed


def test_protect_and_unprotect_state() -> None:
    plain = ResourceFacts(make_instance())
    protected = ResourceFacts(make_instance(tags={**MANAGED_TAGS, "runctl:persistent": "true"}))
    assert evaluate(Action.PROTECT, plain, command_context()).allowed
    assert evaluate(Action.PROTECT, protected, command_context()).reason == (
        "i-0abc is already protected (runctl:persistent=true)"
    )
    assert evaluate(Action.UNPROTECT, protected, command_context()).allowed
    assert evaluate(Action.UNPROTECT, plain, command_context()).rule is Rule.STATE


def test_starting_a_protected_machine_is_not_blocked() -> None:
    facts = ResourceFacts(
        make_instance(state=InstanceState.STOPPED, tags={**MANAGED_TAGS, "runctl:protected": "true"})
    )
    assert evaluate(Action.START, facts, command_context()).allowed


def test_dry_run_reports_what_it_would_do() -> None:
    verdict = evaluate(Action.IDLE_STOP, ready_facts(), auto_context(dry_run=True))
    assert not verdict.allowed
    assert verdict.rule is Rule.DRY_RUN
    assert verdict.would_allow
    assert verdict.reason == "dry run: would stop i-0abc (enforcement is off)"
    blocked = evaluate(Action.IDLE_STOP, ready_facts(idle=None), auto_context(dry_run=True))
    assert blocked.rule is Rule.NOT_IDLE
    assert blocked.also == (Rule.DRY_RUN,)
    assert not blocked.would_allow


def test_dry_run_does_not_hold_reminders() -> None:
    assert evaluate(Action.IDLE_REMIND, ready_facts(), auto_context(dry_run=True)).allowed


def test_single_evaluation_applies_the_breaker_for_automatic_stops() -> None:
    ctx = auto_context(fleet_size=8, actions_this_cycle=2)  # cap = min(10, 2)
    verdict = evaluate(Action.IDLE_STOP, ready_facts(), ctx)
    assert verdict.rule is Rule.CIRCUIT_BREAKER
    assert verdict.evidence["breaker_cap"] == 2
    assert "an admin must approve the batch" in verdict.reason
    assert evaluate(Action.IDLE_STOP, ready_facts(), replace(ctx, actions_this_cycle=1)).allowed
    assert evaluate(Action.IDLE_STOP, ready_facts(), replace(ctx, breaker_approved=True)).allowed
    assert evaluate(Action.STOP, ready_facts(), command_context(fleet_size=1, actions_this_cycle=9)).allowed


def _fleet(count: int) -> list[ResourceFacts]:
    return [ready_facts(f"i-{n:04d}") for n in range(count)]


def test_batch_within_the_cap_is_allowed() -> None:
    result = evaluate_batch(Action.IDLE_STOP, _fleet(3), auto_context(fleet_size=12))
    assert result.breaker_cap == 3
    assert not result.breaker_tripped
    assert len(result.allowed) == 3 and result.skipped == () and result.errors == ()


def test_batch_over_the_share_stops_up_to_the_cap_and_holds_the_rest_for_an_admin() -> None:
    fleet = _fleet(4)
    protected = ready_facts(
        "i-prot", instance=make_instance("i-prot", tags={**MANAGED_TAGS, "runctl:protected": "true"})
    )
    result = evaluate_batch(Action.IDLE_STOP, [*fleet, protected], auto_context(fleet_size=12))
    assert result.breaker_tripped and result.breaker_cap == 3  # 25 % of 12
    assert [v.instance_id for v in result.allowed] == [f.instance_id for f in fleet[:3]]
    assert [v.instance_id for v in result.held_by_breaker] == [fleet[3].instance_id]
    assert {v.rule for v in result.skipped} == {Rule.CIRCUIT_BREAKER, Rule.PROTECTED}
    held = result.held_by_breaker[0]
    assert held.evidence["actions_requested"] == 4
    approved = evaluate_batch(Action.IDLE_STOP, fleet, auto_context(fleet_size=12, breaker_approved=True))
    assert len(approved.allowed) == 4


def test_batch_counts_actions_already_taken_this_cycle() -> None:
    result = evaluate_batch(Action.IDLE_STOP, _fleet(2), auto_context(fleet_size=40, actions_this_cycle=9))
    assert result.breaker_cap == 10
    assert result.breaker_tripped


def test_batch_in_dry_run_reports_that_the_breaker_would_trip() -> None:
    result = evaluate_batch(Action.IDLE_STOP, _fleet(5), auto_context(fleet_size=8, dry_run=True))
    assert result.breaker_tripped and result.breaker_cap == 2
    first, rest = result.verdicts[:2], result.verdicts[2:]
    assert all(v.rule is Rule.DRY_RUN and v.would_allow for v in first)
    assert len(rest) == 3
    assert all(v.rule is Rule.CIRCUIT_BREAKER and v.also == (Rule.DRY_RUN,) for v in rest)
    small = evaluate_batch(Action.IDLE_STOP, _fleet(2), auto_context(fleet_size=8, dry_run=True))
    assert not small.breaker_tripped
    assert all(v.rule is Rule.DRY_RUN and v.would_allow for v in small.verdicts)


def test_a_command_cleanup_batch_is_bounded_too() -> None:
    facts = [ResourceFacts(make_instance(f"i-{n}")) for n in range(3)]
    result = evaluate_batch(Action.TERMINATE, facts, command_context(fleet_size=4))
    assert result.breaker_tripped and result.breaker_cap == 1
    assert [v.instance_id for v in result.allowed] == ["i-0"]
    assert [v.instance_id for v in result.held_by_breaker] == ["i-1", "i-2"]
    starts = evaluate_batch(
        Action.START,
        [ResourceFacts(make_instance(f"i-{n}", state=InstanceState.STOPPED)) for n in range(3)],
        command_context(fleet_size=4),
    )
    assert starts.breaker_cap is None and len(starts.allowed) == 3


def test_batch_reports_duplicates_and_unjudgeable_facts_as_errors() -> None:
    bad = ready_facts("i-bad", idle=idle_evidence("i-bad"), notified_at=datetime(2026, 3, 4, 8, 0))  # naive
    good = ready_facts("i-good")
    result = evaluate_batch(Action.IDLE_STOP, [good, good, bad], auto_context(fleet_size=100))
    assert [e.instance_id for e in result.errors] == ["i-good"]
    assert "listed twice" in result.errors[0].message
    # a naive notification time is read as UTC rather than failing the batch
    assert {v.instance_id for v in result.allowed} == {"i-good", "i-bad"}


def test_a_small_fleet_needs_an_admin_unless_a_minimum_allowance_is_set() -> None:
    strict = evaluate_batch(Action.IDLE_STOP, _fleet(1), auto_context(fleet_size=3))
    assert strict.breaker_cap == 0 and strict.breaker_tripped
    lenient = SafetyPolicy(breaker=BreakerPolicy(min_allowance=1))
    result = evaluate_batch(Action.IDLE_STOP, _fleet(1), auto_context(fleet_size=3, policy=lenient))
    assert result.breaker_cap == 1 and len(result.allowed) == 1


def test_context_requires_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SafetyContext(now=datetime(2026, 3, 4, 10, 0))


def test_actor_roles() -> None:
    assert ADMIN.is_admin and not USER.is_admin
    assert Actor("U1", frozenset({Role.APPROVER})).mention == "<@U1>"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0 min"),
        (timedelta(seconds=40), "40 s"),
        (timedelta(minutes=5), "5 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=1, minutes=30), "1 h 30 min"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2, hours=3), "2 days 3 h"),
        (timedelta(minutes=-3), "0 min"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
