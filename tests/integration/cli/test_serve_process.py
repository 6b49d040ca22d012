"""`runctl-bot serve` as a real process: starts, answers, verifies signatures, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import deliver, slash_command_request
from tests.integration.cli.conftest import REPO, base_env, moto_env, run_cli
from tests.support.moto import MotoServer
from tests.support.slack import BOB, FLEET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                return dict(json.loads(response.read()))
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise AssertionError("serve did not answer /healthz in time")


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "x"})
    result = run_cli(["serve"], env)
    assert result.returncode == 2
    assert "run `runctl-bot migrate` first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_answers_signed_help_refuses_forged_and_stops_on_sigterm(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> None:
    port = _free_port()
    env = base_env(
        tmp_path,
        {
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": standin.signing_secret,
            "RUNCTL_SLACK_API_URL": standin.api_url,
            "RUNCTL_PORT": str(port),
            "RUNCTL_HOST": "127.0.0.1",
            "RUNCTL_USERS": BOB.id,
            **moto_env(aws),
        },
    )
    assert run_cli(["migrate"], env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_healthy(port, proc) == {"status": "ok"}
        url = f"http://127.0.0.1:{port}/slack/events"

        signed = slash_command_request(standin, command="/runctl", text="help", user=BOB.id, channel=FLEET.id)
        answer = deliver(url, signed.body, signed.headers)
        assert answer.status == 200
        assert "/runctl" in answer.text and "create" in answer.text

        forged = dict(signed.headers)
        forged["X-Slack-Signature"] = "v0=" + "0" * 64
        assert deliver(url, signed.body, forged).status == 401

        stale = slash_command_request(
            standin,
            command="/runctl",
            text="help",
            user=BOB.id,
            channel=FLEET.id,
            timestamp=int(time.time()) - 301,
        )
        assert deliver(url, stale.body, stale.headers).status == 401

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            ready = json.loads(response.read())
        assert ready == {"status": "ready", "database": "ok", "slack": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        # the help, the forged and the stale request
        assert "runctl_slack_request_seconds_count 3.0" in metrics
        assert "runctl_provider_calls_total" in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        _, err = proc.communicate(timeout=5)
        assert "stopped cleanly" in err
        assert standin.bot_token not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
