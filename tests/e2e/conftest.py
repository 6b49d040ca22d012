"""End-to-end: signed HTTP into the running app → services → moto server + Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.harness import Bot, running_bot
from tests.support.moto import MotoServer, apply_aws_env
from tests.support.slack import running_standin


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    moto_server.reset()
    apply_aws_env(monkeypatch, moto_server.endpoint_url)
    return moto_server


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None) as s:
        yield s


@pytest.fixture
def bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    with running_bot(tmp_path, standin, aws, monkeypatch) as b:
        yield b
