"""Idle verdicts: proven idle only, with the evidence the reminder shows."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.idle import IdleStatus, idle_verdict
from bot.core.policy import IdlePolicy, IdleStatistic
from providers.base import UtilisationSeries
from tests.unit.core.core_factories import NOW, series

POLICY = IdlePolicy()
MEAN = IdlePolicy(statistic=IdleStatistic.MEAN)


def test_quiet_cpu_over_the_whole_window_is_idle() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [0.5] * 11 + [4.9])}, POLICY, NOW)
    assert verdict.status is IdleStatus.IDLE
    assert verdict.idle and not verdict.busy
    assert verdict.reason == "CPU max 4.9 % < 5.0 % over the last 60 min (12/12 datapoints)"
    assert verdict.instance_id == "i-1"
    evidence = verdict.evidence()
    assert evidence["cpu_max"] == pytest.approx(4.9)
    assert evidence["cpu_datapoints"] == 12
    assert evidence["cpu_expected"] == 12
    assert evidence["cpu_coverage"] == 1.0
    assert evidence["cpu_threshold"] == 5.0
    assert evidence["idle_statistic"] == "max"
    assert evidence["idle_window_minutes"] == 60


def test_a_value_exactly_at_the_threshold_is_not_idle() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [1.0] * 11 + [5.0])}, POLICY, NOW)
    assert verdict.status is IdleStatus.BUSY
    assert verdict.reason == "CPU reached 5.0 % (threshold 5.0 %, 12/12 datapoints)"


def test_a_mean_exactly_at_the_threshold_is_not_idle() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [0.0, 10.0] * 6)}, MEAN, NOW)
    assert verdict.status is IdleStatus.BUSY
    assert "CPU averaged 5.0 %" in verdict.reason


def test_mean_tolerates_a_spike_that_max_does_not() -> None:
    values = [0.0] * 11 + [20.0]
    assert idle_verdict({"cpu": series("i-1", NOW, values)}, MEAN, NOW).idle
    assert idle_verdict({"cpu": series("i-1", NOW, values)}, POLICY, NOW).busy


@pytest.mark.parametrize(("received", "status"), [(9, IdleStatus.INSUFFICIENT_DATA), (10, IdleStatus.IDLE)])
def test_coverage_must_reach_eighty_percent(received: int, status: IdleStatus) -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [1.0] * received)}, POLICY, NOW)
    assert verdict.status is status


def test_partial_data_is_not_idle_and_says_why() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [1.0] * 6)}, POLICY, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA
    assert verdict.reason == (
        "only 6 of 12 CPU datapoints (50%) in the last 60 min; at least 80% needed (missing data is not idle)"
    )


def test_no_data_at_all_is_not_idle() -> None:
    assert idle_verdict({}, POLICY, NOW, instance_id="i-1").status is IdleStatus.INSUFFICIENT_DATA
    assert idle_verdict({}, POLICY, NOW, instance_id="i-1").reason == "no CPU data (missing data is not idle)"
    empty = idle_verdict({"cpu": series("i-1", NOW, [])}, POLICY, NOW)
    assert empty.status is IdleStatus.INSUFFICIENT_DATA
    assert "no CPU datapoints in the last 60 min" in empty.reason


def test_with_max_one_busy_point_proves_activity_even_on_partial_data() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [1.0, 1.0, 70.0])}, POLICY, NOW)
    assert verdict.status is IdleStatus.BUSY


def test_with_mean_a_high_average_on_partial_data_is_only_insufficient() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [50.0] * 3)}, MEAN, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA


def test_a_busy_gpu_keeps_an_idle_cpu_machine_busy() -> None:
    verdict = idle_verdict(
        {
            "cpu": series("i-1", NOW, [1.0] * 12),
            "gpu": series("i-1", NOW, [1.0] * 6 + [97.0] * 6, metric="gpu"),
        },
        POLICY,
        NOW,
    )
    assert verdict.status is IdleStatus.BUSY
    assert verdict.reason == "GPU reached 97.0 % (threshold 5.0 %, 12/12 datapoints)"
    assert [m.metric for m in verdict.metrics] == ["cpu", "gpu"]
    assert verdict.evidence()["gpu_status"] == "busy"


def test_both_idle_is_idle_and_a_gpu_without_data_is_not() -> None:
    both = {"cpu": series("i-1", NOW, [1.0] * 12), "gpu": series("i-1", NOW, [0.0] * 12, metric="gpu")}
    assert idle_verdict(both, POLICY, NOW).idle
    no_gpu_data = {"cpu": series("i-1", NOW, [1.0] * 12), "gpu": series("i-1", NOW, [], metric="gpu")}
    verdict = idle_verdict(no_gpu_data, POLICY, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA
    assert "no GPU datapoints" in verdict.reason


def test_gpu_alone_is_not_enough() -> None:
    verdict = idle_verdict({"gpu": series("i-1", NOW, [0.0] * 12, metric="gpu")}, POLICY, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA
    assert verdict.reason.startswith("no CPU data")


def test_datapoints_outside_the_window_are_ignored() -> None:
    # 12 quiet points in the window plus a busy one 65 minutes ago and one stamped at `now` (an open period).
    stamps = (NOW - timedelta(minutes=65), *[NOW - timedelta(minutes=5 * (12 - i)) for i in range(12)], NOW)
    values = (90.0, *[1.0] * 12, 90.0)
    verdict = idle_verdict({"cpu": UtilisationSeries("i-1", "cpu", stamps, values, 12)}, POLICY, NOW)
    assert verdict.idle
    assert verdict.metrics[0].received == 12


def test_the_window_start_is_inclusive() -> None:
    stamps = tuple(NOW - timedelta(minutes=60) + timedelta(minutes=5 * i) for i in range(12))
    verdict = idle_verdict(
        {"cpu": UtilisationSeries("i-1", "cpu", stamps, (50.0,) + (1.0,) * 11, 12)}, POLICY, NOW
    )
    assert verdict.busy


def test_the_first_bucket_is_stamped_at_the_period_boundary_before_the_window() -> None:
    """CloudWatch rounds StartTime down to the period: the first bucket's stamp precedes `now - window`."""
    now = NOW + timedelta(minutes=2, seconds=17, microseconds=500)
    first = NOW - timedelta(minutes=60)  # the 5-minute boundary at or before now - 60 min
    stamps = tuple(first + timedelta(minutes=5 * i) for i in range(13))
    verdict = idle_verdict({"cpu": UtilisationSeries("i-1", "cpu", stamps, (1.0,) * 13, 12)}, POLICY, now)
    assert verdict.idle
    assert verdict.metrics[0].received == 12  # 13 buckets touch the window; a window holds 12
    busy_first = idle_verdict(
        {"cpu": UtilisationSeries("i-1", "cpu", stamps, (90.0,) + (1.0,) * 12, 12)}, POLICY, now
    )
    assert busy_first.busy


