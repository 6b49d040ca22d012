"""The custodian benchmark's fleet and policy: the seeded patterns mean what the benchmark expects of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from benchmarks.bench_custodian import (
    CATEGORIES,
    MIN_COVERAGE,
    THRESHOLD_PERCENT,
    WINDOW,
    Layout,
    category_counts,
    cpu_values,
    layout_for,
    machine_tags,
    render_policy,
    theoretical_minimum,
)
from bot.core.idle import IdleStatus, idle_verdict
from bot.core.policy import DEFAULT_POLICY, IdleStatistic
from providers import tags
from providers.base import UtilisationSeries

NOW = datetime(2026, 11, 29, 12, 0, 0, 400000, tzinfo=UTC)


@pytest.mark.parametrize("size", [50, 200, 1_000, 10_000])
def test_every_category_is_present_and_the_counts_add_up(size: int) -> None:
    counts = category_counts(size)
    assert sum(counts.values()) == size
    assert all(counts[c.name] >= 1 for c in CATEGORIES)


def _verdict(pattern: str, layout: Layout, first_slot: int, seed: int) -> IdleStatus:
    """The bot's verdict on one window of the grid as moto answers it: one value per slot, the first
    bucket stamped just before the window start (moto truncates StartTime to the second)."""
    period = timedelta(seconds=layout.period_s)
    start = NOW - WINDOW
    window_slots = range(first_slot, first_slot + layout.expected)
    points = cpu_values(pattern, seed, window_slots)
    stamps = [start.replace(microsecond=0) + period * (slot - first_slot) for slot, _ in points]
    series = UtilisationSeries(
        instance_id="i-1",
        metric="cpu",
        timestamps=tuple(stamps),
        values=tuple(v for _, v in points),
        expected_datapoints=layout.expected,
    )
    policy = replace(
        DEFAULT_POLICY.idle,
        window=WINDOW,
        period_seconds=layout.period_s,
        threshold_percent=THRESHOLD_PERCENT,
        min_coverage=MIN_COVERAGE,
        statistic=IdleStatistic.MAX,
    )
    return idle_verdict({"cpu": series}, policy, NOW, instance_id="i-1").status


@pytest.mark.parametrize("layout", [layout_for(1_000), layout_for(10_000)])
@pytest.mark.parametrize("first_slot", range(6))
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_patterns_give_the_intended_verdict_wherever_the_window_falls(
    layout: Layout, first_slot: int, seed: int
) -> None:
    assert _verdict("idle", layout, first_slot, seed) is IdleStatus.IDLE
    assert _verdict("busy", layout, first_slot, seed) is IdleStatus.BUSY
    assert _verdict("sparse", layout, first_slot, seed) is IdleStatus.INSUFFICIENT_DATA
    assert _verdict("none", layout, first_slot, seed) is IdleStatus.INSUFFICIENT_DATA


@pytest.mark.parametrize("layout", [layout_for(1_000), layout_for(10_000)])
def test_c7n_thresholds_agree_with_the_bot_on_each_pattern(layout: Layout) -> None:
    """c7n sees the whole window (Maximum, SampleCount): idle passes both filters, the rest fail one."""
    for first_slot in range(6):
        window = range(first_slot, first_slot + layout.expected)
        idle = [v for _, v in cpu_values("idle", 3, window)]
        busy = [v for _, v in cpu_values("busy", 4, window)]
        sparse = [v for _, v in cpu_values("sparse", 5, window)]
        assert max(idle) < THRESHOLD_PERCENT and len(idle) >= layout.min_datapoints
        assert max(busy) >= THRESHOLD_PERCENT
        assert len(sparse) < layout.min_datapoints


def test_managed_protected_and_kept_tags_read_as_the_bot_reads_them() -> None:
    for index in range(30):
        assert tags.is_managed(machine_tags("idle", index, NOW))
        assert not tags.is_managed(machine_tags("unmanaged", index, NOW))
        assert tags.protection_tag(machine_tags("protected", index, NOW)) is not None
        assert tags.protection_tag(machine_tags("idle", index, NOW)) is None
        assert tags.KEEP_UNTIL in machine_tags("kept", index, NOW)


def test_the_policy_carries_the_bot_settings() -> None:
    layout = layout_for(10_000)
    policy: dict[str, Any] = yaml.safe_load(render_policy(layout, 95))["policies"][0]
    filters = policy["filters"]
    age = next(f for f in filters if isinstance(f, dict) and f.get("type") == "instance-age")
    metrics = [f for f in filters if isinstance(f, dict) and f.get("type") == "metrics"]
    assert age["minutes"] == pytest.approx(95 / 60)
    assert [(m["statistics"], m["op"], m["value"]) for m in metrics] == [
        ("Maximum", "less-than", THRESHOLD_PERCENT),
        ("SampleCount", "gte", layout.min_datapoints),
    ]
    assert all(m["period"] == WINDOW.total_seconds() for m in metrics)
    assert all(timedelta(days=m["days"]) == WINDOW for m in metrics)
    assert filters[-2:] == metrics  # CloudWatch is asked only about what every other filter kept


def test_minimum_calls() -> None:
    assert theoretical_minimum(10_000, 5_000) == {
        "ec2.DescribeInstances": 10,
        "cloudwatch.GetMetricData": 10,
    }
    assert theoretical_minimum(50, 25) == {"ec2.DescribeInstances": 1, "cloudwatch.GetMetricData": 1}
