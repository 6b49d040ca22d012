"""EC2 requests: listing by one paginated scan, state changes and tags in batches, and the launch request.

Listing managed instances. A machine is managed when it has `runctl:managed=true` OR `CreatedBy=runctl` OR
a `runctl:user` tag. EC2 ANDs its filters, so asking the API for that union takes three filtered scans;
instead the provider makes one scan of every non-terminated instance (`instance-state-name` filter,
`MaxResults=1000`) and classifies in code with `providers.tags.is_managed`. That is ⌈N/1000⌉ requests for N
instances in the account, the same scan also answers "what unmanaged machines are running", and the common
case (a fleet of a few hundred machines) is one request instead of three.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from sys import intern
from typing import TYPE_CHECKING, Any

from providers import tags as tagschema
from providers.aws.ami import ImageInfo
from providers.aws.calls import AwsCaller
from providers.aws.config import AwsConfig
from providers.aws.families import is_gpu_family
from providers.base import Instance, InstanceState, LaunchSpec, Lifecycle, normalise_state
from providers.errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef

PAGE_SIZE = 1000  # DescribeInstances MaxResults upper bound (the default page size)
STATE_CHANGE_BATCH = 1000  # instance ids per Start/Stop/TerminateInstances and CreateTags/DeleteTags request
LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")  # everything but terminated
RUNNING_STATES = ("pending", "running")
MAX_TAGS = 50
MAX_CLIENT_TOKEN = 64
# Keys a launch writes itself; extra tags must not overwrite them.
RESERVED_LAUNCH_TAGS = frozenset(
    {tagschema.MANAGED, tagschema.OWNER, tagschema.PROJECT, tagschema.CREATED, tagschema.REQUEST}
)
_TOKEN_SAFE = re.compile(r"[^A-Za-z0-9]")
# EC2 dates a state change in `StateTransitionReason`: "User initiated (2026-11-29 14:02:11 GMT)".
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def transition_time(reason: object) -> datetime | None:
    """The time in an EC2 `StateTransitionReason`, or None when it carries none (or a malformed one)."""
    found = _TRANSITION_TIME.search(reason) if isinstance(reason, str) else None
    if found is None:
        return None
    try:
        return datetime.fromisoformat(f"{found.group(1)}T{found.group(2)}").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_instance(raw: Mapping[str, Any], region: str) -> Instance:
    """One `Instances` entry of a DescribeInstances answer as an `Instance`.

    Strings that repeat across a fleet (tag keys and values, type, zone) are interned: a 10,000-machine
    listing then shares one copy of each owner, project and tag name instead of 10,000.
    """
    launch_time = raw.get("LaunchTime")
    if isinstance(launch_time, datetime):
        launched = launch_time.astimezone(UTC) if launch_time.tzinfo else launch_time.replace(tzinfo=UTC)
    else:
        launched = datetime.fromtimestamp(0, UTC)
    reason = raw.get("StateReason") or {}
    return Instance(
        id=str(raw["InstanceId"]),
        instance_type=intern(str(raw.get("InstanceType") or "")),
        state=normalise_state((raw.get("State") or {}).get("Name")),
        lifecycle=Lifecycle.SPOT if raw.get("InstanceLifecycle") == "spot" else Lifecycle.ON_DEMAND,
        launch_time=launched,
        tags={intern(str(t["Key"])): intern(str(t.get("Value", ""))) for t in raw.get("Tags") or ()},
        region=region,
        availability_zone=_interned((raw.get("Placement") or {}).get("AvailabilityZone")),
        private_ip=raw.get("PrivateIpAddress") or None,
        public_ip=raw.get("PublicIpAddress") or None,
        state_reason_code=reason.get("Code") or None,
        state_reason_message=reason.get("Message") or None,
        state_changed_at=transition_time(raw.get("StateTransitionReason")),
    )


def _interned(value: str | None) -> str | None:
    return intern(value) if value else None


def chunked(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def unique(ids: Iterable[str]) -> list[str]:
    """De-duplicated, order kept: EC2 rejects a request that names one instance twice."""
    return list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))


def validate_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        if not key or len(key) > 128:
            raise InvalidRequestError(f"tag key {key!r} must be 1-128 characters")
        if key.lower().startswith("aws:"):
            raise InvalidRequestError(f"tag key {key!r}: the aws: prefix is reserved by AWS")
        if len(value) > 256:
            raise InvalidRequestError(f"tag {key!r}: value longer than 256 characters")
    if len(tags) > MAX_TAGS:
        raise InvalidRequestError(f"{len(tags)} tags: EC2 allows at most {MAX_TAGS} per resource")


def client_token(operation_id: str, suffix: str = "") -> str:
    """The RunInstances idempotency token: the operation id itself when it fits EC2's 64 ASCII characters."""
    token = f"{operation_id}{suffix}"
    if len(token) <= MAX_CLIENT_TOKEN and token.isascii():
        return token
    digest = hashlib.sha256(operation_id.encode()).hexdigest()
    return f"{digest[: MAX_CLIENT_TOKEN - len(suffix)]}{suffix}"


