"""Fixtures for the AWS provider against a moto server over HTTP (see tests/support/moto.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.retry import RetryPolicy
from tests.support.moto import ApiCallCounter, FaultInjector, MotoServer, apply_aws_env

# Tiny waits keep retries fast; the bounds are the real ones the policy enforces.
FAST_RETRY = RetryPolicy(
    max_attempts=5, max_total_seconds=10.0, base_wait_seconds=0.001, max_wait_seconds=0.004
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """An empty moto cloud; the environment points every boto3 client at it with fake credentials."""
    moto_server.reset()
    apply_aws_env(monkeypatch, moto_server.endpoint_url)
    return moto_server


@pytest.fixture
def calls() -> ApiCallCounter:
    return ApiCallCounter()


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector(seed=20260415)


@pytest.fixture
def session(aws: MotoServer, calls: ApiCallCounter, faults: FaultInjector) -> boto3.Session:
    """The session the provider under test uses: every request it sends is counted and may be faulted."""
    created = aws.session()
    calls.attach(created)
    faults.attach(created)
    return created


@pytest.fixture
def ec2(aws: MotoServer) -> Any:
    """A separate, uncounted client for seeding and for reading back what the provider did."""
    return aws.client("ec2")


@pytest.fixture
def make_provider(session: boto3.Session) -> Callable[..., AwsProvider]:
    def build(*, retry: RetryPolicy = FAST_RETRY, **overrides: Any) -> AwsProvider:
        price_cache = overrides.pop("price_cache", None)
        clock = overrides.pop("clock", None)
        config = AwsConfig(retry=retry, **overrides)
        return AwsProvider(config, price_cache=price_cache, session=session, clock=clock)

    return build


@pytest.fixture
def provider(make_provider: Callable[..., AwsProvider]) -> AwsProvider:
    return make_provider()
