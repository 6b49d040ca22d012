"""`runctl-bot resources list` and `cleanup plan|apply` as processes against moto with seeded metrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.cli.conftest import base_env, moto_env, run_cli
from tests.support.moto import MotoServer, put_metric_points, run_instances

MANAGED = {"runctl:managed": "true", "runctl:owner": "U0BOB00002", "runctl:project": "llm"}


def _seed_cpu(cw: Any, instance_id: str, values: list[float], now: datetime) -> None:
    points = [
        (instance_id, now - timedelta(minutes=5 * (i + 1)) + timedelta(seconds=30), v)
        for i, v in enumerate(values)
    ]
    put_metric_points(cw, "AWS/EC2", "CPUUtilization", points)


def _fleet(aws: MotoServer) -> dict[str, str]:
    ec2, cw = aws.client("ec2"), aws.client("cloudwatch")
    ids = {
        "idle1": run_instances(ec2, 1, tags=MANAGED)[0],
        "idle2": run_instances(
            ec2, 1, tags={**MANAGED, "runctl:project": "vision"}, instance_type="g5.xlarge"
        )[0],
        "busy": run_instances(ec2, 1, tags=MANAGED)[0],
        "protected": run_instances(ec2, 1, tags={**MANAGED, "runctl:protected": "true"})[0],
        "kept": run_instances(ec2, 1, tags={**MANAGED, "runctl:keep-until": "never"})[0],
        "unmanaged": run_instances(ec2, 1, tags={"Name": "someone-elses"})[0],
        "partial": run_instances(ec2, 1, tags=MANAGED)[0],
        "stopped": run_instances(ec2, 1, tags=MANAGED)[0],
        "cli_user": run_instances(ec2, 1, tags={"CreatedBy": "runctl", "runctl:user": "alice"})[0],
    }
    ec2.stop_instances(InstanceIds=[ids["stopped"]])
    now = datetime.now(UTC)
    quiet = [1.0, 0.5, 2.0, 1.5, 0.7, 1.1, 0.9, 1.2, 0.8, 1.0, 1.3, 0.6]
    for name in ("idle1", "idle2", "protected", "kept", "unmanaged", "stopped", "cli_user"):
        _seed_cpu(cw, ids[name], quiet, now)
    _seed_cpu(cw, ids["busy"], [1.0, 1.0, 75.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], now)
    _seed_cpu(cw, ids["partial"], quiet[:4], now)
    return ids


def _env(tmp_path: Path, aws: MotoServer) -> dict[str, str]:
    env = base_env(tmp_path, moto_env(aws))
    assert run_cli(["migrate"], env).returncode == 0
    return env


def test_cleanup_plan_ids_is_exactly_the_idle_set(tmp_path: Path, aws: MotoServer) -> None:
    ids = _fleet(aws)
    env = _env(tmp_path, aws)
    time.sleep(1.1)  # the machines were launched "now" by moto: make them older than --min-age 1s
    result = run_cli(["cleanup", "plan", "--format", "ids", "--min-age", "1s", "--window", "60m"], env)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted([ids["idle1"], ids["idle2"], ids["cli_user"]])

    stricter = run_cli(["cleanup", "plan", "--format", "ids", "--min-age", "1s", "--cpu-threshold", "1"], env)
    assert stricter.returncode == 0, stricter.stderr
    assert stricter.stdout.split() == []  # every quiet series has a datapoint at or above 1 %

    default_age = run_cli(["cleanup", "plan", "--format", "ids"], env)
    assert default_age.stdout.split() == []  # idle rules wait until a machine is 2 h old


def test_cleanup_plan_json_carries_the_evidence(tmp_path: Path, aws: MotoServer) -> None:
    ids = _fleet(aws)
    env = _env(tmp_path, aws)
    time.sleep(1.1)
    result = run_cli(["cleanup", "plan", "--format", "json", "--min-age", "1s"], env)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    by_id = {r["id"]: r for r in plan["instances"]}
    assert by_id[ids["idle1"]]["idle"] is True
    assert by_id[ids["idle1"]]["evidence"]  # what the reminder will show
    assert by_id[ids["protected"]]["rule"] == "protected"
    assert by_id[ids["kept"]]["rule"] == "keep_until"
    assert by_id[ids["busy"]]["rule"] == "not_idle"
    assert by_id[ids["partial"]]["rule"] == "not_idle"  # partial data is not idle
    assert ids["unmanaged"] not in by_id  # rules never act on unmanaged machines
    assert ids["stopped"] not in by_id


def test_cleanup_apply_stops_only_the_idle_set(tmp_path: Path, aws: MotoServer) -> None:
    ids = _fleet(aws)
    env = _env(tmp_path, aws)
    time.sleep(1.1)
    refused = run_cli(["cleanup", "apply", "--min-age", "1s"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    env["RUNCTL_BREAKER_MAX_SHARE"] = "1.0"
    env["RUNCTL_MIN_AGE_COMMAND"] = "1s"  # apply is a command: the 5-minute minimum age applies too
    result = run_cli(["cleanup", "apply", "--yes", "--min-age", "1s"], env)
    assert result.returncode == 0, result.stderr
    ec2 = aws.client("ec2")
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert {k for k, v in ids.items() if states[v] == "stopped"} == {"idle1", "idle2", "cli_user", "stopped"}
    assert "stopped 3 of 3 idle machine(s)" in result.stdout


def test_cleanup_apply_respects_the_command_minimum_age(tmp_path: Path, aws: MotoServer) -> None:
    _fleet(aws)
    env = _env(tmp_path, aws)
    time.sleep(1.1)
    env["RUNCTL_BREAKER_MAX_SHARE"] = "1.0"
    result = run_cli(["cleanup", "apply", "--yes", "--min-age", "1s"], env)
    assert result.returncode == 0, result.stderr
    assert "stopped 0 of 3" in result.stdout
    assert "nothing younger than 5 min" in result.stdout


def test_cleanup_apply_is_held_by_the_breaker(tmp_path: Path, aws: MotoServer) -> None:
    _fleet(aws)
    env = _env(tmp_path, aws)
    time.sleep(1.1)
    env["RUNCTL_BREAKER_MAX_ACTIONS"] = "2"
    env["RUNCTL_MIN_AGE_COMMAND"] = "1s"
    result = run_cli(["cleanup", "apply", "--yes", "--min-age", "1s"], env)
    assert result.returncode == 0, result.stderr
    assert "stopped 2 of 3" in result.stdout  # up to the cap; the third is held
    assert "circuit breaker" in result.stdout


def test_resources_list_formats(tmp_path: Path, aws: MotoServer) -> None:
    ids = _fleet(aws)
    env = _env(tmp_path, aws)
    table = run_cli(["resources", "list"], env)
    assert table.returncode == 0, table.stderr
    assert ids["idle1"] in table.stdout and ids["unmanaged"] not in table.stdout
    listed = json.loads(run_cli(["resources", "list", "--all", "--format", "json"], env).stdout)
    by_id = {r["id"]: r for r in listed}
    assert by_id[ids["unmanaged"]]["managed"] is False
    assert by_id[ids["idle2"]]["type"] == "g5.xlarge"
    assert by_id[ids["idle2"]]["hourly_usd"] > 0.5  # from the shipped table: moto has no Pricing API
