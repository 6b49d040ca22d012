"""Services against moto and the stand-in, driven directly (the Slack layer is not in the way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.harness import Bot, running_bot
from tests.support.moto import MotoServer, apply_aws_env
from tests.support.slack import running_standin


@pytest.fixture
def bot(tmp_path: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bot]:
    moto_server.reset()
    apply_aws_env(monkeypatch, moto_server.endpoint_url)
    standin: SlackStandIn
    with (
        running_standin(rate_limit_per_channel=None) as standin,
        running_bot(tmp_path, standin, moto_server, monkeypatch) as b,
    ):
        yield b
