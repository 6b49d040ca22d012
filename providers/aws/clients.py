"""One place that builds boto3 clients: region, profile, endpoint, timeouts and the no-retry botocore config.

Clients are created lazily (the first call that needs one) and shared: boto3 clients are thread-safe, sessions
are not, so creation happens under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from providers.aws.config import AwsConfig

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_ssm import SSMClient

USER_AGENT_EXTRA = "runctl-bot"


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
            self._session = boto3.Session(profile_name=self._config.profile, region_name=self._config.region)
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
