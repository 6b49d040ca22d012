"""CloudWatch utilisation and SSM commands for many instances, in the fewest requests the APIs allow."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.aws.provider import AwsProvider
from providers.base import CommandStatus
from providers.errors import InvalidRequestError, TransientError
from tests.support.moto import ApiCallCounter, FaultInjector, MotoServer, put_metric_points, run_instances

END = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1)
PERIOD = 300


def cpu_value(index: int, slot: int) -> float:
    """A distinct, checkable value per instance and 5-minute slot."""
    return float(index % 50) + slot / 100


def synthetic_ids(count: int) -> list[str]:
    """CloudWatch does not check that an instance exists, so metric tests need no EC2 seeding."""
    return [f"i-{n:017x}" for n in range(1, count + 1)]


def test_utilisation_for_600_instances_takes_exactly_two_requests(
    provider: AwsProvider, aws: MotoServer, calls: ApiCallCounter
) -> None:
    ids = synthetic_ids(600)
    reporting = set(range(0, 600, 5))  # every fifth instance reports all window; the others never did
    partial = 597  # reports the first half of the window only
    points = [
        (ids[index], END - WINDOW + timedelta(seconds=PERIOD * slot + 30), cpu_value(index, slot))
        for index in sorted(reporting | {partial})
        for slot in range(12)
        if index != partial or slot < 6
    ]
    put_metric_points(aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", points)

    result = provider.utilisation(ids, end=END, window=WINDOW, period_seconds=PERIOD)

    assert calls.count("cloudwatch.GetMetricData") == math.ceil(600 / 500) == 2
    assert [len(p["MetricDataQueries"]) for p in calls.params("cloudwatch.GetMetricData")] == [500, 100]
    assert set(result) == set(ids)
    for index in (0, 5, 295, 495, 500, 595):  # both requests
        series = result[ids[index]]["cpu"]
        assert series.expected_datapoints == 12 and series.received_datapoints == 12
        assert list(series.values) == [cpu_value(index, slot) for slot in range(12)]
        assert series.timestamps[0] == END - WINDOW and series.timestamps[-1] == END - timedelta(
            seconds=PERIOD
        )
        assert all(ts.tzinfo is not None for ts in series.timestamps)
    assert result[ids[partial]]["cpu"].received_datapoints == 6
    silent = result[ids[1]]["cpu"]
    assert silent.received_datapoints == 0 and silent.expected_datapoints == 12
    assert all(set(per_metric) == {"cpu"} for per_metric in result.values())


def test_statistic_is_selectable(provider: AwsProvider, ec2: Any, aws: MotoServer) -> None:
    [instance_id] = run_instances(ec2, 1)
    start = END - timedelta(minutes=10)
    samples = [(instance_id, start + timedelta(seconds=s), v) for s, v in ((0, 2.0), (60, 10.0), (120, 3.0))]
    put_metric_points(aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", samples)

    window = timedelta(minutes=10)
    maximum = provider.utilisation([instance_id], end=END, window=window)[instance_id]["cpu"]
    average = provider.utilisation([instance_id], end=END, window=window, statistic="Average")[instance_id][
        "cpu"
    ]

    assert maximum.values == (10.0,) and average.values == (5.0,)
    assert maximum.expected_datapoints == 2 and maximum.received_datapoints == 1


def test_gpu_metric_doubles_the_queries_and_is_reported_per_instance(
    make_provider: Callable[..., AwsProvider], aws: MotoServer, calls: ApiCallCounter
) -> None:
    provider = make_provider(gpu_metric_namespace="CWAgent", gpu_metric_name="nvidia_smi_utilization_gpu")
    ids = synthetic_ids(300)
    cloudwatch = aws.client("cloudwatch")
    put_metric_points(
        cloudwatch, "CWAgent", "nvidia_smi_utilization_gpu", [(ids[7], END - timedelta(minutes=3), 97.0)]
    )
    put_metric_points(cloudwatch, "AWS/EC2", "CPUUtilization", [(ids[7], END - timedelta(minutes=3), 4.0)])

    result = provider.utilisation(ids, end=END, window=WINDOW)

    assert calls.count("cloudwatch.GetMetricData") == math.ceil(300 * 2 / 500) == 2
    assert result[ids[7]]["gpu"].values == (97.0,) and result[ids[7]]["cpu"].values == (4.0,)
    # No GPU data is visible as such: nothing received out of twelve expected.
    assert result[ids[8]]["gpu"].received_datapoints == 0 and result[ids[8]]["gpu"].expected_datapoints == 12


def test_utilisation_rejects_bad_windows_before_any_request(
    provider: AwsProvider, calls: ApiCallCounter
) -> None:
    with pytest.raises(InvalidRequestError, match="timezone-aware"):
        provider.utilisation(["i-1"], end=datetime(2026, 3, 2, 10, 0), window=WINDOW)
    with pytest.raises(InvalidRequestError, match="period"):
        provider.utilisation(["i-1"], end=END, window=WINDOW, period_seconds=90)
    with pytest.raises(InvalidRequestError, match="statistic"):
        provider.utilisation(["i-1"], end=END, window=WINDOW, statistic="p99")
    assert provider.utilisation([], end=END, window=WINDOW) == {}
    assert calls.total() == 0


def test_run_command_on_120_instances_takes_three_requests(
    provider: AwsProvider, ec2: Any, aws: MotoServer, calls: ApiCallCounter
) -> None:
    ids = run_instances(ec2, 120)

    command_ids = provider.run_command(ids, "nvidia-smi || true\nuptime", comment="health check")

    assert calls.count("ssm.SendCommand") == 3 and len(set(command_ids)) == 3
    sent = calls.params("ssm.SendCommand")
    assert [len(p["InstanceIds"]) for p in sent] == [50, 50, 20]
    assert [i for p in sent for i in p["InstanceIds"]] == ids
    assert {p["DocumentName"] for p in sent} == {"AWS-RunShellScript"}
    assert sent[0]["Parameters"]["commands"] == ["nvidia-smi || true\nuptime"]
    assert sent[0]["Comment"] == "health check"
    listed = aws.client("ssm").list_commands(CommandId=command_ids[0])["Commands"][0]
    assert listed["DocumentName"] == "AWS-RunShellScript" and listed["Comment"] == "health check"

    results = provider.command_results(command_ids[2], ids[100:])
    assert [r.instance_id for r in results] == ids[100:]
    assert all(r.status is CommandStatus.SUCCESS and r.exit_code == 0 for r in results)
    # An instance the command never reached has no invocation: unknown, not an error.
    [stray] = provider.command_results(command_ids[0], ["i-0000000000000dead"])
    assert stray.status is CommandStatus.UNKNOWN and stray.exit_code is None


def test_send_command_is_not_resent_when_its_answer_is_lost(
    provider: AwsProvider, ec2: Any, aws: MotoServer, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    ids = run_instances(ec2, 2)
    faults.lose_response("ssm", "SendCommand")

    with pytest.raises(TransientError, match="may have reached the server"):
        provider.run_command(ids, "python train.py")

    # The script may have started: sending it again could run the training twice.
    assert calls.count("ssm.SendCommand") == 1
    assert len(aws.client("ssm").list_commands()["Commands"]) == 1


def test_throttled_send_command_is_retried(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    ids = run_instances(ec2, 2)
    faults.throttle("ssm", "SendCommand", times=2)

    assert len(provider.run_command(ids, "echo hi")) == 1
    assert calls.count("ssm.SendCommand") == 3


def test_throttled_metric_request_is_retried_alone(
    provider: AwsProvider, aws: MotoServer, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    # CloudWatch speaks RPCv2 CBOR: the injected error is CBOR-encoded, as the real service would send it.
    ids = synthetic_ids(520)
    put_metric_points(
        aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", [(ids[510], END - timedelta(minutes=1), 42.0)]
    )
    faults.throttle("cloudwatch", "GetMetricData", skip=1, times=1)

    result = provider.utilisation(ids, end=END, window=WINDOW)

    assert faults.count("error") == 1
    assert calls.count("cloudwatch.GetMetricData") == 3  # two batches, the second one sent twice
    assert result[ids[510]]["cpu"].values == (42.0,)
