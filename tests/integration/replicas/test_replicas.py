"""Three real `serve` processes on one PostgreSQL: any serves Slack, one runs the jobs, failover works."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.slack.standin.delivery import deliver, slash_command_request
from storage.engine import make_engine
from tests.integration.cli.conftest import REPO, base_env, moto_env
from tests.support.databases import require_postgres, temporary_postgres_database
from tests.support.moto import MotoServer
from tests.support.slack import BOB, FLEET, running_standin

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_three_replicas_share_the_work(tmp_path: Path, moto_server: MotoServer) -> None:
    admin = require_postgres()
    moto_server.reset()
    with running_standin(rate_limit_per_channel=None) as standin, temporary_postgres_database(admin) as url:
        engine = make_engine(url)
        ports = [_port() for _ in range(3)]
        env_common = base_env(
            tmp_path,
            {
                "DATABASE_URL": url,
                "SLACK_BOT_TOKEN": standin.bot_token,
                "SLACK_SIGNING_SECRET": standin.signing_secret,
                "RUNCTL_SLACK_API_URL": standin.api_url,
                "RUNCTL_USERS": BOB.id,
                "RUNCTL_RECONCILE_INTERVAL": "2s",
                "RUNCTL_SCHEDULER_LEASE_TTL": "3s",
                "RUNCTL_APPROVAL_COST_PER_HOUR": "100",
                **moto_env(moto_server),
            },
        )
        procs: list[subprocess.Popen[str]] = []
        try:
            for port in ports:
                env = {**env_common, "RUNCTL_PORT": str(port)}
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bot", "serve", "--role", "all"],
                        env=env,
                        cwd=REPO,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            for port in ports:
                _wait(lambda p=port: _healthy(p), 30, f"replica on {port}")

            # Any replica serves commands; one delivery retried to the others has one outcome.
            request = slash_command_request(
                standin, command="/runctl", text="create t3.large --project x", user=BOB.id, channel=FLEET.id
            )
            for number, port in enumerate(ports):
                url_events = f"http://127.0.0.1:{port}/slack/events"
                response = deliver(url_events, request.body, request.headers, retry_num=number or None)
                assert response.status == 200
            ec2 = moto_server.client("ec2")

            def instances() -> list[str]:
                return [
                    i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                ]

            _wait(lambda: len(instances()) == 1, 20, "the launch")
            time.sleep(1.0)
            assert len(instances()) == 1

            # One lease holder; every job run recorded so far belongs to it, once per slot.
            def holder() -> str | None:
                with engine.connect() as c:
                    return c.execute(
                        text("SELECT holder FROM scheduler_leases WHERE expires_at > now()")
                    ).scalar()

            _wait(lambda: holder() is not None, 10, "a lease holder")
            first = holder()
            assert first is not None
            _wait(lambda: _runs(engine, "reconcile") >= 3, 20, "three reconcile ticks")
            with engine.connect() as c:
                holders = {row[0] for row in c.execute(text("SELECT DISTINCT holder FROM job_runs"))}
            assert holders == {first}

            # Lose the holder's node: its work process (where the scheduler runs) and the replica that
            # spawned it die at once; another replica takes the jobs within the lease TTL.
            pid = int(first.split(":")[1])
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            victim = next(p for p in procs if p.pid == parent)
            victim.send_signal(signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
            victim.wait(10)
            _wait(lambda: holder() not in (None, first), 10, "a new lease holder")
            second = holder()
            before = _runs(engine, "reconcile", second)
            _wait(lambda: _runs(engine, "reconcile", second) > before, 10, "reconcile on the new holder")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            engine.dispose()
        survivors = [p for p in procs if p.returncode == 0]
        assert len(survivors) == 2  # the two live replicas stopped cleanly on SIGTERM


def _runs(engine: object, job: str, holder: str | None = None) -> int:
    query = "SELECT count(*) FROM job_runs WHERE job_name = :job" + (
        " AND holder = :holder" if holder else ""
    )
    with engine.connect() as c:  # type: ignore[attr-defined]
        return int(c.execute(text(query), {"job": job, "holder": holder}).scalar() or 0)
