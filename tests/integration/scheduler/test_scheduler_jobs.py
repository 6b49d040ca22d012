"""Reconcile notices, spot interruptions, reports with a chart, cost alerts, expiry, and the lease."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from bot.scheduler.runtime import SchedulerRuntime
from bot.services.operations import OpStatus
from providers.base import InstanceState, Lifecycle
from tests.integration.scheduler.conftest import (
    TEAM,
    BotFactory,
    launch,
    launch_spot,
    move_to,
    reclaim_in_moto,
    running_job,
    scheduler_for,
    texts,
)
from tests.support.harness import Bot
from tests.support.moto import run_instances
from tests.support.slack import BOB, CAROL, OPS

MONDAY = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)


def test_two_processes_on_one_database_run_each_job_once_per_tick(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        # At the start of a minute, so the real seconds these calls take never cross into the next slot.
        move_to(bot, MONDAY)
        a = scheduler_for(bot, "proc-a")
        b = scheduler_for_other(bot, "proc-b")
        assert a.leading and not b.leading
        ran = [a.run("reconcile"), b.run("reconcile"), a.run("reconcile")]
        assert ran == [True, False, False]  # b does not lead; a's second firing finds the slot taken
        assert bot.repos.job_runs.count("reconcile") == 1
        bot.clock.advance(seconds=20)
        assert a.renew_lease()  # renewed every TTL/3 by its own thread
        bot.clock.advance(seconds=40)
        assert a.renew_lease() and not b.renew_lease()
        assert a.run("reconcile") and bot.repos.job_runs.count("reconcile") == 2

        # The holder dies (stops renewing): after the TTL the other process takes over.
        assert not b.renew_lease()
        bot.clock.advance(minutes=1)  # more than the 30 s TTL, and the next reconcile slot
        assert b.renew_lease() and b.leading
        assert not a.renew_lease() and not a.leading
        assert b.run("reconcile") and not a.run("approvals")


def scheduler_for_other(bot: Bot, holder: str) -> SchedulerRuntime:
    """A second process's runtime on the same database, which (unlike `scheduler_for`) may not lead."""
    runtime = SchedulerRuntime(
        bot.application.services,
        bot.settings,
        bot.application.engine,
        holder=holder,
        scheduled=bot.application.scheduled,
    )
    runtime.renew_lease()
    return runtime


def test_reconcile_tells_the_owner_in_the_launch_thread(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_USERS=BOB.id, RUNCTL_APPROVAL_COST_PER_HOUR="100") as bot:
        response = bot.command(BOB.id, "create t3.large --project llm", channel=OPS.id)
        assert response.status == 200
        bot.wait_idle()
        (launched,) = bot.repos.resources.list_open(owner=BOB.id)
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")
        bot.aws.client("ec2").stop_instances(InstanceIds=[launched.id])
        bot.clock.advance(minutes=1)
        assert runtime.run("reconcile")
        op = bot.repos.operations.get(launched.operation_id or "")
        assert op is not None and op.slack_ts
        thread = bot.standin.messages(OPS.id, thread_ts=op.slack_ts)
        assert any(f"`{launched.id}` (t3.large) has stopped" in m.text for m in thread)
        bot.clock.advance(minutes=1)
        assert runtime.run("reconcile")  # nothing new: nothing said twice
        thread_again = bot.standin.messages(OPS.id, thread_ts=op.slack_ts)
        assert len(thread_again) == len(thread)


