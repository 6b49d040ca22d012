"""Suite-wide rules: no real credentials leak in, and postgres-marked tests skip with a clear reason."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.databases import skip_unless_postgres
from tests.support.moto import MotoServer, apply_aws_env
from tests.support.slack import running_standin

_LEAKY = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "DATABASE_URL",
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_unless_postgres(item)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see a developer's real tokens or AWS profile, nor stray RUNCTL_ settings."""
    for name in list(os.environ):
        if name in _LEAKY or (name.startswith("RUNCTL_") and name != "RUNCTL_TEST_POSTGRES_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


# --- shared fixtures: one moto server for the run (each test that takes `aws` gets it empty) -------


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
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None) as s:
        yield s