def short_id(operation_id: str) -> str:
    return _TOKEN_SAFE.sub("", operation_id)[:8].lower() or "launch"


def launch_tags(spec: LaunchSpec, now: datetime) -> dict[str, str]:
    """The DESIGN §2 tag set, written at launch on the instance and its volumes."""
    if not tagschema.is_valid_project(spec.project):
        raise InvalidRequestError(f"project {spec.project!r} must be 1-64 of [A-Za-z0-9._-]")
    if not spec.owner:
        raise InvalidRequestError("a launch needs an owner")
    clash = sorted(RESERVED_LAUNCH_TAGS & set(spec.extra_tags))
    if clash:
        raise InvalidRequestError(f"extra tags may not set {', '.join(clash)}: the launch writes them")
    tags = dict(spec.extra_tags)
    tags.update(
        {
            tagschema.MANAGED: "true",
            tagschema.OWNER: spec.owner,
            tagschema.PROJECT: spec.project,
            tagschema.CREATED: now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            tagschema.REQUEST: spec.operation_id,
        }
    )
    tags.setdefault(
        tagschema.NAME,
        tagschema.instance_name(spec.owner_name or spec.owner, spec.project, short_id(spec.operation_id)),
    )
    validate_tags(tags)
    return tags


def validate_spec(spec: LaunchSpec, now: datetime) -> None:
    """Reject a malformed launch before it costs an API call."""
    if not spec.operation_id.strip():
        raise InvalidRequestError("a launch needs an operation id")
    if not spec.instance_type.strip():
        raise InvalidRequestError("a launch needs an instance type")
    if spec.spot_max_price is not None and spec.spot_max_price <= 0:
        raise InvalidRequestError("spot max price must be positive")
    if spec.root_volume_gb is not None and spec.root_volume_gb < 8:
        raise InvalidRequestError("the root volume must be at least 8 GB")
    launch_tags(spec, now)


def root_volume_gb(spec: LaunchSpec, config: AwsConfig, image: ImageInfo) -> int:
    wanted = spec.root_volume_gb or (
        config.gpu_root_volume_gb if is_gpu_family(spec.instance_type) else config.default_root_volume_gb
    )
    return max(wanted, image.root_snapshot_gb or 0)


