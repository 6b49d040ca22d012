"""The sandbox's demo fleet: a handful of machines worth trying the bot on, seeded into moto with boto3.

Every machine exists for a reason the tour can point at: one proven idle (CloudWatch says so), one busy,
one protected, one too young to touch, one spot, one stopped, one unmanaged. Managed machines carry the
DESIGN §2 tags written at launch (``TagSpecifications``, never afterwards) and belong to the demo people.
An S3 bucket holds a real (tiny) training tarball and the checkpoints of an earlier run of it.

Launch times: moto stamps every instance with the wall clock at ``RunInstances`` and has no API to change
it, yet the idle rule needs machines at least two hours old. The sandbox runs moto in its own process, so
the seeder sets ``launch_time`` on moto's in-process instance objects (the only non-API step here) and then
checks through ``DescribeInstances`` that the cloud now reports the intended times. Against a moto in
another process this is impossible and :func:`seed_demo_fleet` says so (or, with ``backdate=False``, keeps
moto's times: every machine is then brand new and no idle rule can fire for two hours).

CloudWatch: EC2 publishes no metrics in moto, so the seeder writes ``AWS/EC2 CPUUtilization`` every five
minutes (the bot's default period) over the last hours, and :class:`DemoMetrics` keeps writing them while
the sandbox runs, so that the evidence for "idle" and "busy" does not age out of the bot's window.
"""

from __future__ import annotations

import gzip
import io
import logging
import random
import tarfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal

import boto3
from botocore.config import Config

from bot.sandbox.demo_code.train import train
from bot.sandbox.users import DEMO_PEOPLE, DemoPerson, DemoRole
from providers import tags as tagschema
from providers.aws.ec2 import client_token, short_id

log = logging.getLogger(__name__)

MachineRole = Literal["idle", "busy", "protected", "young", "spot", "stopped", "unmanaged"]

#: moto ships these images; using them keeps DescribeImages (and the bot's AMI checks) truthful.
GPU_AMI_ID = "ami-dca37ea5"  # "Deep Learning AMI Ubuntu Linux - 2.4_Oct2017"
CPU_AMI_ID = "ami-04681a1dbd79675a5"  # "amzn2-ami-hvm-2.0.20180810-x86_64-gp2"

DEMO_BUCKET = "runctl-demo"
CODE_KEY = "code/demo-train.tar.gz"
CPU_NAMESPACE = "AWS/EC2"
CPU_METRIC = "CPUUtilization"
#: Where the CloudWatch agent puts GPU utilisation; set these as the bot's GPU metric to use them.
GPU_METRIC_NAMESPACE = "CWAgent"
GPU_METRIC_NAME = "nvidia_smi_utilization_gpu"
METRIC_PERIOD = timedelta(minutes=5)
#: How far back the seeder writes datapoints (the bot's idle window is 60 min by default).
METRIC_HISTORY = timedelta(hours=3)
#: moto accepts any credentials; these never leave the machine (every client has an explicit endpoint).
FAKE_ACCESS_KEY = "sandbox"


class DemoSeedError(RuntimeError):
    """The demo fleet could not be seeded as described (e.g. moto is not in this process)."""


@dataclass(frozen=True)
class _Plan:
    role: MachineRole
    instance_type: str
    gpu: bool
    owner: DemoRole | None
    project: str | None
    age: timedelta
    cpu: tuple[float, float]
    gpu_util: tuple[float, float]
    description: str
    spot: bool = False
    protected: bool = False
    stopped: bool = False
    extra_tags: tuple[tuple[str, str], ...] = ()


