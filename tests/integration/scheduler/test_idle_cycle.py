"""The reminder lifecycle of DESIGN §3 rules 4–8, one moved-clock cycle at a time."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.reminders import IdleCycleService
from bot.slack.standin import Message
from bot.views import operations as op_views
from bot.views import reminders as reminder_views
from bot.views.operations import START_BACK
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
from tests.support.harness import Bot, buttons, rendered
from tests.support.slack import ALICE, BOB, CAROL

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


def _keep_tag(bot: Bot, instance_id: str) -> datetime:
    tags = bot.aws.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])[
        "Tags"
    ]
    value = {t["Key"]: t["Value"] for t in tags}[tagschema.KEEP_UNTIL]
    assert value.endswith("Z") and len(value) == len("2027-03-15T19:00:00Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _click_keep(bot: Bot, user: str, instance_id: str, action: str, length: timedelta) -> datetime:
    """Click a Keep button on the owner's newest reminder; the tag must say exactly now + `length`."""
    (mark,) = _marks(bot)
    dm = bot.standin.dms(BOB.id)[-1]
    before = bot.clock.now().replace(microsecond=0)
    bot.press(user, dm, f"{action}:{mark.id}")  # type: ignore[attr-defined]
    after = bot.clock.now()
    kept = _keep_tag(bot, instance_id)
    assert before + length <= kept <= after + length
    return kept


def _started_back(bot: Bot, instance_id: str) -> Message:
    """The **Start it back** reply the bot posted under the owner's reminder for `instance_id`."""
    replies = [
        m
        for m in bot.standin.messages(bot.standin.dm_channel(BOB.id))
        if m.thread_ts and m.ts != m.thread_ts and instance_id in m.text
    ]
    assert len(replies) == 1, replies
    assert START_BACK in buttons(replies[0])
    return replies[0]