def run_instances_request(
    spec: LaunchSpec,
    config: AwsConfig,
    image: ImageInfo,
    *,
    now: datetime,
    spot: bool,
    token_suffix: str = "",
) -> dict[str, Any]:
    """The RunInstances arguments for one machine; spec fields override configured defaults."""
    tag_list = [{"Key": k, "Value": v} for k, v in launch_tags(spec, now).items()]
    request: dict[str, Any] = {
        "ImageId": image.image_id,
        "InstanceType": spec.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(spec.operation_id, token_suffix),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list},
            {"ResourceType": "volume", "Tags": tag_list},
        ],
        "BlockDeviceMappings": [
            {
                "DeviceName": image.root_device_name,
                "Ebs": {
                    "VolumeSize": root_volume_gb(spec, config, image),
                    "VolumeType": config.root_volume_type,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
    }
    profile = spec.iam_instance_profile or config.iam_instance_profile
    if profile:
        request["IamInstanceProfile"] = {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
    subnet = spec.subnet_id or config.subnet_id
    if subnet:
        request["SubnetId"] = subnet
    groups = spec.security_group_ids or config.security_group_ids
    if groups:
        request["SecurityGroupIds"] = list(groups)
    key_name = spec.key_name or config.key_name
    if key_name:
        request["KeyName"] = key_name
    if spot:
        options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if spec.spot_max_price is not None:
            options["MaxPrice"] = f"{spec.spot_max_price:.6f}".rstrip("0").rstrip(".")
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    return request


class Ec2Instances:
    """Instance requests against one region. Methods batch; none is called once per instance."""

    def __init__(
        self, client: EC2Client, caller: AwsCaller, region: str, *, page_size: int = PAGE_SIZE
    ) -> None:
        self._client = client
        self._caller = caller
        self._region = region
        self._page_size = page_size

    def scan(self, states: Sequence[str] = LIVE_STATES, *, retried: bool = True) -> Iterator[Instance]:
        """Every instance in `states`, one paginated DescribeInstances scan."""
        for batch in self.pages(states, retried=retried):
            yield from batch

    def find_by_operation(self, operation_id: str, *, retried: bool = True) -> Instance | None:
        """The live machine a launch with this operation id made, if any (the earliest, if two)."""
        found = list(
            self._describe(
                [
                    {"Name": f"tag:{tagschema.REQUEST}", "Values": [operation_id]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ],
                retried=retried,
            )
        )
        return min(found, key=lambda i: (i.launch_time, i.id)) if found else None

    def describe(self, instance_id: str) -> Instance | None:
        try:
            response = self._caller.call(
                "ec2:DescribeInstances", lambda: self._client.describe_instances(InstanceIds=[instance_id])
            )
        except NotFoundError:
            return None
        for reservation in response.get("Reservations") or ():
            for raw in reservation.get("Instances") or ():
                if raw.get("InstanceId") == instance_id:
                    return parse_instance(raw, self._region)
        return None

    def describe_many(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        """One paginated DescribeInstances per 200 ids (the filter's value limit). A filter, unlike
        `InstanceIds`, skips ids that no longer exist instead of failing the whole request."""
        found: dict[str, Instance] = {}
        for batch in chunked(unique(instance_ids), 200):
            for inst in self._describe([{"Name": "instance-id", "Values": batch}], retried=True):
                found[inst.id] = inst
        return found

    def pages(self, states: Sequence[str] = LIVE_STATES, *, retried: bool = True) -> Iterator[list[Instance]]:
        """`scan`, one list per DescribeInstances answer (at most `page_size` instances on AWS)."""
        return self._describe_pages(
            [{"Name": "instance-state-name", "Values": list(states)}], retried=retried
        )

    def _describe(self, filters: list[dict[str, Any]], *, retried: bool) -> Iterator[Instance]:
        for batch in self._describe_pages(filters, retried=retried):
            yield from batch

    def _describe_pages(self, filters: list[dict[str, Any]], *, retried: bool) -> Iterator[list[Instance]]:
        region = self._region

        def parse(page: Mapping[str, Any]) -> list[Instance]:
            return [
                parse_instance(raw, region)
                for reservation in page.get("Reservations") or ()
                for raw in reservation.get("Instances") or ()
            ]

        return self._caller.parsed_pages(
            "ec2:DescribeInstances",
            self._client.describe_instances,
            {"Filters": filters, "MaxResults": self._page_size},
            parse,
            retried=retried,
        )

    def run(self, request: Mapping[str, Any]) -> Instance:
        """One RunInstances request, not retried here: the launch loop owns its retries."""
        response = self._client.run_instances(**request)
        return parse_instance(response["Instances"][0], self._region)

    def start(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        result: dict[str, InstanceState] = {}
        for batch in chunked(unique(instance_ids), STATE_CHANGE_BATCH):
            response = self._caller.call(
                "ec2:StartInstances", functools.partial(self._client.start_instances, InstanceIds=batch)
            )
            result.update(_state_changes(response.get("StartingInstances") or ()))
        return result

    def stop(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        result: dict[str, InstanceState] = {}
        for batch in chunked(unique(instance_ids), STATE_CHANGE_BATCH):
            response = self._caller.call(
                "ec2:StopInstances", functools.partial(self._client.stop_instances, InstanceIds=batch)
            )
            result.update(_state_changes(response.get("StoppingInstances") or ()))
        return result

    def terminate(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        result: dict[str, InstanceState] = {}
        for batch in chunked(unique(instance_ids), STATE_CHANGE_BATCH):
            response = self._caller.call(
                "ec2:TerminateInstances",
                functools.partial(self._client.terminate_instances, InstanceIds=batch),
            )
            result.update(_state_changes(response.get("TerminatingInstances") or ()))
        return result

    def create_tags(self, instance_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        if not tags:
            return
        validate_tags(tags)
        tag_list: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in tags.items()]
        for batch in chunked(unique(instance_ids), STATE_CHANGE_BATCH):
            self._caller.call(
                "ec2:CreateTags", functools.partial(self._client.create_tags, Resources=batch, Tags=tag_list)
            )

    def delete_tags(self, instance_ids: Sequence[str], keys: Sequence[str]) -> None:
        key_list: list[TagTypeDef] = [{"Key": k} for k in dict.fromkeys(keys) if k]
        if not key_list:
            return
        for batch in chunked(unique(instance_ids), STATE_CHANGE_BATCH):
            self._caller.call(
                "ec2:DeleteTags", functools.partial(self._client.delete_tags, Resources=batch, Tags=key_list)
            )


def _state_changes(changes: Iterable[Mapping[str, Any]]) -> dict[str, InstanceState]:
    return {
        str(change["InstanceId"]): normalise_state((change.get("CurrentState") or {}).get("Name"))
        for change in changes
    }