def test_spot_interruption_is_said_plainly_with_the_running_job(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        ec2 = bot.aws.client("ec2")
        iid = ec2.run_instances(
            ImageId="ami-0d27e0fb3bac4d724",
            MinCount=1,
            MaxCount=1,
            InstanceType="g5.xlarge",
            InstanceMarketOptions={"MarketType": "spot"},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "runctl:managed", "Value": "true"},
                        {"Key": "runctl:owner", "Value": BOB.id},
                    ],
                }
            ],
        )["Instances"][0]["InstanceId"]
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        inst = bot.application.services.deps.provider.describe(iid)
        assert inst is not None and inst.lifecycle is Lifecycle.SPOT
        # moto cannot reclaim a spot machine: record what EC2 reports when it does.
        running_job(bot, iid)
        at = bot.clock.now()
        reclaimed = replace(
            inst,
            state=InstanceState.TERMINATED,
            state_reason_code="Server.SpotInstanceTermination",
            state_reason_message="Server.SpotInstanceTermination: Spot instance termination",
        )
        changes = bot.repos.resources.upsert_from_cloud([reclaimed], at)
        sent = runtime.scheduled.state_notices.tell(changes, [reclaimed])
        assert len(sent) == 1
        said = texts(bot.standin.dms(BOB.id))
        assert f"Your spot g5.xlarge `{iid}` was reclaimed by AWS at" in said
        assert "job `job-0123abcd` was running" in said


@pytest.mark.parametrize(
    ("how", "code", "state"),
    [
        ("stop", "Server.SpotInstanceStop", "stopped"),
        ("terminate", "Server.SpotInstanceTermination", "terminated"),
    ],
)
def test_the_reconcile_job_tells_the_owner_aws_reclaimed_the_spot_machine(
    make_bot: BotFactory, how: str, code: str, state: str
) -> None:
    with make_bot() as bot:
        iid = launch_spot(bot)
        mine = launch_spot(bot)  # stopped by Bob himself: an ordinary notice
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")
        assert bot.standin.dms(BOB.id) == []  # first sight is not news
        running_job(bot, iid)
        reclaim_in_moto(bot, iid, how, code)
        bot.aws.client("ec2").stop_instances(InstanceIds=[mine])

        bot.clock.advance(minutes=1)
        assert runtime.run("reconcile")
        assert runtime.stats["reconcile"].failures == 0
        row = bot.repos.resources.get(iid)
        assert row is not None and row.state == state
        dms = bot.standin.dms(BOB.id)
        reclaimed = [m for m in dms if "was reclaimed by AWS" in m.text]
        assert len(reclaimed) == 1
        said = reclaimed[0].text
        assert f"Your spot g5.xlarge `{iid}` was reclaimed by AWS" in said
        assert "job `job-0123abcd` was running" in said
        assert any(f"`{mine}` (g5.xlarge) has stopped." in m.text for m in dms)
        assert not any(mine in m.text and "reclaimed" in m.text for m in dms)
        job = bot.repos.jobs.get("job-0123abcd")
        assert job is not None and job.status == "lost"  # the job's own thread takes it from there

        bot.clock.advance(minutes=1)
        assert runtime.run("reconcile")  # nothing new: nothing said twice
        assert len([m for m in bot.standin.dms(BOB.id) if "was reclaimed by AWS" in m.text]) == 1