def test_keep_4_hours_writes_the_exact_tag_and_prevents_the_stop(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        _click_keep(bot, BOB.id, machine, reminder_views.KEEP_SHORT, timedelta(hours=4))
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"
        assert _marks(bot) == []  # the tag owns the decision until it runs out


def test_keep_1_day_holds_for_a_day_then_the_reminder_comes_back(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        kept = _click_keep(bot, BOB.id, machine, reminder_views.KEEP_LONG, timedelta(days=1))
        move_to(bot, kept - timedelta(minutes=5))  # Tuesday, 5 minutes before the keep runs out
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running" and _marks(bot) == []
        assert len(bot.standin.dms(BOB.id)) == 1
        move_to(bot, kept + timedelta(minutes=5))
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        assert len(bot.standin.dms(BOB.id)) == 2  # told again, with a new grace period


def test_stop_now_stops_the_machine_and_closes_the_reminder(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        (mark,) = _marks(bot)
        (dm,) = bot.standin.dms(BOB.id)
        bot.press(BOB.id, dm, f"{reminder_views.STOP_NOW}:{mark.id}")  # type: ignore[attr-defined]
        assert state_of(bot, machine) in ("stopping", "stopped")
        assert _marks(bot) == []
        closed = bot.repos.cleanup_marks.get(mark.id)  # type: ignore[attr-defined]
        assert closed is not None and closed.state == MarkState.ACTED
        assert f"<@{BOB.id}> stopped it" in rendered(bot.current(dm))
        assert reminder_views.STOP_NOW not in buttons(bot.current(dm))  # no stale buttons


def test_start_it_back_after_an_idle_stop_runs_the_machine_again(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "stopped"
        bot.press(BOB.id, _started_back(bot, machine), START_BACK)
        assert state_of(bot, machine) in ("pending", "running")
        assert bot.repos.cleanup_marks.list_open(rule="idle") == []


def test_keep_cap_refuses_the_owner_and_lets_an_admin_extend(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true", RUNCTL_KEEP_MAX_PER_MACHINE="1") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        kept = _click_keep(bot, BOB.id, machine, reminder_views.KEEP_SHORT, timedelta(hours=4))
        move_to(bot, kept + timedelta(minutes=5))  # 15:05 in New York: the keep ran out, still idle
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        dm = bot.standin.dms(BOB.id)[-1]
        bot.press(BOB.id, dm, f"{reminder_views.KEEP_SHORT}:{mark.id}")  # type: ignore[attr-defined]
        assert "kept 1 times already (limit 1); ask an admin" in bot.last_reply(BOB.id)
        assert _keep_tag(bot, machine) == kept  # the refused keep wrote nothing
        # An admin is not capped: Alice keeps it for another day from the same reminder.
        extended = _click_keep(bot, ALICE.id, machine, reminder_views.KEEP_LONG, timedelta(days=1))
        assert extended > kept
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"


def test_quiet_hours_across_the_dst_change_wait_for_the_owners_morning(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        # Friday 12 March 2027, 19:30 EST in New York (00:30 UTC Saturday): told before the clocks change.
        move_to(bot, datetime(2027, 3, 13, 0, 30, tzinfo=UTC))
        cpu(bot, machine, 1.0)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        (mark,) = _marks(bot)
        assert mark.state == MarkState.NOTIFIED  # type: ignore[attr-defined]
        assert len(bot.standin.dms(BOB.id)) == 1
        # The grace period ends at 20:30 EST, after working hours: the stop waits over the weekend, during
        # which New York moves to EDT (Sunday 14 March, 02:00 EST -> 03:00 EDT).
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"
        # Monday 11:30 UTC is 07:30 EDT (it would be 06:30 EST): still before the owner's morning.
        move_to(bot, datetime(2027, 3, 15, 11, 30, tzinfo=UTC))
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "running"
        assert len(_marks(bot)) == 1
        # 12:05 UTC is 08:05 EDT: inside working hours only because of the new offset (07:05 in EST).
        move_to(bot, datetime(2027, 3, 15, 12, 5, tzinfo=UTC))
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "stopped"
        closed = bot.repos.cleanup_marks.get(mark.id)  # type: ignore[attr-defined]
        assert closed is not None and closed.state == MarkState.ACTED and closed.acted_at is not None
        acted_at = closed.acted_at.replace(tzinfo=UTC) if closed.acted_at.tzinfo is None else closed.acted_at
        assert timedelta(0) <= acted_at - datetime(2027, 3, 15, 12, 5, tzinfo=UTC) < timedelta(minutes=1)


def test_breaker_stops_the_first_and_holds_the_rest_for_an_admin(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true", RUNCTL_BREAKER_MAX_ACTIONS="1") as bot:
        machines = sorted(launch(bot) for _ in range(3))
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
        first, held = machines[0], machines[1:]
        assert report.stopped == [first]  # type: ignore[attr-defined]  # within the cap: goes ahead
        assert sorted(report.held_by_breaker) == held  # type: ignore[attr-defined]
        assert state_of(bot, first) == "stopped"
        assert all(state_of(bot, m) == "running" for m in held)
        (request,) = [m for m in bot.standin.messages(TEAM) if "Approval needed" in m.text]
        assert "circuit breaker" in texts([request]) and "only an admin" in texts([request])

        # While the request waits, later cycles neither stop the held machines nor ask again.
        bot.clock.advance(minutes=5)
        for m in held:
            cpu(bot, m, 1.0)
        runtime.run("idle")
        assert all(state_of(bot, m) == "running" for m in held)
        assert sorted(runtime.stats["idle"].last_result.held_by_breaker) == held  # type: ignore[attr-defined]
        assert len([m for m in bot.standin.messages(TEAM) if "Approval needed" in m.text]) == 1

        # An approver who is not an admin is refused; nothing changes.
        bot.press(CAROL.id, request, op_views.APPROVE)
        assert "Only admins (RUNCTL_ADMINS)" in bot.last_reply(CAROL.id)
        assert all(state_of(bot, m) == "running" for m in held)

        # The admin approves: the bot stops the held machines as idle stops.
        bot.press(ALICE.id, bot.current(request), op_views.APPROVE)
        assert all(state_of(bot, m) == "stopped" for m in held)
        assert _marks(bot) == []
        for m in held:
            (row,) = [r for r in bot.repos.cleanup_marks.list_by_message(*_dm_ref(bot)) if r.instance_id == m]
            assert row.state == MarkState.ACTED
            _started_back(bot, m)
            stops = [e for e in bot.repos.audit.list(target=m, limit=100) if e.action == "idle:stop"]
            assert [e.result for e in stops] == ["succeeded"] and stops[0].detail["approved_by"] == ALICE.id
        digest = rendered(bot.current(bot.standin.dms(BOB.id)[0]))
        assert digest.count("Stopped by the bot") == 3 and f"<@{ALICE.id}> approved the held batch" in digest
        assert "already stopped" not in digest
        assert "Approved by" in rendered(bot.current(request))


def _dm_ref(bot: Bot) -> tuple[str, str]:
    dm = bot.standin.dms(BOB.id)[0]
    return dm.channel, dm.ts


def test_unknown_owner_time_zone_never_stops_and_retries_each_cycle(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        machine = launch(bot)
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        bot.standin.fail_next("users.info", status=200, error="fatal_error", count=1000)
        runtime = scheduler_for(bot)
        runtime.run("idle")
        (dm,) = bot.standin.dms(BOB.id)  # the reminder still goes out, and says why no stop will follow
        assert "could not be read" in rendered(dm) and "will not stop it on my own" in rendered(dm)
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        with caplog.at_level(logging.WARNING, logger="bot.services.reminders"):
            runtime.run("idle")
        assert state_of(bot, machine) == "running"
        assert runtime.stats["idle"].last_result.steps["wait"] == [machine]  # type: ignore[attr-defined]
        assert "Not stopped" in rendered(bot.current(dm))
        assert any("time zone" in r.getMessage() and BOB.id in r.getMessage() for r in caplog.records)
        verdicts = [e for e in bot.repos.audit.list(target=machine, limit=100) if e.rule == "quiet_hours"]
        (verdict,) = verdicts  # recorded once per mark, not every cycle
        assert verdict.detail["evidence"]["timezone_unknown"] is True
        assert "the owner's time zone is unknown for " in verdict.detail["reason"]
        # Slack answers again: the next cycle reads New York (11:06 EDT) and stops it.
        bot.standin.clear_faults()
        bot.clock.advance(minutes=5)
        cpu(bot, machine, 1.0)
        runtime.run("idle")
        assert state_of(bot, machine) == "stopped"


def test_a_configured_team_time_zone_stands_in_for_an_unknown_one(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        services = bot.application.services
        idle = IdleCycleService(
            services.deps,
            services.prices,
            services.operations,
            services.approvals,
            services.auditor,
            team_timezone="Asia/Tokyo",
        )
        machine = launch(bot)
        bot.standin.fail_next("users.info", status=200, error="fatal_error", count=1000)
        # Monday 15:00 UTC is midnight in Tokyo: the reminder waits for the team's morning.
        move_to(bot, MONDAY)
        cpu(bot, machine, 1.0)
        assert idle.run().steps["mark"] == [machine]
        # Tuesday 00:30 UTC is 09:30 in Tokyo: told, with the zone it was judged in.
        move_to(bot, MONDAY + timedelta(hours=9, minutes=30))
        cpu(bot, machine, 1.0)
        assert idle.run().steps["notify"] == [machine]
        (dm,) = bot.standin.dms(BOB.id)
        assert "the team default Asia/Tokyo was used" in rendered(dm)
        bot.clock.advance(minutes=61)
        cpu(bot, machine, 1.0)
        assert idle.run().stopped == [machine]
        assert state_of(bot, machine) == "stopped"


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
