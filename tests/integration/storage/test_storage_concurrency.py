"""Many threads on one database: no "database is locked", no lost writes, one winner per race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine, func
from sqlmodel import select

from providers.base import Instance, InstanceState
from storage.engine import session_scope
from storage.models import Approval, Operation, Resource, SlackDelivery, StateTransition
from storage.repositories import Repositories

T = TypeVar("T")
At = Callable[[float], datetime]


def race(count: int, task: Callable[[int], T]) -> list[T]:
    """Run `task(0..count-1)` on `count` threads released together; any exception fails the test."""
    start = threading.Barrier(count)

    def run(index: int) -> T:
        start.wait(30)
        return task(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run, index) for index in range(count)]
        return [future.result(timeout=120) for future in futures]


def _count(engine: Engine, model: type[Resource] | type[StateTransition] | type[SlackDelivery]) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_two_writers_interleaving_200_upserts_and_claims_each(
    db_engine: Engine, repos: Repositories, make_instance: Callable[..., Instance], at: At
) -> None:
    rounds = 200

    def writer(index: int) -> int:
        won = 0
        for n in range(rounds):
            state = InstanceState.RUNNING if n % 2 else InstanceState.STARTING
            repos.resources.upsert_from_cloud([make_instance(f"i-w{index}-{n:03d}", state)], seen_at=at(n))
            # Both writers claim the same keys: each key must be won exactly once.
            won += repos.deliveries.claim(f"event-{n}", at(n))
        return won

    wins = race(2, writer)

    assert sum(wins) == rounds
    assert _count(db_engine, Resource) == 2 * rounds
    assert _count(db_engine, StateTransition) == 2 * rounds
    assert _count(db_engine, SlackDelivery) == rounds


def test_fifty_approvers_clicking_at_once_make_exactly_one_decision(repos: Repositories, at: At) -> None:
    op = repos.operations.create(
        Operation(
            id=uuid.uuid4().hex,
            kind="terminate",
            requester="U0",
            status="awaiting_approval",
            created_at=at(0),
            updated_at=at(0),
        )
    )
    approval = repos.approvals.create(
        Approval(id=uuid.uuid4().hex, operation_id=op.id, requester="U0", created_at=at(0), expires_at=at(30))
    )

    def click(index: int) -> bool:
        verdict = "approved" if index % 2 else "denied"
        return repos.approvals.decide(approval.id, "pending", verdict, f"U{index + 1}", at(1))

    results = race(50, click)

    assert results.count(True) == 1
    winner = results.index(True)
    stored = repos.approvals.get(approval.id)
    assert stored is not None
    assert stored.decided_by == f"U{winner + 1}"
    assert stored.status == ("approved" if winner % 2 else "denied")
    assert stored.version == 1


def test_slack_retries_delivered_to_many_workers_are_handled_once(repos: Repositories, at: At) -> None:
    results = race(20, lambda _index: repos.deliveries.claim("Ev0ABC:1700000000.1", at(0)))
    assert results.count(True) == 1


def test_operation_transitions_racing_have_one_winner(repos: Repositories, at: At) -> None:
    op = repos.operations.create(
        Operation(
            id=uuid.uuid4().hex,
            kind="stop",
            requester="U1",
            status="pending",
            created_at=at(0),
            updated_at=at(0),
        )
    )
    results = race(
        20, lambda index: repos.operations.transition(op.id, "pending", "running", error=f"w{index}")
    )
    assert results.count(True) == 1
    stored = repos.operations.get(op.id)
    assert stored is not None and stored.version == 1 and stored.error == f"w{results.index(True)}"


def test_cleanup_cycles_racing_to_mark_the_same_machine_share_one_mark(repos: Repositories, at: At) -> None:
    results = race(10, lambda index: repos.cleanup_marks.mark("i-1", "idle", at=at(index)))
    assert sum(result.created for result in results) == 1
    assert len({result.mark.id for result in results}) == 1
    assert len(repos.cleanup_marks.list_open()) == 1
