"""The `runctl-bot` command as a real process against a moto server and the Slack stand-in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.moto import MotoServer, aws_env
from tests.support.slack import BOB, FLEET

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:
    moto_server.reset()
    return moto_server


def base_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no developer tokens or profiles, only what the test gives."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "TZ")}
    env = {
        **keep,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNCTL_LOG_FORMAT": "text",
        "RUNCTL_PRICING_API": "false",  # moto has no Pricing API; the shipped table answers
    }
    env.update(extra or {})
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def moto_env(server: MotoServer) -> dict[str, str]:
    return aws_env(server.endpoint_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    tmp_path: Path,
    standin: SlackStandIn,
    aws: MotoServer,
    *args: str,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`runctl-bot serve [args]` as a real process on a free port, against the stand-in and moto, on a
    migrated SQLite database at `tmp_path / "bot.db"`; killed at the end if the test left it running."""
    port = free_port()
    env = base_env(
        tmp_path,
        {
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": standin.signing_secret,
            "RUNCTL_SLACK_API_URL": standin.api_url,
            "RUNCTL_PORT": str(port),
            "RUNCTL_HOST": "127.0.0.1",
            "RUNCTL_USERS": BOB.id,
            "RUNCTL_TEAM_CHANNEL": FLEET.id,
            **moto_env(aws),
            **(extra_env or {}),
        },
    )
    assert run_cli(["migrate"], env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
