"""OperationRepository and ApprovalRepository: creation, compare-and-set transitions, queries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from storage.errors import AlreadyExists
from storage.models import Approval, ApprovalStatus, Operation
from storage.repositories import Repositories

At = Callable[[float], datetime]


def _operation(at: At, *, kind: str = "launch", status: str = "pending", minutes: float = 0) -> Operation:
    return Operation(
        id=uuid.uuid4().hex,
        kind=kind,
        requester="U1",
        channel="C1",
        status=status,
        params={"instance_type": "g5.xlarge", "spot": True, "nested": {"gpus": [1, 2]}},
        instance_ids=[],
        created_at=at(minutes),
        updated_at=at(minutes),
    )


def _approval(op: Operation, at: At, *, expires_in: float = 30) -> Approval:
    return Approval(
        id=uuid.uuid4().hex,
        operation_id=op.id,
        requester=op.requester,
        created_at=at(0),
        expires_at=at(expires_in),
    )


def test_operation_round_trip_keeps_json_and_nulls(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at))
    stored = repos.operations.get(op.id)
    assert stored is not None
    assert stored.params == {"instance_type": "g5.xlarge", "spot": True, "nested": {"gpus": [1, 2]}}
    assert stored.instance_ids == []
    assert (stored.result, stored.error, stored.slack_ts, stored.version) == (None, None, None, 0)
    assert (stored.created_at, stored.updated_at) == (at(0), at(0))
    assert repos.operations.get("nope") is None


def test_creating_the_same_operation_twice_raises_already_exists(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at))
    again = _operation(at)
    again.id = op.id
    with pytest.raises(AlreadyExists) as info:
        repos.operations.create(again)
    assert (info.value.table, info.value.key) == ("operations", op.id)


def test_transition_is_compare_and_set_on_status_and_version(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at))

    assert repos.operations.transition(op.id, "running", "succeeded") is False
    assert repos.operations.transition(op.id, "pending", "running", at=at(1), instance_ids=["i-1"]) is True
    assert repos.operations.transition(op.id, "pending", "running") is False  # already moved on

    running = repos.operations.get(op.id)
    assert running is not None
    assert (running.status, running.version, running.instance_ids, running.updated_at) == (
        "running",
        1,
        ["i-1"],
        at(1),
    )
    assert repos.operations.transition(op.id, "running", "failed", expected_version=0) is False
    done = repos.operations.transition(
        op.id,
        ["running", "starting"],
        "succeeded",
        expected_version=1,
        at=at(2),
        result={"instance_id": "i-1", "fell_back": False},
    )
    assert done is True
    final = repos.operations.get(op.id)
    assert final is not None
    assert (final.status, final.version, final.result) == (
        "succeeded",
        2,
        {"instance_id": "i-1", "fell_back": False},
    )
    assert repos.operations.transition("missing", "pending", "running") is False


def test_transition_refuses_unknown_or_reserved_fields(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at))
    with pytest.raises(ValueError, match="no_such_column"):
        repos.operations.transition(op.id, "pending", "running", no_such_column=1)
    with pytest.raises(ValueError, match="version"):
        repos.operations.transition(op.id, "pending", "running", version=7)
    with pytest.raises(ValueError, match="timezone-aware"):
        repos.operations.transition(op.id, "pending", "running", at=datetime(2025, 1, 1))
    stored = repos.operations.get(op.id)
    assert stored is not None and (stored.status, stored.version) == ("pending", 0)


def test_set_slack_message_does_not_count_as_a_state_change(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at))
    assert repos.operations.set_slack_message(op.id, "C9", "1700000000.000100") is True
    assert repos.operations.set_slack_message("missing", "C9", "1") is False
    stored = repos.operations.get(op.id)
    assert stored is not None
    assert (stored.slack_channel, stored.slack_ts, stored.version) == ("C9", "1700000000.000100", 0)
    assert repos.operations.transition(op.id, "pending", "running", expected_version=0) is True


def test_list_by_status_finds_stuck_operations_oldest_first(repos: Repositories, at: At) -> None:
    old = repos.operations.create(_operation(at, status="running", minutes=0))
    new = repos.operations.create(_operation(at, status="running", minutes=30))
    stop = repos.operations.create(_operation(at, kind="stop", status="running", minutes=10))
    repos.operations.create(_operation(at, status="succeeded", minutes=5))

    assert [o.id for o in repos.operations.list_by_status("running")] == [old.id, stop.id, new.id]
    assert [o.id for o in repos.operations.list_by_status(["running"], kind="launch")] == [old.id, new.id]
    assert [o.id for o in repos.operations.list_by_status("running", updated_before=at(20))] == [
        old.id,
        stop.id,
    ]
    assert [o.id for o in repos.operations.list_by_status("running", limit=1)] == [old.id]
    assert len(repos.operations.list_by_status({"running", "succeeded"})) == 4


def test_approval_lifecycle(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at, kind="terminate"))
    approval = repos.approvals.create(_approval(op, at))
    assert repos.approvals.get(approval.id) is not None
    by_op = repos.approvals.get_by_operation(op.id)
    assert by_op is not None and by_op.id == approval.id and by_op.status == ApprovalStatus.PENDING

    assert (
        repos.approvals.decide(approval.id, "pending", "approved", "U2", at(3), reason="looks fine") is True
    )
    assert repos.approvals.decide(approval.id, "pending", "denied", "U3", at(4)) is False
    assert repos.approvals.transition(approval.id, "approved", "executing") is True
    assert repos.approvals.transition(approval.id, "executing", "succeeded", expected_version=2) is True

    final = repos.approvals.get(approval.id)
    assert final is not None
    assert (final.status, final.decided_by, final.decided_at, final.reason, final.version) == (
        "succeeded",
        "U2",
        at(3),
        "looks fine",
        3,
    )
    assert repos.approvals.set_slack_message(approval.id, "C1", "171.1") is True
    assert repos.approvals.get_by_operation("other") is None


def test_one_approval_per_operation_and_it_needs_the_operation(repos: Repositories, at: At) -> None:
    op = repos.operations.create(_operation(at, kind="terminate"))
    repos.approvals.create(_approval(op, at))
    with pytest.raises(AlreadyExists):
        repos.approvals.create(_approval(op, at))
    orphan = _approval(_operation(at), at)  # its operation was never stored
    with pytest.raises(IntegrityError):
        repos.approvals.create(orphan)


def test_list_pending_expired_and_by_status(repos: Repositories, at: At) -> None:
    soon = repos.approvals.create(_approval(repos.operations.create(_operation(at)), at, expires_in=10))
    later = repos.approvals.create(_approval(repos.operations.create(_operation(at)), at, expires_in=60))
    decided = repos.approvals.create(_approval(repos.operations.create(_operation(at)), at, expires_in=5))
    repos.approvals.decide(decided.id, ApprovalStatus.PENDING, ApprovalStatus.DENIED, "U2", at(1))

    assert repos.approvals.list_pending_expired(at(9)) == []
    assert [a.id for a in repos.approvals.list_pending_expired(at(10))] == [soon.id]
    assert [a.id for a in repos.approvals.list_pending_expired(at(0) + timedelta(hours=2))] == [
        soon.id,
        later.id,
    ]
    assert {a.id for a in repos.approvals.list_by_status("pending", requester="U1")} == {soon.id, later.id}
    assert [a.id for a in repos.approvals.list_by_status(["denied"])] == [decided.id]
