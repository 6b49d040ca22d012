"""`runctl-bot serve` as a real process: starts, answers, verifies signatures, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import deliver, slash_command_request
from tests.integration.cli.conftest import base_env, run_cli, serving
from tests.support.moto import MotoServer
from tests.support.slack import BOB, FLEET


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


def _wait_ready(port: int, timeout: float = 30.0) -> dict[str, str]:
    """`/readyz` once the work process has started (it is spawned after the web side answers)."""
    deadline = time.monotonic() + timeout
    detail: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            detail = dict(json.loads(exc.read()))
            time.sleep(0.1)
    raise AssertionError(f"serve never became ready: {detail}")


def _pending(port: int) -> float:
    """`runctl_work_pending` from `/metrics`: acked work the work process has not reported done."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("runctl_work_pending "):
                return float(line.split()[1])
    raise AssertionError("/metrics has no runctl_work_pending")


def _wait_pending(port: int, expected: float, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen = _pending(port)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _pending(port)
    assert seen == expected, f"runctl_work_pending stayed {seen}, expected {expected}"


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "x"})
    result = run_cli(["serve"], env)
    assert result.returncode == 2
    assert "run `runctl-bot migrate` first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_answers_signed_help_refuses_forged_and_stops_on_sigterm(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> None:
    with serving(tmp_path, standin, aws) as (proc, port):
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

        assert _wait_ready(port) == {"status": "ready", "database": "ok", "slack": "ok", "work_process": "ok"}

        # Work after the ack runs in the work process: the list is answered through its response_url,
        # which needs the cloud (moto) and the database from the child.
        listing = slash_command_request(
            standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id
        )
        acked = deliver(url, listing.body, listing.headers)
        assert acked.status == 200 and acked.text == ""
        posts = standin.wait_for(
            lambda: standin.response_posts(listing.response_url_id), timeout=20, description="list answer"
        )
        assert "No machines" in json.dumps(posts[0].payload) or "machines" in json.dumps(posts[0].payload)

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        # the help, the forged, the stale request and the list: timed in the web process
        assert "runctl_slack_request_seconds_count 4.0" in metrics
        # counted in the work process, merged into the one /metrics
        assert 'runctl_commands_total{outcome="ok",verb="list"} 1.0' in metrics
        assert 'runctl_commands_total{outcome="ok",verb="help"} 1.0' in metrics
        assert 'runctl_provider_calls_total{action="ec2:DescribeInstances",outcome="ok"}' in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        _, err = proc.communicate(timeout=5)
        assert "stopped cleanly" in err
        assert standin.bot_token not in err


def _work_process_pid(parent: int) -> int:
    """The spawned work process among serve's children (not multiprocessing's resource tracker)."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                return int(child)
    raise AssertionError(f"serve ({parent}) has no work process")


def test_a_crashed_work_process_is_restarted_and_the_interrupted_user_is_told(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> None:
    with serving(tmp_path, standin, aws) as (proc, port):
        _wait_healthy(port, proc)
        assert _wait_ready(port)["work_process"] == "ok"
        url = f"http://127.0.0.1:{port}/slack/events"
        first = _work_process_pid(proc.pid)
        # The work process yields the CPU to the acks (RUNCTL_WORK_PROCESS_NICE, default 10).
        assert os.getpriority(os.PRIO_PROCESS, first) - os.getpriority(os.PRIO_PROCESS, proc.pid) == 10

        # A create whose work hangs inside Slack (the stand-in holds its first post for a minute): the
        # work has started when the work process is killed.
        standin.delay_next("chat.postMessage", 60)
        create = slash_command_request(
            standin, command="/runctl", text="create t3.micro", user=BOB.id, channel=FLEET.id
        )
        assert deliver(url, create.body, create.headers).status == 200
        standin.wait_for(lambda: standin.calls("chat.postMessage"), timeout=20, description="create's post")
        assert _pending(port) == 1.0  # acked, started, not done: what an operator's alert would watch
        os.kill(first, signal.SIGKILL)

        told = standin.wait_for(
            lambda: [
                p
                for p in standin.response_posts(create.response_url_id)
                if "restarted" in json.dumps(p.payload)
            ],
            timeout=20,
            description="the interrupted notice",
        )
        assert len(told) == 1
        assert _pending(port) == 0.0  # the interrupted create is no longer counted as waiting
        assert _wait_ready(port)["work_process"] == "ok"
        assert _work_process_pid(proc.pid) != first

        # The new work process does the next piece of work.
        listing = slash_command_request(
            standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id
        )
        assert deliver(url, listing.body, listing.headers).status == 200
        standin.wait_for(
            lambda: standin.response_posts(listing.response_url_id), timeout=20, description="list answer"
        )
        _wait_pending(port, 0.0)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        _, err = proc.communicate(timeout=5)
        assert "work process exited unexpectedly" in err
        assert "stopped cleanly" in err
