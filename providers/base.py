"""The `Provider` protocol and the frozen values it returns. Pure: no boto3 here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from providers import tags as tagschema


class InstanceState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


_EC2_STATES = {
    "pending": InstanceState.STARTING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "shutting-down": InstanceState.TERMINATING,
    "terminated": InstanceState.TERMINATED,
}


def normalise_state(raw: str | None) -> InstanceState:
    """EC2 state name -> our state; stopping stays distinct from stopped (it still bills)."""
    return _EC2_STATES.get((raw or "").strip().lower(), InstanceState.UNKNOWN)


class Lifecycle(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


# State-reason codes EC2 uses when it reclaims a spot instance.
SPOT_INTERRUPTION_CODES = frozenset(
    {
        "Server.SpotInstanceTermination",
        "Server.SpotInstanceShutdown",
        "Server.SpotInstanceStop",
    }
)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    instance_type: str
    state: InstanceState
    lifecycle: Lifecycle
    launch_time: datetime  # timezone-aware UTC, from the cloud
    tags: Mapping[str, str] = field(default_factory=dict)
    region: str = ""
    availability_zone: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    state_reason_code: str | None = None
    state_reason_message: str | None = None
    # When the cloud says the current state began, where it says so (EC2 dates it in the transition reason).
    state_changed_at: datetime | None = None
    provider: str = "aws"

    @property
    def owner(self) -> str | None:
        return tagschema.owner_of(self.tags)

    @property
    def project(self) -> str | None:
        return self.tags.get(tagschema.PROJECT) or None

    @property
    def managed(self) -> bool:
        return tagschema.is_managed(self.tags)

    @property
    def name(self) -> str | None:
        return self.tags.get(tagschema.NAME) or None

    @property
    def operation_id(self) -> str | None:
        return self.tags.get(tagschema.REQUEST) or None

    @property
    def spot_interrupted(self) -> bool:
        return self.lifecycle is Lifecycle.SPOT and self.state_reason_code in SPOT_INTERRUPTION_CODES


@dataclass(frozen=True)
class LaunchSpec:
    operation_id: str  # also the RunInstances ClientToken and the runctl:request tag
    instance_type: str
    owner: str  # Slack user id of the requester
    project: str
    owner_name: str = ""  # human-readable, for the Name tag
    spot: bool = False
    spot_max_price: float | None = None
    allow_on_demand_fallback: bool = False
    ami_id: str | None = None
    root_volume_gb: int | None = None
    iam_instance_profile: str | None = None
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchResult:
    instance: Instance
    fell_back_to_on_demand: bool = False
    reused_existing: bool = False  # a retried launch found the machine the first attempt made
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UtilisationSeries:
    instance_id: str
    metric: str  # "cpu" or "gpu"
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]
    expected_datapoints: int

    @property
    def received_datapoints(self) -> int:
        return len(self.values)


class CommandStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    instance_id: str
    status: CommandStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""


class PriceSource(StrEnum):
    PRICING_API = "pricing-api"
    CACHE = "cache"
    FALLBACK = "fallback"
    SPOT_HISTORY = "spot-history"


@dataclass(frozen=True)
class Price:
    instance_type: str
    region: str
    lifecycle: Lifecycle
    hourly_usd: float
    source: PriceSource
    as_of: datetime
    availability_zone: str | None = None


class PriceCache(Protocol):
    """Where on-demand prices are kept between Pricing API calls (the database, in the bot)."""

    def get_price(self, instance_type: str, region: str, lifecycle: Lifecycle) -> Price | None: ...

    def put_price(self, price: Price) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """What the services need from a cloud. Every method batches: nothing is called per instance."""

    name: str
    region: str

    def launch(self, spec: LaunchSpec) -> LaunchResult: ...

    def list_managed(self) -> list[Instance]: ...

    def list_unmanaged_running(self) -> list[Instance]: ...

    def describe(self, instance_id: str) -> Instance | None: ...

    def describe_many(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        """Fresh state of several machines in as few calls as the cloud allows; unknown ids are left out."""
        ...

    def find_by_operation(self, operation_id: str) -> Instance | None: ...

    def start(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]: ...

    def stop(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]: ...

    def terminate(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]: ...

    def set_tags(self, instance_ids: Sequence[str], tags: Mapping[str, str]) -> None: ...

    def remove_tags(self, instance_ids: Sequence[str], keys: Sequence[str]) -> None: ...

    def utilisation(
        self,
        instance_ids: Sequence[str],
        *,
        end: datetime,
        window: timedelta,
        period_seconds: int = 300,
        instance_types: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, UtilisationSeries]]: ...

    def run_command(self, instance_ids: Sequence[str], script: str, *, comment: str = "") -> list[str]: ...

    def command_results(self, command_id: str, instance_ids: Sequence[str]) -> list[CommandResult]: ...

    def on_demand_price(self, instance_type: str) -> Price: ...

    def spot_prices(self, instance_types: Sequence[str]) -> list[Price]: ...
