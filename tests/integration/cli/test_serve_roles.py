"""`runctl-bot serve --role web` and `--role scheduler` as real processes on SQLite (docs/deploy.md).

The web role answers Slack and never runs the scheduler (not in itself, not in its work process); the
scheduler role takes the lease and runs the jobs, and serves only health, readiness and metrics. Both
start the scheduler (or not) before they answer `/healthz` and `/readyz`, so the lease table read after
that shows what each one does.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import deliver, slash_command_request
from tests.integration.cli.conftest import serving
from tests.support.moto import MotoServer, run_instances
from tests.support.slack import BOB, FLEET

T = TypeVar("T")


def _until(probe: Callable[[], T | None], what: str, proc: subprocess.Popen[str], timeout: float = 30) -> T:
    """Poll a real process (it keeps real time: no clock to move) until `probe` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early while waiting for {what}: {proc.communicate()[1]}")
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _answers(port: int, path: str, status: int = 200) -> Callable[[], Any]:
    def probe() -> Any:
        try:
            got, body = _get(port, path)
        except (urllib.error.URLError, ConnectionError):
            return None
        return json.loads(body) if got == status else None

    return probe


def _rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    """Read the bot's database from outside, as an operator would (the tables may not exist yet)."""
    with closing(sqlite3.connect(db, timeout=10)) as connection:
        try:
            return list(connection.execute(query))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


@contextmanager
def _serving(
    role: str, tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    # Short enough that a scheduler, had it started, shows within the test.
    fast = {"RUNCTL_RECONCILE_INTERVAL": "1s", "RUNCTL_SCHEDULER_LEASE_TTL": "3s"}
    with serving(tmp_path, standin, aws, "--role", role, extra_env=fast) as (proc, port):
        yield proc, port, tmp_path / "bot.db"


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    _, err = proc.communicate(timeout=5)
    assert "stopped cleanly" in err
    return err


def test_role_web_answers_slack_and_never_takes_the_scheduler_lease(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> None:
    (machine,) = run_instances(aws.client("ec2"), 1, tags={"runctl:managed": "true", "runctl:owner": BOB.id})
    with _serving("web", tmp_path, standin, aws) as (proc, port, db):
        assert _until(_answers(port, "/healthz"), "/healthz", proc) == {"status": "ok"}
        ready = _until(_answers(port, "/readyz"), "/readyz with the work process", proc)
        assert ready == {"status": "ready", "database": "ok", "slack": "ok", "work_process": "ok"}
        url = f"http://127.0.0.1:{port}/slack/events"

        signed = slash_command_request(standin, command="/runctl", text="help", user=BOB.id, channel=FLEET.id)
        answer = deliver(url, signed.body, signed.headers)
        assert answer.status == 200 and "/runctl" in answer.text and "create" in answer.text
        forged = {**signed.headers, "X-Slack-Signature": "v0=" + "0" * 64}
        assert deliver(url, signed.body, forged).status == 401

        # Work after the ack runs in the web role's work process: the listing comes from moto.
        listing = slash_command_request(
            standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id
        )
        acked = deliver(url, listing.body, listing.headers)
        assert acked.status == 200 and acked.text == ""
        posts = standin.wait_for(
            lambda: standin.response_posts(listing.response_url_id), timeout=20, description="list answer"
        )
        assert machine in json.dumps(posts[0].payload)

        # Both processes started long ago (the child reported ready, the parent answered): no lease,
        # no job run, no stored APScheduler job, in either of them.
        assert _rows(db, "SELECT name, holder FROM scheduler_leases") == []
        assert _rows(db, "SELECT job_name FROM job_runs") == []
        assert _rows(db, "SELECT id FROM apscheduler_jobs") == []
        _, metrics = _get(port, "/metrics")
        assert "runctl_scheduler_job_seconds_count{" not in metrics

        err = _stop(proc)
        assert "role web" in err
        assert "scheduler lease taken" not in err


def test_role_scheduler_takes_the_lease_runs_jobs_and_serves_no_slack(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer
) -> None:
    (machine,) = run_instances(aws.client("ec2"), 1, tags={"runctl:managed": "true", "runctl:owner": BOB.id})
    with _serving("scheduler", tmp_path, standin, aws) as (proc, port, db):
        assert _until(_answers(port, "/healthz"), "/healthz", proc) == {"status": "ok"}
        # Ready means the database and Slack (it posts notices); there is no work process to wait for.
        assert _until(_answers(port, "/readyz"), "/readyz", proc) == {
            "status": "ready",
            "database": "ok",
            "slack": "ok",
        }

        # The lease is this process's (holder "<host>:<pid>:<random>"), and it runs the jobs under it.
        ((holder,),) = _rows(db, "SELECT holder FROM scheduler_leases WHERE name = 'scheduler'")
        assert holder.split(":")[1] == str(proc.pid)
        _until(
            lambda: _rows(db, f"SELECT id FROM resources WHERE id = '{machine}'") or None, "reconcile", proc
        )
        _until(
            lambda: len(_rows(db, "SELECT slot FROM job_runs WHERE job_name = 'reconcile'")) >= 2 or None,
            "a second reconcile tick",
            proc,
        )
        assert {h for (h,) in _rows(db, "SELECT DISTINCT holder FROM job_runs")} == {holder}
        stored = {name for (name,) in _rows(db, "SELECT id FROM apscheduler_jobs")}
        assert {"reconcile", "idle", "alerts", "reports"} <= stored
        _, metrics = _get(port, "/metrics")
        assert 'runctl_scheduler_job_seconds_count{job="reconcile",outcome="ok"}' in metrics

        # No Slack endpoint: a correctly signed command is not answered, and nothing reaches Slack for it.
        signed = slash_command_request(standin, command="/runctl", text="help", user=BOB.id, channel=FLEET.id)
        answer = deliver(f"http://127.0.0.1:{port}/slack/events", signed.body, signed.headers)
        assert answer.status == 404
        assert json.loads(answer.text) == {"error": "no route for /slack/events"}
        assert standin.response_posts(signed.response_url_id) == []

        err = _stop(proc)
        assert "role scheduler" in err and "scheduler lease taken" in err
        assert _rows(db, "SELECT holder FROM scheduler_leases") == []  # released for the next one
