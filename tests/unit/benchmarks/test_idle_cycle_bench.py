"""The scheduler-cycle benchmark's yardsticks: the minimum comes from the seed and the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.bench_idle_cycle import (
    PATTERN,
    WINDOW,
    _categories,
    check_calls,
    configured_metrics,
    expected_calls,
    stamps,
)


def test_minimum_is_one_listing_page_per_thousand_and_full_metric_batches() -> None:
    assert expected_calls(10_000, 9_000, 1) == {
        "ec2.DescribeInstances": 10,
        "cloudwatch.GetMetricData": 18,
    }
    assert expected_calls(1_000, 900, 2) == {"ec2.DescribeInstances": 1, "cloudwatch.GetMetricData": 4}
    assert expected_calls(200, 0, 1) == {"ec2.DescribeInstances": 1}


def test_calls_must_equal_the_minimum_and_include_nothing_else() -> None:
    minimum = {"ec2.DescribeInstances": 1, "cloudwatch.GetMetricData": 2}
    assert check_calls(dict(minimum), minimum) == []
    assert check_calls({"ec2.DescribeInstances": 1, "cloudwatch.GetMetricData": 3}, minimum) == [
        "cloudwatch.GetMetricData 3 (minimum 2)"
    ]
    assert check_calls({**minimum, "sts.GetCallerIdentity": 1}, minimum) == [
        "sts.GetCallerIdentity 1 (not needed)"
    ]
    assert check_calls({"ec2.DescribeInstances": 1}, minimum) == ["cloudwatch.GetMetricData 0 (minimum 2)"]


@pytest.mark.parametrize(
    ("extra", "metrics"),
    [
        ({}, 1),
        (
            {
                "RUNCTL_GPU_METRIC_NAMESPACE": "CWAgent",
                "RUNCTL_GPU_METRIC_NAME": "nvidia_smi_utilization_gpu",
            },
            2,
        ),
    ],
)
def test_metrics_per_machine_come_from_the_bot_settings(extra: dict[str, str], metrics: int) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "secret", **extra}
    assert configured_metrics(env) == metrics


@pytest.mark.parametrize(("period_s", "count"), [(3600, 1), (300, 12)])
def test_datapoints_fill_each_period_of_the_window_once(period_s: int, count: int) -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    points = stamps(now, period_s)
    assert len(points) == count
    assert all(now - WINDOW < p < now for p in points)
    buckets = {int((p - (now - WINDOW)) / timedelta(seconds=period_s)) for p in points}
    assert len(buckets) == count


def test_the_pattern_makes_candidates_of_managed_unprotected_unkept_machines_only() -> None:
    by_name = {c.name: c for c in _categories()}
    assert set(PATTERN) == set(by_name)
    candidates = [name for name in PATTERN if by_name[name].candidate]
    assert len(candidates) / len(PATTERN) == 0.9
    assert {name for name in PATTERN if not by_name[name].candidate} == {"protected", "kept"}
    # Protected and kept machines have idle CPU: a bot that let them through would flag them.
    assert by_name["protected"].cpu == by_name["kept"].cpu == by_name["idle"].cpu
