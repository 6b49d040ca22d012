"""The demo fleet, checked through the same AWS APIs the bot reads (DescribeInstances, GetMetricData, S3)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest

from bot.sandbox.demo import (
    CPU_AMI_ID,
    GPU_AMI_ID,
    GPU_METRIC_NAME,
    GPU_METRIC_NAMESPACE,
    DemoFleet,
    DemoMetrics,
    DemoSeedError,
    backdate_launch_times,
    seed_demo_fleet,
)
from bot.sandbox.demo_code.train import Checkpoint
from bot.sandbox.users import ADMIN, APPROVER, DEMO_PEOPLE, REQUESTER
from providers import tags as tagschema
from tests.support.moto import DEFAULT_REGION, MotoServer

NOW = datetime.now(UTC).replace(microsecond=0)
MANAGED_KEYS = {
    tagschema.MANAGED,
    tagschema.OWNER,
    tagschema.PROJECT,
    tagschema.CREATED,
    tagschema.REQUEST,
    tagschema.NAME,
}


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(moto_server: MotoServer) -> tuple[MotoServer, DemoFleet]:
    moto_server.reset()
    return moto_server, seed_demo_fleet(moto_server.endpoint_url, DEFAULT_REGION, now=NOW, users=DEMO_PEOPLE)


def instances(server: MotoServer) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for reservation in server.client("ec2").describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            found[instance["InstanceId"]] = instance
    return found


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def cpu_values(
    server: MotoServer, instance_id: str, *, hours: float = 2.5, metric: str = "CPUUtilization"
) -> list[float]:
    namespace = "AWS/EC2" if metric == "CPUUtilization" else GPU_METRIC_NAMESPACE
    response = server.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m0",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                    },
                    "Period": 300,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=NOW - timedelta(hours=hours),
        EndTime=NOW + timedelta(minutes=1),
    )
    return [float(v) for v in response["MetricDataResults"][0]["Values"]]


def test_the_fleet_is_exactly_the_described_machines(seeded: tuple[MotoServer, DemoFleet]) -> None:
    server, fleet = seeded
    cloud = instances(server)
    assert set(cloud) == {m.instance_id for m in fleet.machines}
    expected = {
        # role: (type, owner, state, spot, protected, age)
        "idle": ("g5.xlarge", REQUESTER.id, "running", False, False, timedelta(hours=3)),
        "busy": ("g5.2xlarge", APPROVER.id, "running", False, False, timedelta(hours=6)),
        "protected": ("p3.2xlarge", ADMIN.id, "running", False, True, timedelta(days=4)),
        "young": ("c6i.2xlarge", REQUESTER.id, "running", False, False, timedelta(minutes=1)),
        "spot": ("g4dn.xlarge", REQUESTER.id, "running", True, False, timedelta(minutes=50)),
        "stopped": ("m6i.xlarge", APPROVER.id, "stopped", False, False, timedelta(days=2)),
        "unmanaged": ("t3.large", None, "running", False, False, timedelta(days=12)),
    }
    assert set(fleet.ids()) == set(expected)
    for role, (kind, owner, state, spot, protected, age) in expected.items():
        machine = fleet.machine(role)  # type: ignore[arg-type]
        raw = cloud[machine.instance_id]
        tags = tags_of(raw)
        assert raw["InstanceType"] == kind, role
        assert raw["State"]["Name"] == state == machine.state, role
        assert (raw.get("InstanceLifecycle") == "spot") is spot is machine.spot, role
        assert raw["LaunchTime"] == NOW - age == machine.launched_at, role
        assert tagschema.owner_of(tags) == owner == machine.owner, role
        assert (tagschema.protection_tag(tags) is not None) is protected is machine.protected, role
        assert raw["ImageId"] == (GPU_AMI_ID if machine.gpu else CPU_AMI_ID), role
        if owner is None:
            assert not tagschema.is_managed(tags) and not any(k.startswith("runctl:") for k in tags)
            assert tags == {"Name": "shared-jupyter", "team": "research"}
            continue
        assert tagschema.is_managed(tags), role
        assert MANAGED_KEYS <= set(tags) <= MANAGED_KEYS | {tagschema.PROTECTED}, role
        assert tagschema.is_valid_project(tags[tagschema.PROJECT]), role
        assert tags[tagschema.CREATED] == (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ"), role
        person = next(p for p in DEMO_PEOPLE if p.id == owner)
        assert (
            tags[tagschema.NAME]
            == f"runctl-{person.user.name}-{tags[tagschema.PROJECT]}-{tags[tagschema.REQUEST][:8]}"
        )
    volumes = server.client("ec2").describe_volumes()["Volumes"]
    idle_volume = next(v for v in volumes if v["Attachments"][0]["InstanceId"] == fleet.ids()["idle"])
    assert tags_of(idle_volume)[tagschema.OWNER] == REQUESTER.id  # tagged at launch, volumes too


def test_cloudwatch_proves_the_idle_machine_idle_and_the_busy_one_busy(
    seeded: tuple[MotoServer, DemoFleet],
) -> None:
    server, fleet = seeded
    ids = fleet.ids()
    idle = cpu_values(server, ids["idle"])
    assert len(idle) >= 24 and max(idle) < 2.0  # every 5 minutes for 2 h+, all under 2 %
    busy = cpu_values(server, ids["busy"])
    assert len(busy) >= 24 and all(60.0 <= v <= 90.0 for v in busy)
    assert all(15.0 <= v <= 35.0 for v in cpu_values(server, ids["protected"]))
    # The young machine is a minute old: it has no datapoint yet, or one if a 5-minute slot began since.
    assert len(cpu_values(server, ids["young"])) <= 1 and cpu_values(server, ids["stopped"]) == []
    spot = cpu_values(server, ids["spot"])
    assert 8 <= len(spot) <= 10 and all(45.0 <= v <= 75.0 for v in spot)  # only since its launch
    gpu = cpu_values(server, ids["idle"], metric=GPU_METRIC_NAME)
    assert len(gpu) >= 24 and max(gpu) <= 1.0
    assert len(cpu_values(server, ids["young"], metric=GPU_METRIC_NAME)) <= 1


def test_the_bucket_holds_the_training_tarball_and_checkpoints(seeded: tuple[MotoServer, DemoFleet]) -> None:
    server, fleet = seeded
    s3 = server.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=fleet.bucket)["Contents"]}
    assert keys == {"code/demo-train.tar.gz", *fleet.checkpoint_keys}
    assert fleet.code_uri == "s3://runctl-demo/code/demo-train.tar.gz"
    tarball = s3.get_object(Bucket=fleet.bucket, Key=fleet.code_key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tarball))) as archive:
        assert archive.getnames() == ["train.py"]
        member = archive.extractfile("train.py")
        assert member is not None
        shipped = resources.files("bot.sandbox.demo_code").joinpath("train.py").read_bytes()
        assert member.read() == shipped
    steps = []
    for key in sorted(fleet.checkpoint_keys):
        assert key.startswith("runs/llm-finetune/job-") and "/checkpoints/step-" in key
        body = s3.get_object(Bucket=fleet.bucket, Key=key)["Body"].read().decode()
        steps.append(Checkpoint.from_json(body))
    assert [c.step for c in steps] == [100, 200, 300]
    assert steps[-1].loss is not None and steps[0].loss is not None and steps[-1].loss < steps[0].loss
    assert fleet.checkpoint_prefix == f"s3://runctl-demo/{fleet.checkpoint_keys[0].rsplit('/', 1)[0]}/"


def test_metrics_keep_flowing_for_running_machines_only(seeded: tuple[MotoServer, DemoFleet]) -> None:
    server, fleet = seeded
    metrics = DemoMetrics(fleet, server.endpoint_url)
    assert metrics.publish(NOW) == 0  # the seeder already wrote the current slot
    server.client("ec2").stop_instances(InstanceIds=[fleet.ids()["idle"]])
    try:
        later = NOW + timedelta(minutes=10)
        written = metrics.publish(later)
        running = [m for m in fleet.machines if m.state == "running" and m.role != "idle"]
        assert written == 2 * (len(running) + sum(1 for m in running if m.gpu))
        assert metrics.publish(later) == 0
    finally:
        server.client("ec2").start_instances(InstanceIds=[fleet.ids()["idle"]])


def test_backdating_needs_moto_in_this_process(moto_server: MotoServer) -> None:
    with pytest.raises(DemoSeedError, match="not in this process"):
        backdate_launch_times(moto_server.endpoint_url, DEFAULT_REGION, {"i-0123456789abcdef0": NOW})
    with pytest.raises(ValueError, match="timezone-aware"):
        seed_demo_fleet(moto_server.endpoint_url, DEFAULT_REGION, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="approver"):
        seed_demo_fleet(moto_server.endpoint_url, DEFAULT_REGION, now=NOW, users=[REQUESTER])


def test_summary_names_every_machine(seeded: tuple[MotoServer, DemoFleet]) -> None:
    _, fleet = seeded
    lines = fleet.summary_lines()
    assert len(lines) == 7
    for line, machine in zip(lines, fleet.machines, strict=True):
        assert line.startswith(machine.instance_id) and machine.role in line
    assert json.dumps(fleet.ids())  # plain strings, printable as is