def test_report_has_the_figures_and_a_real_chart_once_per_slot(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        for _ in range(3):
            launch(bot)
        run_instances(bot.aws.client("ec2"), 1, tags={"Name": "not-ours"})
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        move_to(bot, MONDAY)  # 2 days of running g5.xlarge machines to report on
        bot.repos.subscriptions.upsert(
            TEAM, "daily", at_time="09:00", timezone="Europe/Berlin", created_by=CAROL.id, at=bot.clock.now()
        )
        assert runtime.run("reports")
        (report,) = [m for m in bot.standin.messages(TEAM) if "fleet report" in m.text.lower()]
        body = texts([report])
        assert "3 machine(s)" in body and "Unmanaged running machines" in body
        (chart,) = bot.standin.files()
        assert chart.content is not None
        image = Image.open(io.BytesIO(chart.content))
        assert image.format == "PNG" and image.size == (800, 360)
        assert (
            len(set(image.convert("RGB").get_flattened_data())) > 20
        )  # bars, text and axes, not a blank image
        assert len(bot.standin.calls("chat.postMessage")) == 1
        bot.clock.advance(minutes=1)
        assert runtime.run("reports")
        assert len([m for m in bot.standin.messages(TEAM) if "fleet report" in m.text.lower()]) == 1


def test_cost_alerts_are_sent_once_per_crossing(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_ALERT_MACHINE_COST="20", RUNCTL_ALERT_MACHINE_HOURS="24") as bot:
        launch(bot)
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        move_to(bot, MONDAY)
        assert runtime.run("alerts")
        (dm,) = bot.standin.dms(BOB.id)  # both of Bob's alerts of this run, in one DM
        said = texts([dm])
        assert dm.text.startswith("*2 cost alerts:*")
        assert "has cost $" in said and "has been running" in said
        bot.clock.advance(minutes=5)
        assert runtime.run("alerts")
        assert len(bot.standin.dms(BOB.id)) == 1


def test_expired_approvals_are_closed_by_the_job(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        iid = launch(bot)
        bot.clock.advance(minutes=10)
        assert bot.command(BOB.id, f"terminate {iid}", channel=OPS.id).status == 200
        bot.wait_idle()
        runtime = scheduler_for(bot)
        bot.clock.advance(minutes=31)
        assert runtime.run("approvals")
        (approval_message,) = [m for m in bot.standin.messages(OPS.id) if "terminate" in m.text]
        assert "expired" in texts([approval_message]).lower()
        assert "Approve" not in str(approval_message.blocks)
        op = bot.repos.operations.list_by_status([OpStatus.CANCELLED])
        assert [o.kind for o in op] == ["terminate"]


def test_apscheduler_stores_the_jobs_and_stops_cleanly(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        from bot.scheduler.runtime import SchedulerRuntime

        runtime = SchedulerRuntime(
            bot.application.services,
            bot.settings,
            bot.application.engine,
            scheduled=bot.application.scheduled,
        )
        runtime.start()
        try:
            assert runtime.leading
            jobs = {job.id: job for job in runtime._scheduler.get_jobs()}
            assert set(jobs) == {
                "reconcile",
                "idle",
                "approvals",
                "reports",
                "alerts",
                "housekeeping",
                "jobs",
            }
            assert jobs["idle"].trigger.interval == timedelta(minutes=5)
            with bot.application.engine.connect() as connection:
                from sqlalchemy import text

                stored = connection.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar()
            assert stored == 7
        finally:
            runtime.stop()
        assert not runtime.leading
        assert bot.repos.leases.holder("scheduler", bot.clock.now()) is None


def test_subscribe_report_and_unsubscribe_from_slack(make_bot: BotFactory) -> None:
    from tests.support.slack import ALICE

    with make_bot() as bot:
        launch(bot)
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        denied = bot.command(BOB.id, "subscribe weekly mon 09:00 Europe/Berlin", channel=TEAM)
        assert "admin" in denied.text.lower()
        assert bot.command(ALICE.id, "subscribe weekly mon 09:00 Europe/Berlin", channel=TEAM).status == 200
        bot.wait_idle()
        (sub,) = bot.repos.subscriptions.list_for_channel(TEAM)
        assert (sub.cadence, sub.weekday, sub.at_time, sub.timezone) == (
            "weekly",
            0,
            "09:00",
            "Europe/Berlin",
        )
        assert "every Monday at 09:00 (Europe/Berlin)" in texts(bot.standin.messages(TEAM))

        assert bot.command(BOB.id, "report", channel=TEAM).status == 200
        bot.wait_idle()
        assert any("Fleet report" in m.text for m in bot.standin.messages(TEAM))
        assert len(bot.standin.files()) == 1

        move_to(bot, MONDAY)  # 16:00 in Berlin on a Monday: the weekly report is due
        assert runtime.run("reports")
        assert any("Weekly fleet report" in m.text for m in bot.standin.messages(TEAM))

        assert bot.command(ALICE.id, "unsubscribe weekly", channel=TEAM).status == 200
        bot.wait_idle()
        assert bot.repos.subscriptions.list_for_channel(TEAM) == []