def test_a_window_of_one_period_can_be_proven_idle() -> None:
    hourly = IdlePolicy(window=timedelta(hours=1), period_seconds=3600)
    now = NOW + timedelta(minutes=41, seconds=3)  # 10:41:03; the one hourly bucket is stamped 09:00
    stamps = (NOW - timedelta(hours=1),)
    verdict = idle_verdict({"cpu": UtilisationSeries("i-1", "cpu", stamps, (0.5,), 1)}, hourly, now)
    assert verdict.idle and verdict.metrics[0].received == 1


def test_duplicate_timestamps_count_once_and_nan_counts_as_missing() -> None:
    base = series("i-1", NOW, [1.0] * 9)
    doubled = UtilisationSeries("i-1", "cpu", base.timestamps * 2, base.values * 2, 12)
    assert idle_verdict({"cpu": doubled}, POLICY, NOW).metrics[0].received == 9
    with_nan = series("i-1", NOW, [1.0] * 9 + [math.nan] * 3)
    verdict = idle_verdict({"cpu": with_nan}, POLICY, NOW)
    assert verdict.metrics[0].received == 9
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA


def test_infinite_values_are_busy() -> None:
    verdict = idle_verdict({"cpu": series("i-1", NOW, [1.0] * 11 + [math.inf])}, MEAN, NOW)
    assert verdict.busy