_PLANS: tuple[_Plan, ...] = (
    _Plan(
        role="idle",
        instance_type="g5.xlarge",
        gpu=True,
        owner="requester",
        project="llm-finetune",
        age=timedelta(hours=3),
        cpu=(0.3, 1.8),
        gpu_util=(0.0, 1.0),
        description="GPU machine idle for hours (CPU under 2 %): the idle reminder's target",
    ),
    _Plan(
        role="busy",
        instance_type="g5.2xlarge",
        gpu=True,
        owner="approver",
        project="vision-pretrain",
        age=timedelta(hours=6),
        cpu=(60.0, 90.0),
        gpu_util=(85.0, 99.0),
        description="GPU machine training hard (CPU 60-90 %): never idle",
    ),
    _Plan(
        role="protected",
        instance_type="p3.2xlarge",
        gpu=True,
        owner="admin",
        project="baseline-eval",
        age=timedelta(days=4),
        cpu=(15.0, 35.0),
        gpu_util=(20.0, 40.0),
        protected=True,
        description="protected evaluation box: no rule or command touches it without --force",
    ),
    _Plan(
        role="young",
        instance_type="c6i.2xlarge",
        gpu=False,
        owner="requester",
        project="data-prep",
        age=timedelta(minutes=1),
        cpu=(20.0, 50.0),
        gpu_util=(0.0, 0.0),
        description="CPU machine launched minutes ago: too young to stop without --force",
    ),
    _Plan(
        role="spot",
        instance_type="g4dn.xlarge",
        gpu=True,
        owner="requester",
        project="hparam-sweep",
        age=timedelta(minutes=50),
        cpu=(45.0, 75.0),
        gpu_util=(70.0, 95.0),
        spot=True,
        description="spot GPU machine running a sweep",
    ),
    _Plan(
        role="stopped",
        instance_type="m6i.xlarge",
        gpu=False,
        owner="approver",
        project="feature-store",
        age=timedelta(days=2),
        cpu=(30.0, 50.0),
        gpu_util=(0.0, 0.0),
        stopped=True,
        description="stopped CPU machine: try /runctl start",
    ),
    _Plan(
        role="unmanaged",
        instance_type="t3.large",
        gpu=False,
        owner=None,
        project=None,
        age=timedelta(days=12),
        cpu=(0.5, 3.0),
        gpu_util=(0.0, 0.0),
        extra_tags=(("Name", "shared-jupyter"), ("team", "research")),
        description="someone's hand-made box without runctl tags: listed, never touched",
    ),
)


@dataclass(frozen=True)
class DemoMachine:
    role: MachineRole
    instance_id: str
    instance_type: str
    name: str
    owner: str | None
    project: str | None
    launched_at: datetime
    managed: bool
    protected: bool
    spot: bool
    gpu: bool
    state: str
    description: str
    tags: Mapping[str, str] = field(default_factory=dict)
    cpu_range: tuple[float, float] = (0.0, 0.0)
    gpu_range: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class DemoFleet:
    """What was seeded; ``metrics_until`` is the newest datapoint slot written so far."""

    region: str
    machines: tuple[DemoMachine, ...]
    bucket: str
    code_key: str
    checkpoint_keys: tuple[str, ...]
    gpu_ami_id: str
    cpu_ami_id: str
    metrics_until: datetime
    launch_times_backdated: bool

    def machine(self, role: MachineRole) -> DemoMachine:
        for candidate in self.machines:
            if candidate.role == role:
                return candidate
        raise LookupError(f"no demo machine with role {role!r}")

    def ids(self) -> dict[str, str]:
        """Instance id by role, for the tour."""
        return {m.role: m.instance_id for m in self.machines}

    @property
    def code_uri(self) -> str:
        return f"s3://{self.bucket}/{self.code_key}"

    @property
    def checkpoint_prefix(self) -> str:
        key = self.checkpoint_keys[0].rsplit("/", 1)[0] + "/" if self.checkpoint_keys else ""
        return f"s3://{self.bucket}/{key}"

    def summary_lines(self) -> list[str]:
        """One line per machine: id, type, role and why it is there."""
        return [f"{m.instance_id}  {m.instance_type:<12} {m.role:<9} {m.description}" for m in self.machines]


def _slot(moment: datetime) -> datetime:
    """The start of the five-minute slot ``moment`` is in (CloudWatch basic monitoring's grid)."""
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(METRIC_PERIOD.total_seconds()), UTC)


