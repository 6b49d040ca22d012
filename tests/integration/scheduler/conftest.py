"""Scheduler jobs driven by a moved clock against moto + the Slack stand-in (no sleeping)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

from bot.scheduler.runtime import SchedulerRuntime
from bot.slack.standin import SlackStandIn
from storage.models import TrainingJob
from tests.support.harness import Bot, running_bot
from tests.support.moto import ACCOUNT_ID, DEFAULT_REGION, MotoServer, put_metric_points, run_instances
from tests.support.slack import BOB, FLEET

TEAM = FLEET.id


BotFactory = Callable[..., AbstractContextManager[Bot]]


@pytest.fixture
def make_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> BotFactory:
    def make(**env: str) -> AbstractContextManager[Bot]:
        defaults = {"RUNCTL_TEAM_CHANNEL": TEAM, "RUNCTL_BREAKER_MAX_SHARE": "1.0"}
        return running_bot(tmp_path, standin, aws, monkeypatch, **{**defaults, **env})

    return make


def scheduler_for(bot: Bot, holder: str = "proc-a") -> SchedulerRuntime:
    runtime = SchedulerRuntime(
        bot.application.services,
        bot.settings,
        bot.application.engine,
        holder=holder,
        scheduled=bot.application.scheduled,
    )
    assert runtime.renew_lease()
    return runtime


def move_to(bot: Bot, when: datetime) -> None:
    """Move the bot's clock forward to `when` (the cloud keeps real time: machines look older)."""
    delta = when - bot.clock.now()
    assert delta > timedelta(), "tests only move the clock forward"
    bot.clock.advance(delta)


def launch(
    bot: Bot, *, owner: str = BOB.id, itype: str = "g5.xlarge", extra: dict[str, str] | None = None
) -> str:
    tags = {"runctl:managed": "true", "runctl:owner": owner, "runctl:project": "llm", **(extra or {})}
    return run_instances(bot.aws.client("ec2"), 1, tags=tags, instance_type=itype)[0]


def launch_spot(bot: Bot, owner: str = BOB.id) -> str:
    """A managed spot g5.xlarge, tagged at launch."""
    tags = [{"Key": "runctl:managed", "Value": "true"}, {"Key": "runctl:owner", "Value": owner}]
    return str(
        bot.aws.client("ec2").run_instances(
            ImageId="ami-0d27e0fb3bac4d724",
            MinCount=1,
            MaxCount=1,
            InstanceType="g5.xlarge",
            InstanceMarketOptions={"MarketType": "spot"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
    )


def reclaim_in_moto(
    bot: Bot, instance_id: str, how: str, code: str, *, transition_reason: str | None = None
) -> None:
    """Stop or terminate in moto, then give the machine the state reason EC2 reports for a spot reclaim
    (and, when given, the transition reason EC2 dates the change in).

    moto has no spot market to reclaim from, and says "Client.UserInitiatedShutdown" for every stop; its
    server runs in this process, so the reasons are set on moto's own record and DescribeInstances returns
    them.
    """
    ec2 = bot.aws.client("ec2")
    (ec2.terminate_instances if how == "terminate" else ec2.stop_instances)(InstanceIds=[instance_id])
    machine = ec2_backends[ACCOUNT_ID][DEFAULT_REGION].get_instance(instance_id)
    machine.state_reason = StateReason(f"{code}: Spot instance {how}", code)
    if transition_reason is not None:
        machine._reason = transition_reason


def running_job(bot: Bot, instance_id: str, job_id: str = "job-0123abcd") -> None:
    """A training job of Bob's recorded as running on `instance_id`."""
    bot.repos.jobs.create(
        TrainingJob(
            id=job_id,
            instance_id=instance_id,
            owner=BOB.id,
            status="running",
            code_uri="s3://b/c.tar.gz",
            entry="train.py",
            started_at=bot.clock.now(),
        )
    )


def cpu(bot: Bot, instance_id: str, value: float, *, minutes: int = 65) -> None:
    """Datapoints every 5 minutes over the last `minutes` of the bot's (moved) clock."""
    now = bot.clock.now()
    points = [
        (instance_id, now - timedelta(minutes=m) + timedelta(seconds=20), value) for m in range(5, minutes, 5)
    ]
    put_metric_points(bot.aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", points)


def state_of(bot: Bot, instance_id: str) -> str:
    reservations = bot.aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


def texts(messages: list[Any]) -> str:
    return "\n".join(str(m.text) + str(getattr(m, "blocks", "")) for m in messages)
