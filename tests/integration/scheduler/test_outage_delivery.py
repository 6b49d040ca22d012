"""Nothing is lost when Slack is down: notices and reports held back by an outage arrive once afterwards.

The stand-in's outage window is read from the bot's own moved clock, so "Slack answers 503 for two
minutes" is a clock move, not a sleep.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.clock import ShiftedClock
from bot.metrics import OUTBOX_MESSAGES
from bot.scheduler.runtime import SchedulerRuntime
from bot.services.outbox import Outbox, Outcome
from bot.slack.standin import SlackStandIn
from storage.models import OutboxStatus
from tests.integration.scheduler.conftest import (
    TEAM,
    BotFactory,
    cpu,
    launch,
    launch_spot,
    move_to,
    reclaim_in_moto,
    running_job,
    scheduler_for,
    state_of,
    texts,
)
from tests.support.harness import Bot
from tests.support.slack import BOB, CAROL, running_standin

MONDAY = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)
SPOT_CODE = "Server.SpotInstanceTermination"

_clocks: list[ShiftedClock] = []


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    """The stand-in on the bot's moved clock (once a bot is running), so outage windows follow it."""

    def now() -> float:
        return (_clocks[-1].now() if _clocks else datetime.now(UTC)).timestamp()

    with running_standin(rate_limit_per_channel=None, clock=now) as s:
        yield s
    _clocks.clear()


def started(bot: Bot) -> Bot:
    _clocks.append(bot.clock)
    return bot


def gave_up_count() -> float:
    return OUTBOX_MESSAGES.labels("gave_up")._value.get()  # type: ignore[attr-defined,no-any-return]


def reports(bot: Bot) -> list[Any]:
    return [m for m in bot.standin.messages(TEAM) if "fleet report" in m.text.lower()]


def test_a_two_minute_outage_delays_notices_and_the_report_and_loses_nothing(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        machine = launch(bot)
        spot = launch_spot(bot)
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")  # first sight: nothing to say
        move_to(bot, MONDAY)
        running_job(bot, spot)
        bot.repos.subscriptions.upsert(
            TEAM, "daily", at_time="09:00", timezone="UTC", created_by=CAROL.id, at=bot.clock.now()
        )
        start = bot.clock.now()
        bot.standin.outage(start, start + timedelta(minutes=2), status=503)

        bot.aws.client("ec2").stop_instances(InstanceIds=[machine])
        reclaim_in_moto(bot, spot, "stop", "Server.SpotInstanceStop")
        assert runtime.run("reconcile")
        assert len(runtime.stats["reconcile"].last_result) == 2  # type: ignore[arg-type]
        assert runtime.run("reports")

        # Slack said 503 to all of it, and yet the spot job was handled: it is lost, not "running".
        assert bot.standin.dms(BOB.id) == [] and reports(bot) == []
        job = bot.repos.jobs.get("job-0123abcd")
        assert job is not None and job.status == "lost"
        # The state notice, the spot notice and the job's own word on the reclaim wait in the outbox.
        assert bot.repos.outbox.count_pending() == 3
        sub = bot.repos.subscriptions.get(TEAM, "daily")
        assert sub is not None and sub.last_sent_slot is None  # the claim was given back

        bot.clock.advance(minutes=1)
        assert runtime.run("reconcile")  # still down: the drain tries one, defers the rest
        assert runtime.last_drain is not None and runtime.last_drain.sent == []
        assert runtime.run("reports")
        assert bot.standin.dms(BOB.id) == [] and reports(bot) == []

        bot.clock.advance(minutes=1, seconds=30)  # Slack is back
        assert runtime.run("reconcile")
        assert runtime.run("reports")
        said = texts(bot.standin.dms(BOB.id))
        assert said.count(f"`{machine}` (g5.xlarge) has stopped") == 1
        assert said.count(f"Your spot g5.xlarge `{spot}` was reclaimed by AWS") == 1
        assert "job `job-0123abcd` was running" in said
        job_words = [m for m in bot.standin.dms(BOB.id) if m.text.startswith("AWS reclaimed the spot")]
        assert len(job_words) == 1 and "job job-0123abcd was lost" in job_words[0].text
        assert len(reports(bot)) == 1 and len(bot.standin.files()) == 1
        assert bot.repos.outbox.count_pending() == 0

        for _ in range(3):  # later ticks say nothing twice
            bot.clock.advance(minutes=1)
            runtime.run("reconcile")
            runtime.run("reports")
        assert texts(bot.standin.dms(BOB.id)).count("has stopped") == 1
        assert texts(bot.standin.dms(BOB.id)).count("was reclaimed by AWS") == 1
        assert len(reports(bot)) == 1 and len(bot.standin.files()) == 1


def test_an_idle_stop_during_an_outage_still_reaches_the_owner_with_start_it_back(
    make_bot: BotFactory,
) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        started(bot)
        idle = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, idle, 1.0)
        runtime = scheduler_for(bot)
        assert runtime.run("idle")  # marked and told: the grace clock starts
        bot.clock.advance(minutes=61)
        cpu(bot, idle, 1.0)

        bot.standin.set_down(True)
        assert runtime.run("idle")
        assert state_of(bot, idle) == "stopped"  # the stop does not wait for Slack
        assert bot.repos.outbox.count_pending() >= 2  # the result with Start it back, and the digests

        def start_backs() -> list[Any]:
            return [
                m
                for channel in (bot.standin.dm_channel(BOB.id), TEAM)
                for m in bot.standin.messages(channel)
                if m.thread_ts and m.ts != m.thread_ts and "Start it back" in json.dumps(m.blocks)
            ]

        assert start_backs() == []
        bot.standin.set_down(False)
        for _ in range(3):  # the drain runs with reconcile; later ticks send nothing twice
            bot.clock.advance(minutes=1)
            assert runtime.run("reconcile")
        assert len(start_backs()) == 2  # in the owner's DM thread and in the team channel's
        assert all(idle in json.dumps(m.blocks) for m in start_backs())
        assert bot.repos.outbox.count_pending() == 0