def _value(instance_id: str, metric: str, slot: datetime, bounds: tuple[float, float]) -> float:
    """A reproducible value in ``bounds`` for one machine, metric and slot."""
    rng = random.Random(f"{instance_id}/{metric}/{slot.isoformat()}")
    return round(rng.uniform(*bounds), 2)


def _session(session: boto3.Session | None, region: str) -> boto3.Session:
    return session or boto3.Session(
        aws_access_key_id=FAKE_ACCESS_KEY,
        aws_secret_access_key=FAKE_ACCESS_KEY,
        aws_session_token=FAKE_ACCESS_KEY,
        region_name=region,
    )


def _client(session: boto3.Session, service: str, endpoint_url: str, region: str) -> Any:
    config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    make_client: Callable[..., Any] = session.client  # one helper for several services: untyped on purpose
    return make_client(service, endpoint_url=endpoint_url, region_name=region, config=config)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags_for(plan: _Plan, people: Mapping[DemoRole, DemoPerson], launched_at: datetime) -> dict[str, str]:
    if plan.owner is None or plan.project is None:
        return dict(plan.extra_tags)
    owner = people[plan.owner]
    operation_id = uuid.uuid4().hex
    tags = {
        tagschema.MANAGED: "true",
        tagschema.OWNER: owner.id,
        tagschema.PROJECT: plan.project,
        tagschema.CREATED: _iso(launched_at),
        tagschema.REQUEST: operation_id,
        tagschema.NAME: tagschema.instance_name(owner.user.name, plan.project, short_id(operation_id)),
    }
    if plan.protected:
        tags[tagschema.PROTECTED] = "true"
    tags.update(plan.extra_tags)
    return tags


def _run(ec2: Any, plan: _Plan, tags: Mapping[str, str]) -> str:
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    request: dict[str, Any] = {
        "ImageId": GPU_AMI_ID if plan.gpu else CPU_AMI_ID,
        "InstanceType": plan.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list},
            {"ResourceType": "volume", "Tags": tag_list},
        ],
    }
    if tagschema.REQUEST in tags:
        request["ClientToken"] = client_token(tags[tagschema.REQUEST])
    if plan.spot:
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    response = ec2.run_instances(**request)
    return str(response["Instances"][0]["InstanceId"])


def backdate_launch_times(
    endpoint_url: str,
    region: str,
    launch_times: Mapping[str, datetime],
    *,
    session: boto3.Session | None = None,
) -> None:
    """Make moto report ``launch_times`` (instance id → aware datetime) as the instances' LaunchTime.

    Works only when the moto server at ``endpoint_url`` runs in this process (``ThreadedMotoServer``):
    moto has no API for it, so the in-process instance objects are changed, then checked over the API.
    """
    if not launch_times:
        return
    from moto.backends import get_backend  # the sandbox's own moto; imported only for this step
    from moto.ec2.exceptions import InvalidInstanceIdError

    boto = _session(session, region)
    account = str(_client(boto, "sts", endpoint_url, region).get_caller_identity()["Account"])
    backend = get_backend("ec2")[account][region]
    for instance_id, when in launch_times.items():
        if when.tzinfo is None:
            raise ValueError("launch times must be timezone-aware")
        try:
            instance = backend.get_instance(instance_id)
        except InvalidInstanceIdError as exc:
            raise DemoSeedError(
                f"{instance_id} is not in this process's moto: the moto server at {endpoint_url} runs "
                "elsewhere, so its launch times can't be moved (seed with backdate=False)"
            ) from exc
        instance.launch_time = when.astimezone(UTC).replace(tzinfo=None)
    ec2 = _client(boto, "ec2", endpoint_url, region)
    reported = _describe(ec2, list(launch_times))
    for instance_id, when in launch_times.items():
        seen = reported[instance_id]["LaunchTime"]
        if abs((seen - when).total_seconds()) > 1.0:
            raise DemoSeedError(f"moto still reports {instance_id} launched at {seen}, not {when}")


def _describe(ec2: Any, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=list(instance_ids)):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance
    return found


