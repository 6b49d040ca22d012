"""`/runctl cleanup run --yes` end to end: the machines it stopped can be started back from its message, one
button per machine (up to a limit, then "and N more"), and each button starts its machine once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.slack.standin import Message, SlackStandIn
from bot.slack.standin.delivery import block_actions_request, send
from bot.views.operations import MAX_START_BACK_BUTTONS
from tests.support.harness import ADMIN, APPROVER, OUTSIDER, REQUESTER, Bot, buttons, rendered, running_bot
from tests.support.moto import MotoServer, put_metric_points

START_BACK = "start_it_back"


@pytest.fixture
def roomy_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    """A circuit breaker that lets a cleanup stop every idle machine of a small test fleet."""
    with running_bot(tmp_path, standin, aws, monkeypatch, **_breaker(50)) as b:
        yield b


def _breaker(max_actions: int) -> dict[str, str]:
    """At most `max_actions` stops at once, whatever the share of the fleet."""
    return {"RUNCTL_BREAKER_MAX_ACTIONS": str(max_actions), "RUNCTL_BREAKER_MAX_SHARE": "1.0"}


def _idle(bot: Bot, instance_ids: list[str], end: datetime) -> None:
    """A full hour of 5-minute CPU datapoints at 1 % for each machine, ending at the bot's `now`."""
    points = [(iid, end - timedelta(minutes=2.5 + 5 * k), 1.0) for iid in instance_ids for k in range(12)]
    put_metric_points(bot.aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", points)


def _cleanup(bot: Bot, count: int) -> tuple[list[str], Message]:
    ids = bot.seed(count, project="sweep")
    bot.clock.advance(hours=3)
    _idle(bot, ids, bot.clock.now())
    bot.run(ADMIN.id, "cleanup run --yes")
    assert {bot.state(i) for i in ids} == {"stopped"}
    (announcement,) = bot.posts()
    return ids, announcement


def _button_for(message: Message, instance_id: str) -> str:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("value") == instance_id:
                return str(element["action_id"])
    raise AssertionError(f"no Start it back button for {instance_id}")


def test_each_machine_a_cleanup_stopped_starts_back_once_from_its_own_button(roomy_bot: Bot) -> None:
    bot = roomy_bot
    (first, second), announcement = _cleanup(bot, 2)
    text = rendered(announcement)
    assert "Stopped 2 idle machine(s)" in text and "operation `" in text
    assert buttons(announcement) == [f"{START_BACK}:1", f"{START_BACK}:2"]
    bot.calls.reset()

    bot.press(OUTSIDER.id, announcement, _button_for(announcement, first))
    assert bot.last_reply(OUTSIDER.id).startswith(":no_entry: Only users may run `start`.")
    assert bot.calls.count("ec2.StartInstances") == 0

    bot.press(ADMIN.id, announcement, _button_for(announcement, first))
    assert bot.state(first) == "running" and bot.state(second) == "stopped"
    assert bot.calls.params("ec2.StartInstances") == [{"InstanceIds": [first]}]
    after = bot.current(announcement)
    assert [e for e in buttons(after) if e.startswith(START_BACK)] == [_button_for(announcement, second)]
    assert f"Started back by <@{ADMIN.id}>: starting {first}" in rendered(after)

    # A second click on the same button (a stale copy of the message, a double click) starts nothing.
    bot.press(ADMIN.id, announcement, _button_for(announcement, first))
    assert bot.calls.count("ec2.StartInstances") == 1
    assert bot.state(first) == "running"

    bot.press(ADMIN.id, after, _button_for(after, second))
    assert bot.state(second) == "running"
    assert bot.calls.params("ec2.StartInstances") == [{"InstanceIds": [first]}, {"InstanceIds": [second]}]
    assert not [e for e in buttons(bot.current(announcement)) if e.startswith(START_BACK)]


def test_a_redelivered_click_does_not_start_twice(roomy_bot: Bot) -> None:
    bot = roomy_bot
    (iid,), announcement = _cleanup(bot, 1)
    bot.calls.reset()

    request = block_actions_request(
        bot.standin, user=ADMIN.id, action_id=f"{START_BACK}:1", message=announcement
    )
    assert send(bot.standin, bot.url, request).status == 200
    bot.wait_idle()
    assert send(bot.standin, bot.url, request, retry_num=1).status == 200
    bot.wait_idle()
    assert bot.state(iid) == "running"
    assert bot.calls.count("ec2.StartInstances") == 1
    starts = bot.repos.operations.list_by_status(
        ["succeeded", "executing", "refused", "failed"], kind="start"
    )
    assert len(starts) == 1, "the redelivery found the operation of the first delivery"


def test_a_big_cleanup_has_a_button_per_machine_up_to_the_limit_and_says_how_many_more(
    roomy_bot: Bot,
) -> None:
    bot = roomy_bot
    count = MAX_START_BACK_BUTTONS + 3
    ids, announcement = _cleanup(bot, count)
    assert len(announcement.blocks) <= 50
    shown = [b for b in buttons(announcement) if b.startswith(START_BACK)]
    assert len(shown) == MAX_START_BACK_BUTTONS
    assert len(set(shown)) == len(shown), "action ids differ within the message"
    text = rendered(announcement)
    assert f"Stopped {count} idle machine(s)" in text
    assert "…and 3 more stopped machine(s) without a button here" in text
    bot.calls.reset()

    with_button = [i for i in ids if i in _values(announcement)]
    assert len(with_button) == MAX_START_BACK_BUTTONS
    target = with_button[-1]
    bot.press(ADMIN.id, announcement, _button_for(announcement, target))
    assert bot.calls.params("ec2.StartInstances") == [{"InstanceIds": [target]}]
    assert len([b for b in buttons(bot.current(announcement)) if b.startswith(START_BACK)]) == (
        MAX_START_BACK_BUTTONS - 1
    )


def _values(message: Message) -> list[str]:
    return [
        str(e.get("value"))
        for b in message.blocks
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    ]


APPROVE, DENY = "approval_approve", "approval_deny"


@pytest.fixture
def capped_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    """A circuit breaker that lets one cleanup stop 2 machines on its own, and two admins."""
    admins = {"RUNCTL_ADMINS": f"{ADMIN.id},{APPROVER.id}"}
    with running_bot(tmp_path, standin, aws, monkeypatch, **_breaker(2), **admins) as b:
        yield b


def test_what_the_breaker_held_waits_for_another_admin_and_is_rechecked_before_it_stops(
    capped_bot: Bot,
) -> None:
    bot = capped_bot
    ids = bot.seed(4, project="sweep")
    bot.clock.advance(hours=3)
    _idle(bot, ids, bot.clock.now())

    bot.run(ADMIN.id, "cleanup run --yes")
    stopped = [i for i in ids if bot.state(i) == "stopped"]
    held = [i for i in ids if bot.state(i) == "running"]
    assert (len(stopped), len(held)) == (2, 2)
    result, request = bot.posts()
    assert "The circuit breaker held 2 machine(s)" in rendered(result)
    assert "Approval needed: stop" in rendered(request)
    assert all(f"`{iid}`" in rendered(request) for iid in held)
    assert not any(f"`{iid}`" in rendered(request) for iid in stopped)
    assert buttons(request) == [APPROVE, DENY]

    bot.press(ADMIN.id, request, APPROVE)  # the admin who ran the cleanup
    assert "someone else must approve it" in bot.last_reply(ADMIN.id)
    bot.press(REQUESTER.id, request, APPROVE)  # the owner, but not an admin
    assert "Only admins (RUNCTL_ADMINS)" in bot.last_reply(REQUESTER.id)
    assert {bot.state(i) for i in held} == {"running"}
    assert buttons(bot.current(request)) == [APPROVE, DENY]

    # Before an admin gets to it, one of the held machines is busy again.
    busy, still_idle = held
    bot.clock.advance(minutes=10)
    now = bot.clock.now()
    _idle(bot, [still_idle], now)
    busy_points = [(busy, now - timedelta(minutes=2.5 + 5 * k), 60.0) for k in range(12)]
    put_metric_points(bot.aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", busy_points)

    bot.press(APPROVER.id, request, APPROVE)
    assert bot.state(still_idle) == "stopped"
    assert bot.state(busy) == "running"
    assert bot.calls.params("ec2.StopInstances")[-1] == {"InstanceIds": [still_idle]}
    closed = bot.current(request)
    text = rendered(closed)
    assert f"Approved by <@{APPROVER.id}>" in text
    assert f"stopped 1 held idle machine(s); left running after the re-check: {busy}" in text
    assert buttons(closed) == [f"{START_BACK}:1"]

    bot.press(REQUESTER.id, closed, _button_for(closed, still_idle))
    assert bot.state(still_idle) in ("pending", "running")
    assert bot.calls.count("ec2.StartInstances") == 1


def test_a_denied_held_batch_stops_nothing_more(capped_bot: Bot) -> None:
    bot = capped_bot
    ids = bot.seed(3, project="sweep")
    bot.clock.advance(hours=3)
    _idle(bot, ids, bot.clock.now())

    bot.run(ADMIN.id, "cleanup run --yes")
    (held,) = [i for i in ids if bot.state(i) == "running"]
    _, request = bot.posts()
    bot.press(APPROVER.id, request, DENY)
    assert bot.state(held) == "running"
    assert bot.calls.count("ec2.StopInstances") == 1  # the cleanup's own stop of the first 2
    assert buttons(bot.current(request)) == []
