"""The Slack outbox rows: one per key, leases by compare-and-set, updates where the latest content wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from storage.models import OutboxKind, OutboxStatus
from storage.repositories import Repositories

At = Callable[[float], datetime]
LEASE = timedelta(minutes=2)


def _post(
    repos: Repositories, at: At, key: str = "state:i-1", holder: str = "a", minute: float = 0
) -> object:
    return repos.outbox.enqueue(
        key, OutboxKind.POST, "C1", "hello", None, now=at(minute), holder=holder, lease=LEASE, thread_ts="1.2"
    )


def test_a_key_is_queued_once_and_its_lease_keeps_others_off(repos: Repositories, at: At) -> None:
    first = repos.outbox.enqueue(
        "state:i-1",
        OutboxKind.POST,
        "C1",
        "hello",
        [{"type": "section"}],
        now=at(0),
        holder="a",
        lease=LEASE,
        thread_ts="1.2",
    )
    assert first is not None and (first.text, first.blocks, first.thread_ts) == (
        "hello",
        [{"type": "section"}],
        "1.2",
    )
    assert _post(repos, at, holder="b") is None  # the same notice is never queued twice
    assert repos.outbox.claim_due("b", at(0), LEASE) == []  # held by a
    assert repos.outbox.retry_at("state:i-1", "a", at(1), "HTTP 503 service_unavailable")
    assert repos.outbox.claim_due("b", at(0.5), LEASE) == []  # not due yet
    (due,) = repos.outbox.claim_due("b", at(1), LEASE)
    assert due.attempts == 1
    assert not repos.outbox.mark_sent("state:i-1", "a", due.version, at(1), "9.9")  # a lost the lease
    assert repos.outbox.mark_sent("state:i-1", "b", due.version, at(1), "9.9")
    row = repos.outbox.get("state:i-1")
    assert row is not None and (row.status, row.sent_ts, row.lease_holder) == (OutboxStatus.SENT, "9.9", None)
    assert _post(repos, at, holder="c", minute=5) is None  # still never queued again after it was sent
    assert repos.outbox.count_pending() == 0


def test_an_expired_lease_is_taken_over(repos: Repositories, at: At) -> None:
    assert _post(repos, at, holder="dead") is not None  # the process died before it could send
    assert repos.outbox.claim_due("b", at(1), LEASE) == []
    (taken,) = repos.outbox.claim_due("b", at(2), LEASE)
    assert taken.key == "state:i-1"
    assert not repos.outbox.release("state:i-1", "dead", at(2))


def test_an_update_replaced_while_it_was_sent_is_sent_again(repos: Repositories, at: At) -> None:
    def update(text: str, holder: str, minute: float) -> object:
        return repos.outbox.enqueue(
            "update:C1:1.2", OutboxKind.UPDATE, "C1", text, None, now=at(minute), holder=holder,
            lease=LEASE, ts="1.2",
        )  # fmt: skip

    sending = update("v1", "a", 0)
    assert sending is not None and sending.version == 0
    assert update("v2", "b", 0.1) is None  # queued behind a's send, content replaced
    assert not repos.outbox.mark_sent("update:C1:1.2", "a", 0, at(0.2), "1.2")  # a sent stale content
    again = repos.outbox.claim("update:C1:1.2", "a", at(0.2), LEASE)
    assert again is not None and (again.text, again.version) == ("v2", 1)
    assert repos.outbox.mark_sent("update:C1:1.2", "a", 1, at(0.3), "1.2")
    later = update("v3", "c", 10)  # a later update of the same message opens the row again
    assert later is not None and later.text == "v3"


def test_give_up_and_purge(repos: Repositories, at: At) -> None:
    assert _post(repos, at) is not None
    assert repos.outbox.give_up("state:i-1", "a", at(1), "too old")
    row = repos.outbox.get("state:i-1")
    assert row is not None and row.status == OutboxStatus.GAVE_UP and row.attempts == 1
    assert _post(repos, at, key="state:i-2", minute=1) is not None  # pending rows are never purged
    assert repos.outbox.purge_finished_before(at(2)) == 1
    assert repos.outbox.get("state:i-1") is None and repos.outbox.get("state:i-2") is not None


def test_concurrent_claims_hand_each_row_to_one_holder(repos: Repositories, at: At) -> None:
    for n in range(20):
        _post(repos, at, key=f"k{n}")
        assert repos.outbox.retry_at(f"k{n}", "a", at(1), "down")
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def drain(holder: str) -> None:
        barrier.wait()
        claimed[holder] = [m.key for m in repos.outbox.claim_due(holder, at(1), LEASE)]

    threads = [threading.Thread(target=drain, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    keys = [k for got in claimed.values() for k in got]
    assert sorted(keys) == sorted(f"k{n}" for n in range(20))  # every row once, none twice


def test_a_report_slot_is_given_back_only_while_it_is_the_last_claimed(repos: Repositories, at: At) -> None:
    sub = repos.subscriptions.upsert(
        "C1", "daily", at_time="09:00", timezone="UTC", created_by="U1", at=at(0)
    )
    assert repos.subscriptions.claim_slot(sub.id or 0, "2025-03-03T09:00")
    assert repos.subscriptions.release_slot(sub.id or 0, "2025-03-03T09:00", None)
    assert repos.subscriptions.claim_slot(sub.id or 0, "2025-03-03T09:00")  # a later tick claims it again
    assert repos.subscriptions.claim_slot(sub.id or 0, "2025-03-04T09:00")
    assert not repos.subscriptions.release_slot(
        sub.id or 0, "2025-03-03T09:00", None
    )  # never rolls back a newer one
    fresh = repos.subscriptions.get("C1", "daily")
    assert fresh is not None and fresh.last_sent_slot == "2025-03-04T09:00"
