"""One place that builds boto3 clients: region, profile, endpoint, timeouts and the no-retry botocore config.

Clients are created lazily (the first call that needs one) and shared: boto3 clients are thread-safe, sessions
are not, so creation happens under a lock.

The session the provider makes for itself reads the EC2 service model cut down to the operations the provider
sends (`EC2_OPERATIONS`). botocore otherwise keeps EC2's whole model, ~750 operations parsed into ~280,000
objects and ~21 MB, for as long as the client lives, and every full garbage collection walks it. A session
handed in by the caller (tests, tools) is used as it is: its loader may serve other clients too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader

from providers.aws.config import AwsConfig

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_ssm import SSMClient

USER_AGENT_EXTRA = "runctl-bot"

#: Every EC2 operation the provider sends (providers/aws/ec2.py, ami.py, pricing.py). A call outside this
#: list fails on the provider's own client with "has no attribute": add the operation here with the code.
EC2_OPERATIONS = frozenset(
    {
        "CreateTags",
        "DeleteTags",
        "DescribeImages",
        "DescribeInstances",
        "DescribeSpotPriceHistory",
        "RunInstances",
        "StartInstances",
        "StopInstances",
        "TerminateInstances",
    }
)
TRIMMED_MODELS: Mapping[str, frozenset[str]] = {"ec2": EC2_OPERATIONS}


def trim_service_model(model: dict[str, Any], operations: Collection[str]) -> None:
    """Cut a parsed `service-2` model, in place, to `operations` and the shapes they reach."""
    missing = sorted(set(operations) - set(model["operations"]))
    if missing:
        raise ValueError(f"the {model['metadata'].get('serviceId')} model has no {', '.join(missing)}")
    kept_operations = {name: model["operations"][name] for name in operations}
    shapes: dict[str, Any] = model["shapes"]
    reached: set[str] = set()
    pending = [
        ref["shape"]
        for operation in kept_operations.values()
        for ref in (operation.get("input"), operation.get("output"), *operation.get("errors", ()))
        if ref
    ]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        pending.extend(member["shape"] for member in shape.get("members", {}).values())
        pending.extend(shape[key]["shape"] for key in ("member", "key", "value") if key in shape)
    model["operations"] = kept_operations
    model["shapes"] = {name: shapes[name] for name in shapes if name in reached}


class TrimmedModelLoader(Loader):
    """botocore's data loader, handing out the `service-2` models in `trimmed` cut to their operations.

    The loader caches what it loads, so each model is read and cut once per session; the full model is
    garbage as soon as it has been cut.
    """

    def __init__(self, trimmed: Mapping[str, Collection[str]], data_path: str | None = None) -> None:
        # As `botocore.loaders.create_loader` reads AWS_DATA_PATH (the `data_path` setting).
        extra = [os.path.expanduser(os.path.expandvars(p)) for p in (data_path or "").split(os.pathsep) if p]
        super().__init__(extra_search_paths=extra or None)
        self._trimmed = trimmed

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        model = super().load_service_model(service_name, type_name, api_version)
        operations = self._trimmed.get(service_name)
        if operations is not None and type_name == "service-2":
            trim_service_model(model, operations)
        return model


def trimmed_session(profile_name: str | None, region_name: str) -> boto3.Session:
    """A boto3 session like `boto3.Session(profile_name, region_name)`, whose models are `TRIMMED_MODELS`."""
    core = botocore.session.get_session()
    core.lazy_register_component(
        "data_loader", lambda: TrimmedModelLoader(TRIMMED_MODELS, core.get_config_variable("data_path"))
    )
    return boto3.Session(profile_name=profile_name, region_name=region_name, botocore_session=core)


def botocore_config(config: AwsConfig, *, region: str | None = None) -> Config:
    """`total_max_attempts=1`: botocore sends each request once and `providers.retry` owns every retry.

    (`{"max_attempts": 1}` would be one *retry* in botocore's client config, so the layers would multiply.)
    """
    return Config(
        region_name=region or config.region,
        connect_timeout=config.connect_timeout_seconds,
        read_timeout=config.read_timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent_extra=USER_AGENT_EXTRA,
    )


class AwsClients:
    """Lazily built clients for the services the provider uses."""

    def __init__(self, config: AwsConfig, *, session: boto3.Session | None = None) -> None:
        self._config = config
        self._session = session
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.Session:
        with self._lock:
            return self._get_session()

    def _get_session(self) -> boto3.Session:
        if self._session is None:
            self._session = trimmed_session(self._config.profile, self._config.region)
        return self._session

    def client(self, service: str, *, region: str | None = None) -> Any:
        """A client for `service`; `endpoint_url` from config wins, else botocore honours AWS_ENDPOINT_URL."""
        region_name = region or self._config.region
        key = (service, region_name)
        with self._lock:
            existing = self._clients.get(key)
            if existing is not None:
                return existing
            make_client: Callable[..., Any] = self._get_session().client  # service is a runtime string
            created = make_client(
                service,
                region_name=region_name,
                endpoint_url=self._config.endpoint_url or None,
                config=botocore_config(self._config, region=region_name),
            )
            self._clients[key] = created
            return created

    @property
    def ec2(self) -> EC2Client:
        client: EC2Client = self.client("ec2")
        return client

    @property
    def ssm(self) -> SSMClient:
        client: SSMClient = self.client("ssm")
        return client

    @property
    def cloudwatch(self) -> CloudWatchClient:
        client: CloudWatchClient = self.client("cloudwatch")
        return client

    @property
    def pricing(self) -> PricingClient:
        client: PricingClient = self.client("pricing", region=self._config.pricing_region)
        return client
