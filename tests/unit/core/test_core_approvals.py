"""The approval state machine: two people, fail closed, expiry, one execution on a fresh re-check."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.approvals import (
    LAUNCH,
    TERMINAL,
    TRANSITIONS,
    ApprovalState,
    ApprovalStatus,
    Decision,
    Refusal,
    RefusalCode,
    Transition,
    approval_reasons,
    begin_execution,
    cancel,
    decide,
    expire,
    finish,
    new_approval,
)
from bot.core.policy import ApprovalPolicy
from bot.core.safety import Action, Actor, ResourceFacts, Role, Verdict, evaluate
from providers.base import InstanceState
from tests.unit.core.core_factories import MANAGED_TAGS, NOW, command_context, make_instance

REQUESTER = Actor("U0REQ", frozenset({Role.USER}))
APPROVER = Actor("U0APP", frozenset({Role.APPROVER}))
OUTSIDER = Actor("U0OUT", frozenset({Role.USER}))
ADMIN = Actor("U0ADM", frozenset({Role.ADMIN}))
APPROVERS = frozenset({"U0APP", "U0REQ"})  # the requester is an approver too, and still may not self-approve


def pending(**changes: object) -> ApprovalState:
    state = new_approval("ap-1", REQUESTER.user_id, NOW, action=Action.TERMINATE, instance_ids=["i-1", "i-2"])
    return replace(state, **changes)  # type: ignore[arg-type]


def applied(result: Transition | Refusal) -> ApprovalState:
    assert isinstance(result, Transition), result
    return result.after


def verdicts(at_offset: timedelta, *, skip: frozenset[str] = frozenset()) -> list[Verdict]:
    out = []
    for iid in ("i-1", "i-2"):
        tags = {**MANAGED_TAGS, "runctl:protected": "true"} if iid in skip else MANAGED_TAGS
        facts = ResourceFacts(make_instance(iid, now=NOW + at_offset, tags=tags))
        out.append(evaluate(Action.TERMINATE, facts, command_context(REQUESTER, now=NOW + at_offset)))
    return out


def approved() -> ApprovalState:
    return applied(decide(pending(), Decision.APPROVE, APPROVER, NOW + timedelta(minutes=5), APPROVERS))


def test_a_new_request_is_pending_and_expires_in_thirty_minutes() -> None:
    state = pending()
    assert state.status is ApprovalStatus.PENDING
    assert state.expires_at == NOW + timedelta(minutes=30)
    assert state.instance_ids == ("i-1", "i-2")


def test_an_approver_approves() -> None:
    result = decide(pending(), Decision.APPROVE, APPROVER, NOW + timedelta(minutes=5), APPROVERS)
    assert isinstance(result, Transition)
    assert (result.from_status, result.to_status) == (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
    assert result.after.decided_by == "U0APP"
    assert result.after.decided_at == NOW + timedelta(minutes=5)
    assert result.message == "approved by <@U0APP>"


def test_an_approver_denies() -> None:
    after = applied(decide(pending(), Decision.DENY, APPROVER, NOW, APPROVERS))
    assert after.status is ApprovalStatus.DENIED
    assert after.reason == "denied by <@U0APP>"


def test_the_requester_cannot_approve_but_can_withdraw() -> None:
    refusal = decide(pending(), Decision.APPROVE, REQUESTER, NOW, APPROVERS)
    assert isinstance(refusal, Refusal)
    assert refusal.code is RefusalCode.SELF_APPROVAL
    assert "someone else must approve it" in refusal.message
    withdrawn = applied(decide(pending(), Decision.DENY, REQUESTER, NOW, APPROVERS))
    assert withdrawn.status is ApprovalStatus.CANCELLED


def test_only_approvers_decide() -> None:
    refusal = decide(pending(), Decision.APPROVE, OUTSIDER, NOW, APPROVERS)
    assert isinstance(refusal, Refusal)
    assert refusal.code is RefusalCode.NOT_APPROVER
    assert (
        refusal.message
        == "Only approvers (RUNCTL_APPROVERS) can approve or deny this, and <@U0OUT> is not one."
    )
    # A role on the actor is not enough: the configured set is the approver role.
    assert isinstance(decide(pending(), Decision.APPROVE, ADMIN, NOW, APPROVERS), Refusal)


def test_no_approvers_configured_fails_closed_and_says_how_to_fix_it() -> None:
    refusal = decide(pending(), Decision.APPROVE, APPROVER, NOW, frozenset())
    assert isinstance(refusal, Refusal)
    assert refusal.code is RefusalCode.NO_APPROVERS
    assert "RUNCTL_APPROVERS" in refusal.message
    assert "nothing can be approved" in refusal.message
    batch = decide(pending(), Decision.APPROVE, ADMIN, NOW, frozenset(), approver_setting="RUNCTL_ADMINS")
    assert isinstance(batch, Refusal) and "RUNCTL_ADMINS" in batch.message


def test_a_second_decision_is_refused_and_names_the_first_approver() -> None:
    state = approved()
    again = decide(state, Decision.APPROVE, Actor("U0TWO"), NOW + timedelta(minutes=6), APPROVERS | {"U0TWO"})
    assert isinstance(again, Refusal)
    assert again.code is RefusalCode.ALREADY_DECIDED
    assert again.message == "Already approved by <@U0APP>."
    denied = applied(decide(pending(), Decision.DENY, APPROVER, NOW, APPROVERS))
    refusal = decide(denied, Decision.APPROVE, APPROVER, NOW, APPROVERS)
    assert isinstance(refusal, Refusal) and refusal.message == "Already denied by <@U0APP>."


def test_a_click_after_expiry_expires_the_request() -> None:
    result = decide(pending(), Decision.APPROVE, APPROVER, NOW + timedelta(minutes=30), APPROVERS)
    assert isinstance(result, Transition)
    assert result.to_status is ApprovalStatus.EXPIRED
    assert "expired at 2026-03-04 10:30 UTC" in result.message
    later = decide(result.after, Decision.APPROVE, APPROVER, NOW + timedelta(minutes=31), APPROVERS)
    assert isinstance(later, Refusal)
    assert "expired" in later.message


def test_expiry_is_configurable() -> None:
    state = new_approval(
        "ap-2", "U0REQ", NOW, action=LAUNCH, policy=ApprovalPolicy(expiry=timedelta(hours=1))
    )
    assert state.expires_at == NOW + timedelta(hours=1)
    assert expire(state, NOW + timedelta(minutes=59)) is None
    moved = expire(state, NOW + timedelta(hours=1))
    assert moved is not None and moved.to_status is ApprovalStatus.EXPIRED


def test_execution_needs_a_fresh_check_and_runs_once() -> None:
    state = approved()
    stale = begin_execution(state, verdicts(timedelta(minutes=1)), NOW + timedelta(minutes=6))
    assert isinstance(stale, Refusal) and stale.code is RefusalCode.STALE_CHECK
    missing = begin_execution(state, verdicts(timedelta(minutes=6))[:1], NOW + timedelta(minutes=6))
    assert isinstance(missing, Refusal) and "No fresh safety check for i-2" in missing.message
    started = begin_execution(state, verdicts(timedelta(minutes=6)), NOW + timedelta(minutes=6))
    assert isinstance(started, Transition)
    assert started.to_status is ApprovalStatus.EXECUTING
    assert started.proceed == ("i-1", "i-2")
    twice = begin_execution(started.after, verdicts(timedelta(minutes=7)), NOW + timedelta(minutes=7))
    assert isinstance(twice, Refusal) and twice.code is RefusalCode.ALREADY_EXECUTED
    done = applied(finish(started.after, NOW + timedelta(minutes=8), succeeded=True))
    assert done.status is ApprovalStatus.SUCCEEDED
    assert isinstance(begin_execution(done, verdicts(timedelta(minutes=9)), NOW), Refusal)


def test_execution_refuses_a_check_for_another_action() -> None:
    state = approved()
    stop_verdicts = [
        evaluate(
            Action.STOP, ResourceFacts(make_instance(i)), command_context(now=NOW + timedelta(minutes=6))
        )
        for i in ("i-1", "i-2")
    ]
    refusal = begin_execution(state, stop_verdicts, NOW + timedelta(minutes=6))
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.STALE_CHECK


def test_machines_the_recheck_skips_are_dropped() -> None:
    started = begin_execution(
        approved(), verdicts(timedelta(minutes=6), skip=frozenset({"i-2"})), NOW + timedelta(minutes=6)
    )
    assert isinstance(started, Transition)
    assert started.proceed == ("i-1",)
    assert [v.instance_id for v in started.dropped] == ["i-2"]
    assert "skipped now: i-2 is protected" in started.message


def test_when_the_recheck_skips_everything_the_request_is_cancelled() -> None:
    all_skipped = verdicts(timedelta(minutes=6), skip=frozenset({"i-1", "i-2"}))
    result = begin_execution(approved(), all_skipped, NOW + timedelta(minutes=6))
    assert isinstance(result, Transition)
    assert result.to_status is ApprovalStatus.CANCELLED
    assert result.after.reason.startswith("the rules no longer allow it: i-1 is protected")


def test_execution_after_expiry_expires_instead() -> None:
    late = NOW + timedelta(minutes=31)
    result = begin_execution(approved(), verdicts(timedelta(minutes=31)), late)
    assert isinstance(result, Transition) and result.to_status is ApprovalStatus.EXPIRED


def test_a_launch_approval_has_no_machines_to_check() -> None:
    state = new_approval("ap-3", "U0REQ", NOW, action=LAUNCH)
    state = applied(decide(state, Decision.APPROVE, APPROVER, NOW, APPROVERS))
    started = begin_execution(state, [], NOW + timedelta(minutes=1))
    assert isinstance(started, Transition) and started.to_status is ApprovalStatus.EXECUTING
    failed = applied(finish(started.after, NOW, succeeded=False, detail="InsufficientInstanceCapacity"))
    assert failed.status is ApprovalStatus.FAILED
    assert failed.reason == "InsufficientInstanceCapacity"


def test_cancel_by_requester_or_admin_only() -> None:
    assert applied(cancel(pending(), REQUESTER, NOW)).status is ApprovalStatus.CANCELLED
    assert applied(cancel(approved(), ADMIN, NOW, reason="machine gone")).reason == "machine gone"
    refusal = cancel(pending(), OUTSIDER, NOW)
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.NOT_PERMITTED
    started = begin_execution(approved(), verdicts(timedelta(minutes=6)), NOW + timedelta(minutes=6))
    assert isinstance(started, Transition)
    assert isinstance(cancel(started.after, ADMIN, NOW), Refusal)


def test_finish_needs_executing() -> None:
    refusal = finish(pending(), NOW, succeeded=True)
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.NOT_EXECUTING


def test_the_transition_table_is_closed() -> None:
    assert set(TRANSITIONS) == set(ApprovalStatus)
    assert {
        ApprovalStatus.DENIED,
        ApprovalStatus.EXPIRED,
        ApprovalStatus.CANCELLED,
        ApprovalStatus.SUCCEEDED,
        ApprovalStatus.FAILED,
    } == TERMINAL


def test_approval_reasons() -> None:
    assert approval_reasons(Action.TERMINATE) == ("terminating cannot be undone",)
    assert approval_reasons(Action.STOP, hourly_usd=Decimal(100)) == ()
    assert approval_reasons(LAUNCH, hourly_usd=Decimal("1.006")) == ()
    assert approval_reasons(LAUNCH, hourly_usd=Decimal("5.00")) == ()
    assert approval_reasons(LAUNCH, hourly_usd=7.2) == ("$7.20/h is above the $5.00/h approval threshold",)
    assert len(approval_reasons(LAUNCH, hourly_usd=12.24)) == 2  # above the threshold and the user's $/h
    assert approval_reasons(Action.START, hourly_usd=1, user_running=4) == (
        "it would be machine number 5 for the requester (limit 4 without approval)",
    )
    assert approval_reasons(LAUNCH, hourly_usd=Decimal(3), user_hourly_usd=Decimal("7.5")) == (
        "the requester's machines would cost $10.50/h (limit $10.00/h without approval)",
    )


# ---- properties -----------------------------------------------------------------------------------

APPROVER2 = Actor("U0APP2", frozenset({Role.APPROVER}))
PEOPLE = [REQUESTER, APPROVER, OUTSIDER, ADMIN, APPROVER2]
_random_ops = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.sampled_from(list(Decision)), st.sampled_from(PEOPLE)),
        st.tuples(st.just("cancel"), st.sampled_from(PEOPLE)),
        st.tuples(st.just("expire")),
        st.tuples(st.just("execute"), st.booleans(), st.booleans()),
        st.tuples(st.just("finish"), st.booleans()),
        st.tuples(st.just("wait"), st.integers(0, 20)),
    ),
    max_size=8,
)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[object, ...]]:
    """Random operations around an approve-then-execute path, so execution is actually reached."""
    ops = draw(_random_ops)
    if draw(st.integers(0, 7)):
        ops.append(("decide", Decision.APPROVE, APPROVER))
    ops += draw(_random_ops)
    if draw(st.integers(0, 7)):
        ops.append(("execute", True, draw(st.booleans())))
    ops += draw(_random_ops)
    return ops


@settings(max_examples=300, deadline=None)
@given(
    ops=operations(),
    approvers=st.sampled_from([frozenset(), frozenset({"U0APP"}), frozenset({"U0APP", "U0APP2", "U0REQ"})]),
)
def test_the_machine_never_executes_twice_self_approves_or_runs_late_or_unchecked(
    ops: list[tuple[object, ...]], approvers: frozenset[str]
) -> None:
    state = pending()
    now = NOW
    executions = 0
    for op in ops:
        kind = op[0]
        result: Transition | Refusal | None
        if kind == "decide":
            _, decision, actor = op
            assert isinstance(decision, Decision) and isinstance(actor, Actor)
            result = decide(state, decision, actor, now, approvers)
        elif kind == "cancel":
            actor = op[1]
            assert isinstance(actor, Actor)
            result = cancel(state, actor, now)
        elif kind == "expire":
            result = expire(state, now)
        elif kind == "execute":
            _, fresh, protected = op
            offset = (now - NOW) if fresh else timedelta(minutes=-1)
            checks = verdicts(offset, skip=frozenset({"i-1", "i-2"}) if protected else frozenset())
            result = begin_execution(state, checks, now)
            if isinstance(result, Transition) and result.to_status is ApprovalStatus.EXECUTING:
                executions += 1
                assert state.status is ApprovalStatus.APPROVED
                assert now < state.expires_at
                assert not protected
                assert state.decided_at is not None and all(v.at >= state.decided_at for v in checks)
                assert result.proceed and all(v.allowed for v in checks if v.instance_id in result.proceed)
        elif kind == "finish":
            result = finish(state, now, succeeded=bool(op[1]))
        else:
            minutes = op[1]
            assert isinstance(minutes, int)
            now += timedelta(minutes=minutes)
            continue
        if isinstance(result, Transition):
            # Compare-and-set: the row still holds `from_status`, and the move is in the table.
            assert result.from_status is state.status
            assert result.to_status in TRANSITIONS[state.status]
            if result.to_status is ApprovalStatus.APPROVED:
                assert result.after.decided_by != state.requester
                assert result.after.decided_by in approvers
                assert now < state.expires_at
            state = result.after
        assert executions <= 1
    if state.status in {ApprovalStatus.EXECUTING, ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED}:
        assert executions == 1
        assert state.decided_by in approvers and state.decided_by != REQUESTER.user_id
    if not approvers:
        assert state.status not in {ApprovalStatus.APPROVED, ApprovalStatus.EXECUTING}


def test_a_stopped_machine_dropped_from_a_batch_is_reported() -> None:
    state = approved()
    facts = [
        ResourceFacts(make_instance("i-1", now=NOW + timedelta(minutes=6))),
        ResourceFacts(make_instance("i-2", now=NOW + timedelta(minutes=6), state=InstanceState.TERMINATED)),
    ]
    checks = [evaluate(Action.TERMINATE, f, command_context(now=NOW + timedelta(minutes=6))) for f in facts]
    started = begin_execution(state, checks, NOW + timedelta(minutes=6))
    assert isinstance(started, Transition)
    assert started.proceed == ("i-1",)
    assert started.dropped[0].reason == "i-2 is terminated; there is nothing left to terminate"


def test_a_launch_with_an_unknown_price_needs_an_approver() -> None:
    from bot.core.approvals import LAUNCH, approval_reasons

    reasons = approval_reasons(LAUNCH, hourly_usd=None, user_running=0, user_hourly_usd=0)
    assert any("price is unknown" in r for r in reasons)
