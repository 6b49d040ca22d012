"""Subscriptions, the price cache, the audit trail and Slack delivery dedup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from providers.base import Lifecycle, Price, PriceCache, PriceSource
from storage.repositories import Repositories

At = Callable[[float], datetime]


def test_subscribe_then_change_the_schedule_in_place(repos: Repositories, at: At) -> None:
    daily = repos.subscriptions.upsert(
        "C1", "daily", at_time="09:00", timezone="Europe/Paris", created_by="U1", at=at(0), weekday=3
    )
    assert (daily.channel, daily.cadence, daily.weekday, daily.at_time, daily.last_sent_slot) == (
        "C1",
        "daily",
        None,  # a daily report has no weekday
        "09:00",
        None,
    )
    moved = repos.subscriptions.upsert(
        "C1", "daily", at_time="17:30", timezone="UTC", created_by="U2", at=at(60)
    )
    assert moved.id == daily.id
    assert (moved.at_time, moved.timezone, moved.created_by, moved.created_at) == (
        "17:30",
        "UTC",
        "U1",
        at(0),
    )
    weekly = repos.subscriptions.upsert(
        "C1", "weekly", at_time="08:00", timezone="UTC", created_by="U1", at=at(0), weekday=0
    )
    repos.subscriptions.upsert(
        "C0", "weekly", at_time="08:00", timezone="UTC", created_by="U1", at=at(0), weekday=6
    )

    assert [(s.channel, s.cadence) for s in repos.subscriptions.list_all()] == [
        ("C0", "weekly"),
        ("C1", "daily"),
        ("C1", "weekly"),
    ]
    assert [s.id for s in repos.subscriptions.list_for_channel("C1")] == [daily.id, weekly.id]
    got = repos.subscriptions.get("C1", "weekly")
    assert got is not None and got.weekday == 0
    assert repos.subscriptions.remove("C1", "weekly") == 1
    assert repos.subscriptions.remove("C1", "weekly") == 0
    assert repos.subscriptions.remove("C0") == 1
    assert [s.cadence for s in repos.subscriptions.list_all()] == ["daily"]


@pytest.mark.parametrize(
    ("cadence", "at_time", "weekday"),
    [
        ("hourly", "09:00", None),
        ("daily", "9:00", None),
        ("daily", "24:00", None),
        ("weekly", "09:00", None),
        ("weekly", "09:00", 7),
    ],
)
def test_subscription_input_is_validated(
    repos: Repositories, at: At, cadence: str, at_time: str, weekday: int | None
) -> None:
    with pytest.raises(ValueError):
        repos.subscriptions.upsert(
            "C1", cadence, at_time=at_time, timezone="UTC", created_by="U1", at=at(0), weekday=weekday
        )
    assert repos.subscriptions.list_all() == []


def test_each_report_slot_is_claimed_once_and_never_backwards(repos: Repositories, at: At) -> None:
    sub = repos.subscriptions.upsert(
        "C1", "daily", at_time="09:00", timezone="UTC", created_by="U1", at=at(0)
    )
    assert sub.id is not None
    assert repos.subscriptions.claim_slot(sub.id, "2025-03-03T09:00") is True
    assert repos.subscriptions.claim_slot(sub.id, "2025-03-03T09:00") is False
    assert repos.subscriptions.claim_slot(sub.id, "2025-03-02T09:00") is False
    assert repos.subscriptions.claim_slot(sub.id, "2025-03-04T09:00") is True
    stored = repos.subscriptions.get("C1", "daily")
    assert stored is not None and stored.last_sent_slot == "2025-03-04T09:00"


def test_price_cache_round_trip_and_overwrite(repos: Repositories, at: At) -> None:
    cache: PriceCache = repos.prices  # the provider's protocol
    assert cache.get_price("g5.xlarge", "eu-west-1", Lifecycle.ON_DEMAND) is None
    first = Price("g5.xlarge", "eu-west-1", Lifecycle.ON_DEMAND, 1.123, PriceSource.PRICING_API, at(0))
    cache.put_price(first)
    assert cache.get_price("g5.xlarge", "eu-west-1", Lifecycle.ON_DEMAND) == first

    newer = Price("g5.xlarge", "eu-west-1", Lifecycle.ON_DEMAND, 1.2, PriceSource.FALLBACK, at(60))
    spot = Price(
        "g5.xlarge", "eu-west-1", Lifecycle.SPOT, 0.4, PriceSource.SPOT_HISTORY, at(60), "eu-west-1a"
    )
    cache.put_price(newer)
    cache.put_price(spot)
    assert cache.get_price("g5.xlarge", "eu-west-1", Lifecycle.ON_DEMAND) == newer
    stored_spot = cache.get_price("g5.xlarge", "eu-west-1", Lifecycle.SPOT)
    assert stored_spot is not None and (stored_spot.hourly_usd, stored_spot.availability_zone) == (0.4, None)
    assert cache.get_price("g5.xlarge", "us-east-1", Lifecycle.ON_DEMAND) is None


def test_audit_records_and_lists_newest_first(repos: Repositories, at: At) -> None:
    repos.audit.record("U1", "stop", "requested", target="i-1", operation_id="op1", at=at(0))
    repos.audit.record(
        "scheduler",
        "stop",
        "skipped",
        target="i-1",
        rule="protected",
        detail={"tag": "runctl:protected"},
        at=at(1),
    )
    repos.audit.record("U2", "approve", "ok", operation_id="op1", at=at(2))
    latest = repos.audit.record("U1", "terminate", "requested", target="i-2", at=at(3))

    assert [e.action for e in repos.audit.list()] == ["terminate", "approve", "stop", "stop"]
    assert [e.actor for e in repos.audit.list("op1")] == ["U2", "U1"]
    assert [e.result for e in repos.audit.list(target="i-1")] == ["skipped", "requested"]
    assert [e.id for e in repos.audit.list(actor="U1", limit=1)] == [latest.id]
    assert [e.action for e in repos.audit.list(since=at(2))] == ["terminate", "approve"]
    skipped = repos.audit.list(actor="scheduler")[0]
    assert (skipped.rule, skipped.detail, skipped.at) == ("protected", {"tag": "runctl:protected"}, at(1))


def test_delivery_claims_once_and_old_keys_are_purged(repos: Repositories, at: At) -> None:
    assert repos.deliveries.claim("Ev123:1", at(0)) is True
    assert repos.deliveries.claim("Ev123:1", at(1)) is False
    assert repos.deliveries.claim("Ev456:1", at(30)) is True
    assert repos.deliveries.purge_before(at(0) + timedelta(minutes=10)) == 1
    assert repos.deliveries.claim("Ev123:1", at(40)) is True  # forgotten, so claimable again
    assert repos.deliveries.claim("Ev456:1", at(40)) is False
