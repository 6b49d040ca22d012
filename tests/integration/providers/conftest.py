"""Fixtures for the AWS provider against a moto server over HTTP (see tests/support/moto.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import pytest

from providers.aws.clients import TRIMMED_MODELS, TrimmedModelLoader
from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.retry import RetryPolicy
from tests.support.moto import (
    DEFAULT_REGION,
    FAKE_CREDENTIALS,
    ApiCallCounter,
    FaultInjector,
    MotoServer,
)

# Tiny waits keep retries fast; the bounds are the real ones the policy enforces.
FAST_RETRY = RetryPolicy(
    max_attempts=5, max_total_seconds=10.0, base_wait_seconds=0.001, max_wait_seconds=0.004
)


# The models the provider's own session reads (EC2 cut to the operations it sends), so every test here also
# proves `EC2_OPERATIONS` complete. One loader for the run: each model is parsed and cut once.
_PROVIDER_LOADER = TrimmedModelLoader(TRIMMED_MODELS)


@pytest.fixture
def calls() -> ApiCallCounter:
    return ApiCallCounter()


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector(seed=20260415)


@pytest.fixture
def session(aws: MotoServer, calls: ApiCallCounter, faults: FaultInjector) -> boto3.Session:
    """The session the provider under test uses: every request it sends is counted and may be faulted."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _PROVIDER_LOADER)
    created = boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=DEFAULT_REGION,
        botocore_session=core,
    )
    # boto3 appends its resource-model directory on every session; keep the shared list from growing.
    _PROVIDER_LOADER.search_paths[:] = list(dict.fromkeys(_PROVIDER_LOADER.search_paths))
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
