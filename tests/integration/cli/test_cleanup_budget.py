"""The cleanup plan's AWS call budget, counted at the client with botocore events."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli_fleet import ConsoleNotifier
from bot.config import load_settings
from bot.services.cleanup import PlanOptions
from bot.wiring import aws_config_from, build_services
from providers.aws.provider import AwsProvider
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.repositories import Repositories
from tests.support.moto import ApiCallCounter, MotoServer, apply_aws_env, put_metric_points, run_instances


@pytest.mark.slow
def test_plan_over_600_machines_costs_one_describe_and_two_metric_calls(
    tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_aws_env(monkeypatch, aws.endpoint_url)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("RUNCTL_PRICING_API", "false")
    settings = load_settings()
    upgrade(settings.database_url)
    ec2, cw = aws.client("ec2"), aws.client("cloudwatch")
    ids = run_instances(ec2, 600, tags={"runctl:managed": "true", "runctl:owner": "U0BOB00002"})
    now = datetime.now(UTC)
    idle = set(ids[:400])
    points = [
        (iid, now - timedelta(minutes=5 * k + 2), 1.0 if iid in idle else 50.0)
        for iid in ids
        for k in range(12)
    ]
    put_metric_points(cw, "AWS/EC2", "CPUUtilization", points)

    session = aws.session()
    calls = ApiCallCounter().attach(session)
    engine = make_engine(settings.database_url)
    provider = AwsProvider(
        aws_config_from(settings), session=session, price_cache=Repositories.from_engine(engine).prices
    )
    services = build_services(settings, engine=engine, notifier=ConsoleNotifier(), provider=provider)
    time.sleep(1.1)
    calls.reset()
    plan = services.cleanup.plan(PlanOptions(min_age=timedelta(seconds=1)))
    services.shutdown()

    assert {i.instance.id for i in plan.idle} == idle
    assert plan.candidates == 600
    assert calls.count("ec2.DescribeInstances") == math.ceil(600 / 1000)
    assert calls.count("cloudwatch.GetMetricData") == math.ceil(600 * 1 / 500)