def _metric_data(machine: DemoMachine, slots: Iterable[datetime]) -> list[dict[str, Any]]:
    dimensions = [{"Name": "InstanceId", "Value": machine.instance_id}]
    data: list[dict[str, Any]] = []
    for slot in slots:
        data.append(
            {
                "MetricName": CPU_METRIC,
                "Dimensions": dimensions,
                "Timestamp": slot,
                "Value": _value(machine.instance_id, CPU_METRIC, slot, machine.cpu_range),
                "Unit": "Percent",
            }
        )
    return data


def _gpu_data(machine: DemoMachine, slots: Iterable[datetime]) -> list[dict[str, Any]]:
    dimensions = [{"Name": "InstanceId", "Value": machine.instance_id}]
    return [
        {
            "MetricName": GPU_METRIC_NAME,
            "Dimensions": dimensions,
            "Timestamp": slot,
            "Value": _value(machine.instance_id, GPU_METRIC_NAME, slot, machine.gpu_range),
            "Unit": "Percent",
        }
        for slot in slots
    ]


def _put(cloudwatch: Any, namespace: str, data: list[dict[str, Any]]) -> None:
    for start in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])


def _publish(cloudwatch: Any, machines: Iterable[tuple[DemoMachine, list[datetime]]]) -> int:
    cpu: list[dict[str, Any]] = []
    gpu: list[dict[str, Any]] = []
    for machine, slots in machines:
        cpu.extend(_metric_data(machine, slots))
        if machine.gpu:
            gpu.extend(_gpu_data(machine, slots))
    _put(cloudwatch, CPU_NAMESPACE, cpu)
    _put(cloudwatch, GPU_METRIC_NAMESPACE, gpu)
    return len(cpu) + len(gpu)


def _slots(first: datetime, last: datetime) -> list[datetime]:
    slots = []
    slot = first
    while slot <= last:
        slots.append(slot)
        slot += METRIC_PERIOD
    return slots


def _tarball(mtime: datetime) -> bytes:
    """``code/demo-train.tar.gz``: the demo training script at the archive's top level."""
    script = resources.files("bot.sandbox.demo_code").joinpath("train.py").read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(script)
        info.mode = 0o644
        info.mtime = int(mtime.timestamp())
        archive.addfile(info, io.BytesIO(script))
    return gzip.compress(raw.getvalue(), mtime=int(mtime.timestamp()))


def _seed_bucket(s3: Any, region: str, bucket: str, now: datetime, project: str) -> tuple[str, ...]:
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_object(Bucket=bucket, Key=CODE_KEY, Body=_tarball(now), ContentType="application/gzip")
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    prefix = f"runs/{project}/{job_id}/checkpoints/"
    keys = []
    for checkpoint in train(300, every=100):
        key = prefix + checkpoint.filename
        s3.put_object(
            Bucket=bucket, Key=key, Body=checkpoint.to_json().encode(), ContentType="application/json"
        )
        keys.append(key)
    return tuple(keys)


