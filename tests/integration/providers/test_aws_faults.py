"""The retry policy end to end: throttling, 5xx, lost answers and final errors, counted at the client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from providers import tags as tagschema
from providers.aws.clients import AwsClients
from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.base import CommandStatus, InstanceState, LaunchSpec
from providers.errors import AuthError, InvalidRequestError, TransientError
from providers.retry import RetryPolicy
from tests.support.moto import ApiCallCounter, FaultInjector, MotoServer, run_instances

FAST = RetryPolicy(max_attempts=10, max_total_seconds=20.0, base_wait_seconds=0.001, max_wait_seconds=0.004)


def launch_spec(operation_id: str, **overrides: Any) -> LaunchSpec:
    return LaunchSpec(
        operation_id=operation_id, instance_type="t3.micro", owner="U42", project="chaos", **overrides
    )


def test_every_operation_completes_under_30_percent_throttling_without_duplicate_launches(
    make_provider: Callable[..., AwsProvider], ec2: Any, faults: FaultInjector
) -> None:
    provider = make_provider(retry=FAST)
    # The first launch also loses its first answer after moto acted on it; then ~30 % of all EC2, SSM and
    # CloudWatch requests are throttled (seeded, so the run is reproducible).
    faults.lose_response("ec2", "RunInstances", times=1)
    for service in ("ec2", "ssm", "cloudwatch"):
        faults.throttle(service, probability=0.3)
    seeded_managed = run_instances(ec2, 4, tags={tagschema.MANAGED: "true"})
    unmanaged = run_instances(ec2, 2)
    end = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    launched = [provider.launch(launch_spec(f"op-chaos-{n}", spot=n == 1)) for n in range(3)]
    launched_ids = [r.instance.id for r in launched]
    managed = provider.list_managed()
    utilisation = provider.utilisation([i.id for i in managed], end=end, window=timedelta(hours=1))
    command_ids = provider.run_command([i.id for i in managed], "echo ok")
    results = provider.command_results(command_ids[0], [managed[0].id])
    stopped = provider.stop(launched_ids)
    started = provider.start(launched_ids)
    provider.set_tags(unmanaged, {tagschema.CLI_USER: "carol"})
    now_managed = provider.list_managed()
    spot = provider.spot_prices(["t3.micro"])
    terminated = provider.terminate(launched_ids)

    # The faults really happened; every operation still completed, so each throttled request was retried.
    assert faults.count("lose") == 1 and faults.count("error") >= 3
    assert [r.reused_existing for r in launched] == [True, False, False]
    per_operation = Counter(
        t["Value"]
        for page in ec2.get_paginator("describe_instances").paginate()
        for r in page["Reservations"]
        for i in r["Instances"]
        for t in i.get("Tags", [])
        if t["Key"] == tagschema.REQUEST
    )
    assert per_operation == {"op-chaos-0": 1, "op-chaos-1": 1, "op-chaos-2": 1}  # no duplicate launch
    assert {i.id for i in managed} == {*seeded_managed, *launched_ids}
    assert set(utilisation) == {i.id for i in managed}
    assert len(command_ids) == 1 and results[0].status is CommandStatus.SUCCESS
    assert set(stopped) == set(started) == set(terminated) == set(launched_ids)
    assert set(terminated.values()) <= {InstanceState.TERMINATING, InstanceState.TERMINATED}
    assert {i.id for i in now_managed} == {*seeded_managed, *launched_ids, *unmanaged}
    assert spot and all(p.instance_type == "t3.micro" for p in spot)


def test_persistent_throttling_gives_up_after_max_attempts(
    make_provider: Callable[..., AwsProvider], calls: ApiCallCounter, faults: FaultInjector
) -> None:
    provider = make_provider(
        retry=RetryPolicy(max_attempts=4, base_wait_seconds=0.001, max_wait_seconds=0.002)
    )
    faults.throttle("ec2", "DescribeInstances")

    with pytest.raises(TransientError) as caught:
        provider.list_managed()

    assert calls.count("ec2.DescribeInstances") == 4  # ours only: botocore itself made no extra attempt
    assert caught.value.code == "RequestLimitExceeded"
    assert "throttled (RequestLimitExceeded) after 4 attempts" in str(caught.value)


def test_server_errors_are_retried(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    ids = run_instances(ec2, 2)
    faults.server_error("ec2", "StopInstances", status=503, times=1)
    faults.server_error("ec2", "StopInstances", status=500, code="InternalError", times=1)

    assert set(provider.stop(ids)) == set(ids)
    assert calls.count("ec2.StopInstances") == 3


def test_auth_failure_surfaces_at_once_with_a_hint(
    provider: AwsProvider, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    faults.error(
        "ec2",
        "DescribeInstances",
        code="UnauthorizedOperation",
        status=403,
        message="You are not authorized to perform this operation.",
    )

    with pytest.raises(AuthError) as caught:
        provider.list_managed()

    assert calls.count("ec2.DescribeInstances") == 1
    assert "not authorized" in str(caught.value) and "IAM permissions" in str(caught.value)
    assert caught.value.code == "UnauthorizedOperation"


def test_validation_error_is_not_retried(provider: AwsProvider, calls: ApiCallCounter) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        provider.launch(launch_spec("op-bad-ami", ami_id="not-an-ami"))

    assert calls.count("ec2.DescribeImages") == 1
    assert caught.value.code == "InvalidAMIID.Malformed"
    assert "not-an-ami" in str(caught.value)
    assert calls.count("ec2.RunInstances") == 0


def test_botocore_itself_never_retries(aws: MotoServer) -> None:
    # The client the provider builds, with the provider's botocore Config, sends a throttled request once.
    session = aws.session()
    counter = ApiCallCounter().attach(session)
    FaultInjector().throttle("ec2").attach(session)
    client = AwsClients(AwsConfig(), session=session).ec2

    with pytest.raises(ClientError):
        client.describe_instances()

    assert counter.count("ec2.DescribeInstances") == 1


def test_endpoint_can_come_from_config_instead_of_the_environment(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    session = aws.session()
    counter = ApiCallCounter().attach(session)
    provider = AwsProvider(AwsConfig(endpoint_url=aws.endpoint_url, retry=FAST), session=session)

    assert provider.list_managed() == []
    assert counter.count("ec2.DescribeInstances") == 1


def test_unreachable_endpoint_is_a_transient_error(aws: MotoServer) -> None:
    retry = RetryPolicy(max_attempts=2, base_wait_seconds=0.001, max_wait_seconds=0.002)
    config = AwsConfig(endpoint_url="http://127.0.0.1:9", connect_timeout_seconds=0.5, retry=retry)
    session = aws.session()
    counter = ApiCallCounter().attach(session)

    with pytest.raises(TransientError, match=r"could not talk to AWS.*after 2 attempts"):
        AwsProvider(config, session=session).list_managed()
    assert counter.count("ec2.DescribeInstances") == 2


def test_default_credential_chain_and_environment_endpoint(aws: MotoServer, ec2: Any) -> None:
    # No injected session: boto3 finds the (fake) credentials, region and AWS_ENDPOINT_URL in the environment.
    run_instances(ec2, 2, tags={tagschema.MANAGED: "true"})
    provider = AwsProvider(AwsConfig(retry=FAST))
    counter = ApiCallCounter().attach(provider.clients.session)  # clients are built lazily, after this

    assert len(provider.list_managed()) == 2
    assert counter.count("ec2.DescribeInstances") == 1
