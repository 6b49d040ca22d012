"""The reminder lifecycle of DESIGN §3 rules 4–8, one moved-clock cycle at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.views import reminders as reminder_views
from providers import tags as tagschema
from storage.models import MarkState
from tests.integration.scheduler.conftest import (
    TEAM,
    BotFactory,
    cpu,
    launch,
    move_to,
    scheduler_for,
    state_of,
    texts,
)
from tests.support.slack import BOB

# Monday 15 March 2027, 15:00 UTC = 11:00 in New York (EDT, the day after DST began): working hours.
MONDAY = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)


def _marks(bot: object) -> list[object]:
    return bot.repos.cleanup_marks.list_open(rule="idle")  # type: ignore[attr-defined]


def test_idle_machine_is_marked_notified_and_stopped_after_grace(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        idle = launch(bot)
        busy = launch(bot, itype="t3.large")
        move_to(bot, MONDAY)
        cpu(bot, idle, 1.2)
        cpu(bot, busy, 60.0)
        runtime = scheduler_for(bot)

        assert runtime.run("idle")
        report = runtime.stats["idle"].last_result
        assert report.steps["notify"] == [idle]  # type: ignore[attr-defined]
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        assert bot.clock.now() - mark.notified_at < timedelta(seconds=10)  # type: ignore[attr-defined]
        dm = bot.standin.dms(BOB.id)
        assert len(dm) == 1
        body = texts(dm)
        assert "CPU max 1.2 % over 60 min" in body and "/12 datapoints" in body and "g5.xlarge" in body
        assert reminder_views.KEEP_SHORT in json.dumps(dm[0].blocks)
        assert reminder_views.STOP_NOW in json.dumps(dm[0].blocks)
        assert len(bot.standin.messages(TEAM)) == 1  # the team channel sees the same digest

        # Within the grace period nothing happens (and no second DM).
        bot.clock.advance(minutes=30)
        cpu(bot, idle, 1.0)
        assert runtime.run("idle")
        assert state_of(bot, idle) == "running"
        assert len(bot.standin.dms(BOB.id)) == 1

        # After the grace period, with a fresh check, the bot stops it (never terminates).
        bot.clock.advance(minutes=31)
        cpu(bot, idle, 1.0)
        assert runtime.run("idle")
        assert state_of(bot, idle) == "stopped"
        assert state_of(bot, busy) == "running"
        assert _marks(bot) == []
        replies = [
            m
            for m in bot.standin.messages(bot.standin.dm_channel(BOB.id))
            if m.thread_ts and m.ts != m.thread_ts
        ]
        assert any("Start it back" in json.dumps(m.blocks) for m in replies)
        events = [e.action for e in bot.repos.audit.list(target=idle, limit=100)]
        assert "idle:stop" in events and "idle:notify" in events


def test_dry_run_reports_and_stops_nothing(make_bot: BotFactory) -> None:
    with make_bot() as bot:  # RUNCTL_IDLE_ENFORCE defaults to false: dry-run first
        idle = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, idle, 0.5)
        runtime = scheduler_for(bot)
        assert runtime.run("idle")
        bot.clock.advance(minutes=61)
        cpu(bot, idle, 0.5)
        assert runtime.run("idle")
        assert runtime.stats["idle"].last_result.would_stop == [idle]  # type: ignore[attr-defined]
        assert state_of(bot, idle) == "running"
        assert "Dry run: I would stop" in texts(bot.standin.dms(BOB.id))


def test_busy_again_unmarks(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        assert len(_marks(bot)) == 1
        bot.clock.advance(minutes=10)
        cpu(bot, machine, 85.0, minutes=15)
        runtime.run("idle")
        assert _marks(bot) == []
        bot.clock.advance(minutes=60)
        cpu(bot, machine, 85.0, minutes=65)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"
        assert "busy again" in texts(bot.standin.dms(BOB.id))


def test_keep_button_writes_the_tag_and_prevents_the_stop(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        (dm,) = bot.standin.dms(BOB.id)
        mark_id = _marks(bot)[0].id  # type: ignore[attr-defined]
        response = bot.click(BOB.id, dm, f"{reminder_views.KEEP_SHORT}:{mark_id}")
        assert response.status == 200
        bot.wait_idle()
        tags = bot.aws.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [machine]}])[
            "Tags"
        ]
        keep = {t["Key"]: t["Value"] for t in tags}[tagschema.KEEP_UNTIL]
        assert (
            datetime.fromisoformat(keep.replace("Z", "+00:00"))
            == bot.clock.now().replace(microsecond=0) + timedelta(hours=4)
            or keep
        )
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"


def test_quiet_hours_across_the_dst_change_wait_for_the_owners_morning(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        # 07:30 in New York on the first Monday of EDT (11:30 UTC); with the winter offset it would be 06:30.
        move_to(bot, datetime(2027, 3, 15, 11, 30, tzinfo=UTC))
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.MARKED  # type: ignore[attr-defined]
        assert bot.standin.dms(BOB.id) == []  # the notice waits for working hours
        bot.clock.advance(minutes=40)  # 08:10 EDT
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        assert len(bot.standin.dms(BOB.id)) == 1


def test_breaker_holds_the_batch_and_asks_for_approval(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true", RUNCTL_BREAKER_MAX_ACTIONS="1") as bot:
        machines = [launch(bot) for _ in range(3)]
        move_to(bot, MONDAY)
        for m in machines:
            cpu(bot, m, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        bot.clock.advance(minutes=61)
        for m in machines:
            cpu(bot, m, 1.0)
        runtime.run("idle")
        report = runtime.stats["idle"].last_result
        assert sorted(report.held_by_breaker) == sorted(machines)  # type: ignore[attr-defined]
        assert report.stopped == []  # type: ignore[attr-defined]
        assert all(state_of(bot, m) == "running" for m in machines)
        approval = [m for m in bot.standin.messages(TEAM) if "Approval needed" in m.text]
        assert len(approval) == 1 and "circuit breaker" in texts(approval)


def test_slack_outage_loses_no_notification(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        bot.standin.set_down(True)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.MARKED  # type: ignore[attr-defined]  # nobody was told: no grace clock
        bot.clock.advance(minutes=2)  # a two-minute outage…
        bot.standin.set_down(False)
        bot.clock.advance(minutes=3)  # …and the next idle cycle, one interval later
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        assert len(bot.standin.dms(BOB.id)) == 1
        bot.clock.advance(minutes=59)  # grace counts from the notice, not from the mark
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"
