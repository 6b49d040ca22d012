"""The GPU metric is asked for only where an accelerator may be (moto server over HTTP, GPU configured).

A CPU-only t3 has no GPU series at all, so CPU alone proves it idle; a g5 (or a trn1) without GPU data is
not proven idle, because its accelerators may be working while its CPU sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.idle import IdleStatus, idle_verdict
from bot.core.policy import IdlePolicy
from providers.aws.calls import AwsCaller
from providers.aws.config import AwsConfig
from providers.aws.metrics import CloudWatchUtilisation
from providers.aws.provider import AwsProvider
from tests.support.moto import ApiCallCounter, MotoServer, put_metric_points, run_instances

END = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=60)
GPU_NAMESPACE, GPU_NAME = "CWAgent", "nvidia_smi_utilization_gpu"


@pytest.fixture
def gpu_provider(aws: MotoServer) -> tuple[AwsProvider, ApiCallCounter]:
    config = AwsConfig(
        endpoint_url=aws.endpoint_url, gpu_metric_namespace=GPU_NAMESPACE, gpu_metric_name=GPU_NAME
    )
    session = aws.session()
    calls = ApiCallCounter()
    calls.attach(session)
    return AwsProvider(config, session=session), calls


def _types_from(provider: AwsProvider) -> Callable[[Sequence[str]], Mapping[str, str]]:
    def lookup(ids: Sequence[str]) -> Mapping[str, str]:
        return {iid: inst.instance_type for iid, inst in provider.describe_many(ids).items()}

    return lookup


def _seed(aws: MotoServer, namespace: str, name: str, ids: list[str], value: float) -> None:
    points = [
        (iid, END - timedelta(minutes=m) + timedelta(seconds=20), value)
        for iid in ids
        for m in range(5, 65, 5)
    ]
    put_metric_points(aws.client("cloudwatch"), namespace, name, points)


def test_cpu_only_machine_is_idle_and_gpu_machine_without_gpu_data_is_not(
    aws: MotoServer, gpu_provider: tuple[AwsProvider, ApiCallCounter]
) -> None:
    provider, calls = gpu_provider
    ec2 = aws.client("ec2")
    tags = {"runctl:managed": "true"}
    (t3,) = run_instances(ec2, 1, tags=tags, instance_type="t3.large")
    (g5,) = run_instances(ec2, 1, tags=tags, instance_type="g5.xlarge")
    (trn,) = run_instances(ec2, 1, tags=tags, instance_type="trn1.2xlarge")
    (g5_busy,) = run_instances(ec2, 1, tags=tags, instance_type="g5.xlarge")
    _seed(aws, "AWS/EC2", "CPUUtilization", [t3, g5, trn, g5_busy], 0.8)
    _seed(aws, GPU_NAMESPACE, GPU_NAME, [g5_busy], 97.0)  # CPU sleeps, the GPU trains
    metrics = CloudWatchUtilisation(
        provider.clients.cloudwatch,
        AwsCaller(provider.config.retry),
        provider.config,
        instance_types=_types_from(provider),
    )

    series = metrics.fetch([t3, g5, trn, g5_busy], end=END, window=WINDOW)

    assert set(series[t3]) == {"cpu"}  # no GPU query for a machine that has no GPU
    assert set(series[g5]) == set(series[trn]) == set(series[g5_busy]) == {"cpu", "gpu"}
    (request,) = calls.params("cloudwatch.GetMetricData")
    assert len(request["MetricDataQueries"]) == 4 + 3
    policy = IdlePolicy()
    verdicts = {iid: idle_verdict(s, policy, END, instance_id=iid) for iid, s in series.items()}
    assert verdicts[t3].status is IdleStatus.IDLE
    assert verdicts[g5].status is IdleStatus.INSUFFICIENT_DATA and "no GPU datapoints" in verdicts[g5].reason
    assert verdicts[trn].status is IdleStatus.INSUFFICIENT_DATA
    assert verdicts[g5_busy].status is IdleStatus.BUSY and "GPU reached 97.0 %" in verdicts[g5_busy].reason


def test_unknown_types_get_the_gpu_query_and_cpu_only_config_looks_nothing_up(
    aws: MotoServer, gpu_provider: tuple[AwsProvider, ApiCallCounter]
) -> None:
    provider, calls = gpu_provider
    asked: list[list[str]] = []

    def lookup(ids: Sequence[str]) -> Mapping[str, str]:
        asked.append(list(ids))
        return {"i-00000000000000001": "t3.micro"}  # the other id is unknown (gone, or not EC2's)

    metrics = CloudWatchUtilisation(
        provider.clients.cloudwatch, AwsCaller(provider.config.retry), provider.config, instance_types=lookup
    )
    series = metrics.fetch(["i-00000000000000001", "i-00000000000000002"], end=END, window=WINDOW)
    assert set(series["i-00000000000000001"]) == {"cpu"}
    assert set(series["i-00000000000000002"]) == {"cpu", "gpu"}  # unknown type: ask, missing is not idle
    assert (
        idle_verdict(series["i-00000000000000002"], IdlePolicy(), END).status is IdleStatus.INSUFFICIENT_DATA
    )

    # Explicit types win over the lookup; a CPU-only configuration never looks types up at all.
    series = metrics.fetch(
        ["i-00000000000000002"], end=END, window=WINDOW, instance_types={"i-00000000000000002": "c7i.large"}
    )
    assert set(series["i-00000000000000002"]) == {"cpu"}
    cpu_only = CloudWatchUtilisation(
        provider.clients.cloudwatch, AwsCaller(provider.config.retry), AwsConfig(), instance_types=lookup
    )
    assert set(cpu_only.fetch(["i-00000000000000003"], end=END, window=WINDOW)["i-00000000000000003"]) == {
        "cpu"
    }
    assert asked == [["i-00000000000000001", "i-00000000000000002"]]
    assert calls.count("cloudwatch.GetMetricData") == 3