def seed_demo_fleet(
    endpoint_url: str,
    region: str,
    *,
    now: datetime,
    users: Sequence[DemoPerson] = DEMO_PEOPLE,
    bucket: str = DEMO_BUCKET,
    backdate: bool = True,
    session: boto3.Session | None = None,
) -> DemoFleet:
    """Seed an empty moto with the demo fleet, its metrics and the demo bucket; return what was made.

    ``now`` is the sandbox's clock (launch times and datapoints are placed relative to it); ``users``
    must hold a requester, an approver and an admin (the owners). Real boto3 calls throughout, except
    the launch-time step described in the module docstring.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    people: dict[DemoRole, DemoPerson] = {p.role: p for p in users}
    missing = sorted({p.owner for p in _PLANS if p.owner is not None} - set(people))
    if missing:
        raise ValueError(f"the demo fleet needs people with these roles: {', '.join(missing)}")
    boto = _session(session, region)
    ec2 = _client(boto, "ec2", endpoint_url, region)
    cloudwatch = _client(boto, "cloudwatch", endpoint_url, region)
    s3 = _client(boto, "s3", endpoint_url, region)

    planned: list[tuple[_Plan, str, dict[str, str], datetime]] = []
    for plan in _PLANS:
        launched_at = (now - plan.age).replace(microsecond=0) if backdate else now.replace(microsecond=0)
        tags = _tags_for(plan, people, launched_at)
        planned.append((plan, _run(ec2, plan, tags), tags, launched_at))
    stopped = [instance_id for plan, instance_id, _, _ in planned if plan.stopped]
    if stopped:
        ec2.stop_instances(InstanceIds=stopped)
    if backdate:
        backdate_launch_times(endpoint_url, region, {iid: when for _, iid, _, when in planned}, session=boto)
    reported = _describe(ec2, [iid for _, iid, _, _ in planned])

    machines: list[DemoMachine] = []
    for plan, instance_id, tags, _ in planned:
        raw = reported[instance_id]
        machines.append(
            DemoMachine(
                role=plan.role,
                instance_id=instance_id,
                instance_type=plan.instance_type,
                name=tags.get(tagschema.NAME, ""),
                owner=tags.get(tagschema.OWNER),
                project=tags.get(tagschema.PROJECT),
                launched_at=raw["LaunchTime"].astimezone(UTC),
                managed=tagschema.is_managed(tags),
                protected=tagschema.protection_tag(tags) is not None,
                spot=raw.get("InstanceLifecycle") == "spot",
                gpu=plan.gpu,
                state=raw["State"]["Name"],
                description=plan.description,
                tags=tags,
                cpu_range=plan.cpu,
                gpu_range=plan.gpu_util,
            )
        )

    last_slot = _slot(now)
    history: list[tuple[DemoMachine, list[datetime]]] = []
    for machine in machines:
        if machine.state != "running":
            continue
        first = max(_slot(machine.launched_at) + METRIC_PERIOD, last_slot - METRIC_HISTORY)
        history.append((machine, _slots(first, last_slot)))
    written = _publish(cloudwatch, history)

    idle_project = next(m.project for m in machines if m.role == "idle")
    checkpoint_keys = _seed_bucket(s3, region, bucket, now, idle_project or "demo")
    log.info("seeded %d demo machines, %d datapoints, s3://%s", len(machines), written, bucket)
    return DemoFleet(
        region=region,
        machines=tuple(machines),
        bucket=bucket,
        code_key=CODE_KEY,
        checkpoint_keys=checkpoint_keys,
        gpu_ami_id=GPU_AMI_ID,
        cpu_ami_id=CPU_AMI_ID,
        metrics_until=last_slot,
        launch_times_backdated=backdate,
    )


class DemoMetrics:
    """Keeps the demo fleet's CloudWatch evidence current while the sandbox runs.

    Call :meth:`publish` from a scheduler job (every few minutes is plenty): it writes one datapoint per
    five-minute slot since the last call for each machine that is *running now* (a stopped or terminated
    machine stops reporting, as on EC2). Not thread-safe; call it from one job.
    """

    def __init__(
        self,
        fleet: DemoFleet,
        endpoint_url: str,
        *,
        session: boto3.Session | None = None,
    ) -> None:
        self.fleet = fleet
        boto = _session(session, fleet.region)
        self._ec2 = _client(boto, "ec2", endpoint_url, fleet.region)
        self._cloudwatch = _client(boto, "cloudwatch", endpoint_url, fleet.region)
        self._last = {m.instance_id: fleet.metrics_until for m in fleet.machines}

    def publish(self, now: datetime) -> int:
        """Write the datapoints due up to ``now``; returns how many were written."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        current = _slot(now)
        described = _describe(self._ec2, list(self._last))
        due: list[tuple[DemoMachine, list[datetime]]] = []
        for machine in self.fleet.machines:
            raw = described.get(machine.instance_id)
            if raw is None or raw["State"]["Name"] != "running":
                continue
            last = self._last[machine.instance_id]
            first = max(last + METRIC_PERIOD, current - METRIC_HISTORY)
            slots = _slots(first, current)
            if slots:
                due.append((machine, slots))
        written = _publish(self._cloudwatch, due)
        for machine, slots in due:
            self._last[machine.instance_id] = slots[-1]
        return written