def test_a_malformed_series_is_not_idle() -> None:
    broken = UtilisationSeries("i-1", "cpu", (NOW - timedelta(minutes=5),), (1.0, 2.0), 12)
    verdict = idle_verdict({"cpu": broken}, POLICY, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA
    assert "malformed" in verdict.reason


def test_a_provider_expecting_more_datapoints_makes_coverage_stricter() -> None:
    one_minute = series("i-1", NOW, [1.0] * 12, expected=60)
    verdict = idle_verdict({"cpu": one_minute}, POLICY, NOW)
    assert verdict.status is IdleStatus.INSUFFICIENT_DATA
    assert verdict.metrics[0].coverage == pytest.approx(0.2)


def test_metric_names_are_case_insensitive() -> None:
    assert idle_verdict({"CPU": series("i-1", NOW, [1.0] * 12)}, POLICY, NOW).idle


def test_series_of_different_machines_cannot_be_mixed() -> None:
    with pytest.raises(ValueError, match="different machines"):
        idle_verdict(
            {"cpu": series("i-1", NOW, [1.0] * 12), "gpu": series("i-2", NOW, [1.0] * 12, metric="gpu")},
            POLICY,
            NOW,
        )


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        idle_verdict({}, POLICY, datetime(2026, 3, 4, 10, 0), instance_id="i-1")


def test_naive_timestamps_are_read_as_utc() -> None:
    naive = series("i-1", NOW, [1.0] * 12)
    naive = UtilisationSeries(
        "i-1", "cpu", tuple(t.replace(tzinfo=None) for t in naive.timestamps), naive.values, 12
    )
    assert idle_verdict({"cpu": naive}, POLICY, NOW).idle


values_lists = st.lists(st.floats(min_value=0, max_value=100), max_size=16)


@settings(max_examples=300, deadline=None)
@given(
    cpu=values_lists,
    gpu=st.none() | values_lists,
    offsets=st.lists(st.integers(-30, 100), max_size=16),
    statistic=st.sampled_from(list(IdleStatistic)),
)
def test_idle_is_only_ever_said_on_full_enough_quiet_data(
    cpu: list[float], gpu: list[float] | None, offsets: list[int], statistic: IdleStatistic
) -> None:
    policy = IdlePolicy(statistic=statistic)
    metrics = {"cpu": series("i-1", NOW, cpu)}
    if offsets:
        # Scatter some datapoints in and out of the window.
        stamps = tuple(NOW - timedelta(minutes=o) for o in offsets[: len(cpu)])
        metrics["cpu"] = UtilisationSeries("i-1", "cpu", stamps, tuple(cpu[: len(stamps)]), 12)
    if gpu is not None:
        metrics["gpu"] = series("i-1", NOW, gpu, metric="gpu")
    verdict = idle_verdict(metrics, policy, NOW)
    if verdict.idle:
        for name, s in metrics.items():
            window = [
                (t, v)
                for t, v in zip(s.timestamps, s.values, strict=True)
                if NOW - timedelta(hours=1) <= t < NOW
            ]
            assert len({t for t, _ in window}) >= 0.8 * 12, name
            if statistic is IdleStatistic.MAX:
                assert all(v < 5.0 for _, v in window), name
            else:
                assert sum(v for _, v in window) / len(window) < 5.0, name
    in_window_busy = any(
        v >= 5.0
        for s in metrics.values()
        for t, v in zip(s.timestamps, s.values, strict=True)
        if NOW - timedelta(hours=1) <= t < NOW
    )
    if in_window_busy and statistic is IdleStatistic.MAX:
        assert verdict.busy