def test_a_failed_chart_upload_does_not_post_the_report_again(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        launch(bot)
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        move_to(bot, MONDAY)
        bot.repos.subscriptions.upsert(
            TEAM, "daily", at_time="09:00", timezone="UTC", created_by=CAROL.id, at=bot.clock.now()
        )
        bot.standin.fail_next("files.getUploadURLExternal", status=503, count=5)
        assert runtime.run("reports")
        assert len(reports(bot)) == 1 and bot.standin.files() == []
        bot.clock.advance(minutes=1)
        assert runtime.run("reports")
        assert len(reports(bot)) == 1


def test_two_drains_at_once_send_a_queued_message_once(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        deps = bot.application.services.deps
        start = bot.clock.now()
        bot.standin.outage(start, start + timedelta(minutes=2), status=503)
        assert deps.outbox.dm("test:once", BOB.id, "queued while Slack was down").outcome is Outcome.QUEUED
        assert deps.outbox.dm("test:once", BOB.id, "the same notice again").outcome is Outcome.DUPLICATE
        bot.clock.advance(minutes=3)

        drains = [deps.outbox for _ in range(2)]
        assert drains[0].holder != drains[1].holder
        barrier = threading.Barrier(2)
        sent: list[list[str]] = []

        def drain(outbox: Outbox) -> None:
            barrier.wait()
            sent.append(outbox.drain().sent)

        threads = [threading.Thread(target=drain, args=(o,)) for o in drains]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(len(s) for s in sent) == [0, 1]
        assert [m.text for m in bot.standin.dms(BOB.id)] == ["queued while Slack was down"]
        row = bot.repos.outbox.get("test:once")
        assert row is not None and row.status == OutboxStatus.SENT and row.attempts == 1


def test_back_off_doubles_and_an_old_message_is_given_up(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with make_bot() as bot:
        started(bot)
        deps = bot.application.services.deps
        bot.standin.set_down(True, status=503)
        t0 = bot.clock.now()
        assert deps.outbox.post("test:backoff", TEAM, "held back").outcome is Outcome.QUEUED
        row = bot.repos.outbox.get("test:backoff")
        assert row is not None and row.attempts == 1
        assert row.next_attempt_at - t0 >= timedelta(seconds=30)
        assert row.next_attempt_at - t0 < timedelta(seconds=35)

        calls = len(bot.standin.calls("chat.postMessage"))
        bot.clock.advance(seconds=10)
        assert deps.outbox.drain().retrying == []  # not due yet: Slack is not asked
        assert len(bot.standin.calls("chat.postMessage")) == calls

        for attempt, wait in ((2, 60), (3, 120)):  # doubled after each failed attempt
            tried = bot.clock.advance(row.next_attempt_at - bot.clock.now() + timedelta(seconds=1))
            assert deps.outbox.drain().retrying == ["test:backoff"]
            row = bot.repos.outbox.get("test:backoff")
            assert row is not None and row.attempts == attempt
            assert timedelta(seconds=wait) <= row.next_attempt_at - tried < timedelta(seconds=wait + 5)

        bot.standin.set_down(False)
        bot.clock.advance(minutes=3)
        before = gave_up_count()
        with caplog.at_level(logging.ERROR, logger="bot.services.outbox"):
            report = deps.outbox.drain(max_age=timedelta(minutes=4))
        assert report.gave_up == ["test:backoff"] and report.sent == []
        assert gave_up_count() == before + 1
        assert any("gave up on Slack message test:backoff" in r.getMessage() for r in caplog.records)
        row = bot.repos.outbox.get("test:backoff")
        assert row is not None and row.status == OutboxStatus.GAVE_UP
        assert [m for m in bot.standin.messages(TEAM) if m.text == "held back"] == []
        bot.clock.advance(minutes=10)
        assert deps.outbox.drain().sent == []


def test_a_message_slack_refuses_for_good_is_not_queued(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        deps = bot.application.services.deps
        bot.standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
        assert deps.outbox.post("test:gone", TEAM, "nowhere").outcome is Outcome.FAILED
        row = bot.repos.outbox.get("test:gone")
        assert row is not None and row.status == OutboxStatus.GAVE_UP
        assert row.last_error == "HTTP 200 channel_not_found"


def test_the_latest_update_of_a_message_wins_after_an_outage(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        deps = bot.application.services.deps
        ref = deps.notifier.post(TEAM, "v0")
        bot.standin.set_down(True, status=503)
        assert deps.outbox.update(ref, "v1").outcome is Outcome.QUEUED
        assert deps.outbox.update(ref, "v2").outcome is Outcome.QUEUED
        bot.standin.set_down(False)
        bot.clock.advance(minutes=1)
        assert deps.outbox.drain().sent == [f"update:{ref.channel}:{ref.ts}"]
        message = bot.standin.message(ref.channel, ref.ts)
        assert message is not None and message.text == "v2"
        assert [c.params.get("text") for c in bot.standin.calls("chat.update") if c.ok] == ["v2"]


def test_the_spot_notice_gives_the_time_aws_reclaimed_the_machine(make_bot: BotFactory) -> None:
    with make_bot() as bot:
        started(bot)
        spot, other = launch_spot(bot), launch_spot(bot)
        runtime = scheduler_for(bot)
        runtime.run("reconcile")
        bot.clock.advance(minutes=7)
        # EC2 dates the change in its transition reason; reconcile finds the terminated machine by id.
        dated = "Service initiated (2026-11-29 14:02:11 GMT)"
        reclaim_in_moto(bot, spot, "terminate", SPOT_CODE, transition_reason=dated)
        runtime.run("reconcile")
        said = texts(bot.standin.dms(BOB.id))
        assert f"`{spot}` was reclaimed by AWS at 2026-11-29 14:02 UTC (noticed " in said

        bot.clock.advance(minutes=3)
        noticed = bot.clock.now()
        reclaim_in_moto(bot, other, "terminate", SPOT_CODE, transition_reason="Service initiated")
        runtime.run("reconcile")
        said = texts(bot.standin.dms(BOB.id))
        assert (
            f"`{other}` was reclaimed by AWS at or before {noticed:%Y-%m-%d %H:%M} UTC "
            "(when the bot noticed it; AWS gave no time)" in said
        )
        assert sum("was reclaimed by AWS" in str(m.text) for m in bot.standin.dms(BOB.id)) == 2


def test_a_restart_keeps_a_jobs_next_run_time_unless_its_interval_changed(make_bot: BotFactory) -> None:
    with make_bot() as bot:

        def start(settings: Any = None) -> tuple[SchedulerRuntime, dict[str, datetime]]:
            runtime = SchedulerRuntime(
                bot.application.services,
                settings or bot.settings,
                bot.application.engine,
                holder="proc-a",
                scheduled=bot.application.scheduled,
            )
            runtime.start()
            return runtime, {job.id: job.next_run_time for job in runtime._scheduler.get_jobs()}

        first, before = start()
        first.stop()
        second, after = start()
        second.stop()
        assert after["housekeeping"] == before["housekeeping"]
        assert after == before

        changed = bot.settings.model_copy(update={"idle_interval": timedelta(minutes=7)})
        third, moved = start(changed)
        try:
            jobs = {job.id: job for job in third._scheduler.get_jobs()}
            assert jobs["idle"].trigger.interval == timedelta(minutes=7)
            assert moved["idle"] != before["idle"]
            assert moved["housekeeping"] == before["housekeeping"]
        finally:
            third.stop()
