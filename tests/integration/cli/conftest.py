"""The `runctl-bot` command as a real process against a moto server and the Slack stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.moto import MotoServer, aws_env

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
