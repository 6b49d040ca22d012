"""The scheduler lease, job-run claims and once-only notices, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from storage.repositories import Repositories

At = Callable[[float], datetime]
TTL = timedelta(seconds=30)


def test_lease_is_held_by_one_holder_until_it_expires(repos: Repositories, at: At) -> None:
    leases = repos.leases
    assert leases.acquire("scheduler", "a", at(0), TTL)
    assert not leases.acquire("scheduler", "b", at(0.1), TTL)
    assert leases.acquire("scheduler", "a", at(0.2), TTL)  # renewal
    assert leases.holder("scheduler", at(0.3)) == "a"
    assert not leases.acquire("scheduler", "b", at(0.5), TTL)  # still within a's renewed TTL
    assert leases.acquire("scheduler", "b", at(1.0), TTL)  # a stopped renewing: b takes over
    assert not leases.acquire("scheduler", "a", at(1.01), TTL)
    assert leases.holder("scheduler", at(1.02)) == "b"
    assert not leases.release("scheduler", "a")
    assert leases.release("scheduler", "b")
    assert leases.holder("scheduler", at(1.03)) is None


def test_lease_race_has_one_winner(repos: Repositories, at: At) -> None:
    wins: list[str] = []
    lock = threading.Lock()

    def contend(name: str) -> None:
        if repos.leases.acquire("race", name, at(0), TTL):
            with lock:
                wins.append(name)

    threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_job_slot_claims_and_notices_are_once_only(repos: Repositories, at: At) -> None:
    assert repos.job_runs.claim("reconcile", "100", "a", at(0))
    assert not repos.job_runs.claim("reconcile", "100", "b", at(0))
    assert repos.job_runs.claim("reconcile", "101", "b", at(1))
    assert repos.job_runs.count("reconcile") == 2
    assert repos.job_runs.purge_before(at(0.5)) == 1
    assert repos.notices.first_time("alert:x", at(0))
    assert not repos.notices.first_time("alert:x", at(1))
    repos.notices.forget("alert:x")
    assert repos.notices.first_time("alert:x", at(2))
