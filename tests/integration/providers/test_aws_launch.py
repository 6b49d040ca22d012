"""Launch against moto over HTTP: tags at launch, images, volumes, spot, fallback, retries, quota."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from providers import tags as tagschema
from providers.aws.provider import AwsProvider
from providers.base import InstanceState, LaunchSpec, Lifecycle
from providers.errors import CapacityError, InvalidRequestError, QuotaError
from tests.support.moto import ApiCallCounter, FaultInjector, MotoServer, run_instances

FIXED_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def spec(operation_id: str = "op-0001", **overrides: Any) -> LaunchSpec:
    values: dict[str, Any] = {
        "operation_id": operation_id,
        "instance_type": "t3.micro",
        "owner": "U0123ALICE",
        "owner_name": "alice",
        "project": "vision",
    }
    values.update(overrides)
    return LaunchSpec(**values)


def described(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance: dict[str, Any] = reservations[0]["Instances"][0]
    return instance


def live_instances(ec2: Any) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def al2023_image(aws: MotoServer, arch: str = "x86_64") -> str:
    name = f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
    value: str = aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    return value


def test_on_demand_launch_writes_every_tag_at_launch(
    make_provider: Callable[..., AwsProvider], ec2: Any, aws: MotoServer, calls: ApiCallCounter
) -> None:
    provider = make_provider(clock=lambda: FIXED_NOW)
    result = provider.launch(spec(extra_tags={"team": "ml"}))

    assert not result.reused_existing and not result.fell_back_to_on_demand and result.warnings == ()
    instance = result.instance
    assert instance.lifecycle is Lifecycle.ON_DEMAND
    assert instance.state in (InstanceState.STARTING, InstanceState.RUNNING)

    raw = described(ec2, instance.id)
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags == {
        tagschema.MANAGED: "true",
        tagschema.OWNER: "U0123ALICE",
        tagschema.PROJECT: "vision",
        tagschema.CREATED: "2026-03-02T09:30:00Z",
        tagschema.REQUEST: "op-0001",
        tagschema.NAME: "runctl-alice-vision-op0001",
        "team": "ml",
    }
    assert raw["ImageId"] == al2023_image(aws)
    assert "InstanceLifecycle" not in raw
    # The root volume carries the same tags and the non-GPU size.
    volume_id = raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Size"] == 30
    assert {t["Key"]: t["Value"] for t in volume["Tags"]} == tags
    # Tags were written by RunInstances itself, never afterwards.
    assert calls.count("ec2.CreateTags") == 0
    assert calls.count("ec2.RunInstances") == 1
    assert provider.find_by_operation("op-0001") == provider.describe(instance.id)


def test_spot_launch_with_max_price(make_provider: Callable[..., AwsProvider], ec2: Any) -> None:
    result = make_provider().launch(spec("op-spot", spot=True, spot_max_price=0.25))

    assert result.instance.lifecycle is Lifecycle.SPOT
    assert described(ec2, result.instance.id)["InstanceLifecycle"] == "spot"
    assert not result.fell_back_to_on_demand


def test_gpu_family_gets_deep_learning_ami_and_large_root_volume(
    make_provider: Callable[..., AwsProvider], ec2: Any
) -> None:
    # moto ships one x86_64 Deep Learning AMI owned by "amazon"; point the name pattern at it.
    provider = make_provider(dlami_name_nvidia_x86_64="Deep Learning AMI Amazon Linux*")
    result = provider.launch(spec("op-gpu", instance_type="g5.xlarge"))

    raw = described(ec2, result.instance.id)
    image = ec2.describe_images(ImageIds=[raw["ImageId"]])["Images"][0]
    assert image["Name"].startswith("Deep Learning AMI Amazon Linux")
    volume_id = raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 100


def test_graviton_family_gets_arm64_amazon_linux(
    make_provider: Callable[..., AwsProvider], ec2: Any, aws: MotoServer
) -> None:
    result = make_provider().launch(spec("op-arm", instance_type="t4g.small"))
    assert described(ec2, result.instance.id)["ImageId"] == al2023_image(aws, "arm64")


def test_missing_deep_learning_ami_is_a_clear_error(make_provider: Callable[..., AwsProvider]) -> None:
    from providers.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no Deep Learning AMI named"):
        make_provider().launch(spec("op-nodlami", instance_type="p4d.24xlarge"))


def test_network_and_identity_settings_come_from_config(
    make_provider: Callable[..., AwsProvider], ec2: Any, aws: MotoServer
) -> None:
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="training", Description="training", VpcId=vpc)["GroupId"]
    iam = aws.client("iam")
    iam.create_instance_profile(InstanceProfileName="runctl-training")
    provider = make_provider(
        subnet_id=subnet,
        security_group_ids=(group,),
        key_name="team-key",
        iam_instance_profile="runctl-training",
        ami_id=al2023_image(aws),
        default_root_volume_gb=40,
    )

    result = provider.launch(spec("op-net"))

    raw = described(ec2, result.instance.id)
    assert raw["SubnetId"] == subnet
    assert [g["GroupId"] for g in raw["SecurityGroups"]] == [group]
    assert raw["KeyName"] == "team-key"
    assert raw["IamInstanceProfile"]["Arn"].endswith("instance-profile/runctl-training")
    volume_id = raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 40


def test_lost_answer_then_retry_makes_exactly_one_instance(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    # The first RunInstances reaches moto (which launches the machine), then its answer is lost.
    faults.lose_response("ec2", "RunInstances", how="read-timeout", times=1)

    result = provider.launch(spec("op-lost"))

    assert faults.count("lose") == 1 and faults.lost_answers[0][0] == 200  # moto did launch it
    assert result.reused_existing
    assert calls.count("ec2.RunInstances") == 1  # the retry looked the operation up instead of relaunching
    machines = live_instances(ec2)
    assert [m["InstanceId"] for m in machines] == [result.instance.id]
    assert result.instance.operation_id == "op-lost"


def test_closed_connection_on_spot_launch_is_also_deduplicated(
    provider: AwsProvider, ec2: Any, faults: FaultInjector
) -> None:
    faults.lose_response("ec2", "RunInstances", how="connection-closed", times=1)

    result = provider.launch(spec("op-lost-spot", spot=True))

    assert result.reused_existing and result.instance.lifecycle is Lifecycle.SPOT
    assert len(live_instances(ec2)) == 1


def test_throttled_launch_is_retried_without_duplicates(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    faults.throttle("ec2", "RunInstances", times=2)

    result = provider.launch(spec("op-throttled"))

    assert not result.reused_existing
    assert calls.count("ec2.RunInstances") == 3  # two rejected before they ran, then the real one
    assert len(live_instances(ec2)) == 1


def test_spot_capacity_error_falls_back_to_on_demand_when_allowed(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    # EC2 answers capacity errors with HTTP 500; they must not be retried as server errors.
    faults.error("ec2", "RunInstances", code="InsufficientInstanceCapacity", status=500, times=1)

    result = provider.launch(spec("op-fallback", spot=True, allow_on_demand_fallback=True))

    assert result.fell_back_to_on_demand
    assert result.instance.lifecycle is Lifecycle.ON_DEMAND
    assert any("launched on-demand instead" in w for w in result.warnings)
    assert calls.count("ec2.RunInstances") == 2
    assert [m["InstanceId"] for m in live_instances(ec2)] == [result.instance.id]


def test_spot_capacity_error_surfaces_without_fallback(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    faults.error("ec2", "RunInstances", code="SpotMaxPriceTooLow", message="Your price is too low", times=1)

    with pytest.raises(CapacityError) as caught:
        provider.launch(spec("op-nofallback", spot=True, spot_max_price=0.001))

    assert caught.value.code == "SpotMaxPriceTooLow"
    assert "Your price is too low" in str(caught.value)
    assert calls.count("ec2.RunInstances") == 1
    assert live_instances(ec2) == []


def test_quota_guard_warns_then_refuses(make_provider: Callable[..., AwsProvider], ec2: Any) -> None:
    provider = make_provider(quota_warn_at=2, quota_refuse_at=3)
    run_instances(ec2, 1, tags={tagschema.MANAGED: "true"})
    run_instances(ec2, 5, tags={"owner": "someone-else"})  # unmanaged machines do not count

    assert provider.launch(spec("op-q1")).warnings == ()
    warned = provider.launch(spec("op-q2"))
    assert len(warned.warnings) == 1 and "2 managed instances are already running" in warned.warnings[0]

    with pytest.raises(QuotaError, match="3 managed instances are running; the limit is 3"):
        provider.launch(spec("op-q3"))
    assert len(live_instances(ec2)) == 1 + 5 + 2


def test_invalid_launch_is_rejected_before_any_request(provider: AwsProvider, calls: ApiCallCounter) -> None:
    with pytest.raises(InvalidRequestError, match="project"):
        provider.launch(spec(project="bad project!"))
    with pytest.raises(InvalidRequestError, match="extra tags may not set runctl:owner"):
        provider.launch(spec(extra_tags={tagschema.OWNER: "U999"}))
    with pytest.raises(InvalidRequestError, match="max price"):
        provider.launch(spec(spot=True, spot_max_price=0.0))
    assert calls.total() == 0


def test_launching_the_same_operation_again_returns_the_first_machine(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter
) -> None:
    first = provider.launch(spec("op-again"))
    again = provider.launch(spec("op-again"))

    assert again.reused_existing and again.instance.id == first.instance.id
    assert calls.count("ec2.RunInstances") == 1
    assert len(live_instances(ec2)) == 1
