"""The verbs that change machines, end to end: create, stop, start, terminate, protect, unprotect, keep.

Every assertion about the cloud reads moto back with boto3; every assertion about Slack reads the stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from storage.models import TrainingJob
from tests.support.harness import (
    ADMIN,
    APPROVER,
    OUTSIDER,
    REQUESTER,
    Bot,
    buttons,
    rendered,
    running_bot,
)
from tests.support.moto import MotoServer

MOTO_AMI = "ami-0d27e0fb3bac4d724"
APPROVE, DENY, START_BACK = "approval_approve", "approval_deny", "start_it_back"


@pytest.fixture
def strict_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    """A bot whose approval threshold is below any machine's price: every launch needs an approver."""
    with running_bot(tmp_path, standin, aws, monkeypatch, RUNCTL_APPROVAL_COST_PER_HOUR="0.001") as b:
        yield b


def _only_instance(bot: Bot) -> str:
    fleet = bot.fleet()
    assert len(fleet) == 1, fleet
    return next(iter(fleet))


# --- create -----------------------------------------------------------------------------------------


def test_create_shows_the_estimate_first_then_launches_tagged_at_launch(bot: Bot) -> None:
    bot.run(REQUESTER.id, "create t3.micro --project llama")

    posted = bot.standin.calls("chat.postMessage")
    assert len(posted) == 1, "one message per launch, updated in place"
    first = json.dumps(posted[0].params)
    assert "estimate $0.010/h (on-demand)" in first and "$0.25/day" in first

    iid = _only_instance(bot)
    assert bot.state(iid) in ("pending", "running")
    tags = bot.tags(iid)
    ops = bot.repos.operations.list_by_status(["succeeded"], kind="launch")
    assert len(ops) == 1
    op = ops[0]
    assert tags["runctl:managed"] == "true"
    assert tags["runctl:owner"] == REQUESTER.id
    assert tags["runctl:project"] == "llama"
    assert tags["runctl:request"] == op.id
    assert tags["Name"] == f"runctl-{REQUESTER.id}-llama-{op.id[:8]}"
    created = datetime.fromisoformat(tags["runctl:created"])
    assert created.tzinfo is not None and abs(created - bot.clock.now()) < timedelta(minutes=1)
    # Written at launch (TagSpecifications, with the operation id as ClientToken), never afterwards.
    assert bot.calls.count("ec2.CreateTags") == 0
    run = bot.calls.params("ec2.RunInstances")
    assert len(run) == 1 and run[0]["ClientToken"] == op.id
    launched_tags = {t["Key"] for spec in run[0]["TagSpecifications"] for t in spec["Tags"]}
    assert {"runctl:managed", "runctl:owner", "runctl:project", "runctl:created"} <= launched_tags

    (message,) = bot.posts()
    text = rendered(bot.current(message))
    assert f"launched {iid}" in text and "llama" in text and "$0.010/h" in text
    assert bot.standin.calls("chat.update"), "the launching message was updated in place"
    assert bot.repos.resources.get(iid) is not None, "the database knows the machine at once"


def test_create_over_the_cost_threshold_waits_for_an_approver(bot: Bot) -> None:
    # moto publishes no Deep Learning AMI, so the request names an image moto has.
    bot.run(REQUESTER.id, f"create p4d.24xlarge --project big --ami {MOTO_AMI}")

    assert bot.fleet() == {}, "nothing launches before the approval"
    request = bot.with_button(APPROVE)
    text = rendered(request)
    assert "Approval needed: launch" in text
    assert "p4d.24xlarge" in text and "$32.77/h" in text
    assert "above the $5.00/h approval threshold" in text
    assert buttons(request) == [APPROVE, DENY]
    assert len(bot.posts()) == 1, "the launch message itself becomes the approval request"
    for approver in (APPROVER.id, ADMIN.id):
        dms = bot.standin.dms(approver)
        assert len(dms) == 1 and "Approval needed" in dms[0].text

    bot.press(APPROVER.id, request, APPROVE)
    iid = _only_instance(bot)
    assert bot.tags(iid)["runctl:owner"] == REQUESTER.id, "the requester owns it, not the approver"
    assert bot.describe(iid)["InstanceType"] == "p4d.24xlarge"
    closed = bot.current(request)
    assert buttons(closed) == []
    assert f"Approved by <@{APPROVER.id}>" in rendered(closed)
    assert f"launched {iid}" in rendered(closed)
    assert "asked to *launch* a new `p4d.24xlarge`" in rendered(closed)


def test_denied_launch_launches_nothing(strict_bot: Bot) -> None:
    bot = strict_bot
    bot.run(REQUESTER.id, "create t3.micro")
    request = bot.with_button(DENY)
    assert "is above the $0.00/h approval threshold" in rendered(request)
    bot.press(APPROVER.id, request, DENY)
    assert bot.fleet() == {}
    closed = bot.current(request)
    assert buttons(closed) == []
    assert f"Denied by <@{APPROVER.id}>" in rendered(closed)
    assert bot.calls.count("ec2.RunInstances") == 0
    op = bot.repos.operations.list_by_status(["cancelled"], kind="launch")
    assert len(op) == 1


# --- stop / start -----------------------------------------------------------------------------------


def test_stop_judges_safety_first_and_start_it_back_starts_the_machine(bot: Bot) -> None:
    (iid,) = bot.seed(1)

    bot.run(REQUESTER.id, f"stop {iid}")
    refusal = bot.last_reply(REQUESTER.id)
    assert "nothing younger than 5 min is stopped without --force" in refusal
    assert bot.state(iid) == "running" and bot.calls.count("ec2.StopInstances") == 0
    assert bot.posts() == [], "a refusal is private"

    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f'stop {iid} --reason "done for today"')
    assert bot.state(iid) == "stopped"
    stop_message = bot.with_button(START_BACK)
    assert f"stopping {iid}" in rendered(stop_message)

    bot.press(OUTSIDER.id, stop_message, START_BACK)
    assert bot.last_reply(OUTSIDER.id).startswith(":no_entry: Only users may run `start`.")
    assert bot.state(iid) == "stopped"

    bot.press(REQUESTER.id, stop_message, START_BACK)
    assert bot.state(iid) == "running"
    assert bot.calls.count("ec2.StartInstances") == 1
    after = bot.current(stop_message)
    assert START_BACK not in buttons(after), "a used Start it back button is taken away"
    assert f"Started back by <@{REQUESTER.id}>" in rendered(after)


def test_stop_acts_on_what_the_rules_allow_and_says_what_it_skipped(bot: Bot) -> None:
    free, protected = bot.seed(2)
    bot.ec2.create_tags(Resources=[protected], Tags=[{"Key": "runctl:protected", "Value": "true"}])
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"stop {free} {protected}")
    assert bot.state(free) == "stopped" and bot.state(protected) == "running"
    message = bot.with_button(START_BACK)
    text = rendered(message)
    assert f"stopping {free}; skipped: {protected} is protected by tag runctl:protected=true" in text
    bot.press(REQUESTER.id, message, START_BACK)
    assert bot.calls.params("ec2.StartInstances") == [{"InstanceIds": [free]}]


def test_start_and_stop_refuse_what_the_state_does_not_allow(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"start {iid}")
    assert "running" in bot.last_reply(REQUESTER.id)
    assert bot.calls.count("ec2.StartInstances") == 0

    bot.ec2.stop_instances(InstanceIds=[iid])
    bot.run(REQUESTER.id, f"stop {iid}")
    assert "stopped" in bot.last_reply(REQUESTER.id)
    assert bot.calls.count("ec2.StopInstances") == 0

    bot.run(REQUESTER.id, f"start {iid}")
    assert bot.state(iid) == "running"
    (message,) = bot.posts()
    assert f"starting {iid}" in rendered(message)

    bot.run(REQUESTER.id, "start i-0123456789abcdef0")
    assert "i-0123456789abcdef0 was not found" in bot.last_reply(REQUESTER.id)


def test_protected_machine_needs_an_admins_force_to_stop(bot: Bot) -> None:
    (iid,) = bot.seed(1, tags={"runctl:protected": "true"})
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"stop {iid}")
    assert "protected" in bot.last_reply(REQUESTER.id)
    bot.run(REQUESTER.id, f"stop {iid} --force")
    assert "--force" in bot.last_reply(REQUESTER.id)
    assert bot.state(iid) == "running"

    bot.run(ADMIN.id, f"stop {iid} --force --reason maintenance")
    assert bot.state(iid) == "stopped"


# --- terminate --------------------------------------------------------------------------------------


def test_terminate_waits_for_someone_else_and_shows_what_is_at_stake(bot: Bot) -> None:
    (iid,) = bot.seed(1, instance_type="c5.xlarge", project="eval")
    bot.clock.advance(hours=3)

    bot.run(REQUESTER.id, f'terminate {iid} --reason "experiment finished"')
    assert bot.state(iid) == "running"
    request = bot.with_button(APPROVE)
    text = rendered(request)
    assert "Approval needed: terminate" in text
    assert f"owner <@{REQUESTER.id}>" in text
    assert "age 3 h" in text
    assert "cost so far $0.51" in text  # 3 h of c5.xlarge at $0.17/h

    bot.press(REQUESTER.id, request, APPROVE)
    assert "someone else must approve it" in bot.last_reply(REQUESTER.id)
    assert bot.state(iid) == "running"
    assert buttons(bot.current(request)) == [APPROVE, DENY]

    bot.press(APPROVER.id, request, APPROVE)
    assert bot.state(iid) == "terminated"
    closed = bot.current(request)
    assert buttons(closed) == []
    assert f"Approved by <@{APPROVER.id}>" in rendered(closed)
    assert f"terminating {iid}" in rendered(closed)


def test_an_admins_terminate_also_needs_a_second_person(bot: Bot) -> None:
    (iid,) = bot.seed(1, owner=ADMIN.id)
    bot.clock.advance(minutes=10)
    bot.run(ADMIN.id, f"terminate {iid}")
    request = bot.with_button(APPROVE)
    bot.press(ADMIN.id, request, APPROVE)
    assert "someone else must approve it" in bot.last_reply(ADMIN.id)
    assert bot.state(iid) == "running"
    bot.press(APPROVER.id, request, APPROVE)
    assert bot.state(iid) == "terminated"


def _running_job(bot: Bot, iid: str) -> None:
    bot.repos.jobs.create(
        TrainingJob(
            id="job-3f9a1c2b7d4e",
            instance_id=iid,
            owner=REQUESTER.id,
            status="running",
            code_uri="s3://ml-code/eval.tar.gz",
            entry="train.py",
            started_at=bot.clock.now(),
        )
    )


def test_terminate_force_is_for_admins_and_still_needs_the_approval(bot: Bot) -> None:
    # Protected, younger than 5 minutes and training: only an admin's --force gets it to an approver.
    (iid,) = bot.seed(1, tags={"runctl:protected": "true"})
    _running_job(bot, iid)

    bot.run(REQUESTER.id, f"terminate {iid} --force")
    refusal = bot.last_reply(REQUESTER.id)
    assert "Only admins may run `terminate --force`" in refusal and f"<@{ADMIN.id}>" in refusal

    bot.run(ADMIN.id, f"terminate {iid}")
    assert "protected" in bot.last_reply(ADMIN.id)
    assert bot.posts() == [], "a request the rules refuse never becomes an approval"

    bot.run(ADMIN.id, f"terminate {iid} --force")
    request = bot.with_button(APPROVE)
    text = rendered(request)
    assert "requested with `--force`" in text
    assert "job `job-3f9a1c2b7d4e` running" in text, "the approver sees the training job at stake"
    assert bot.state(iid) == "running"
    bot.press(APPROVER.id, request, APPROVE)
    assert bot.state(iid) == "terminated"
    assert bot.calls.count("ec2.TerminateInstances") == 1


# --- protect / unprotect / keep ---------------------------------------------------------------------


def test_protect_unprotect_and_keep_write_the_tags_on_the_machine(bot: Bot) -> None:
    (iid,) = bot.seed(1)

    bot.run(REQUESTER.id, f'protect {iid} --reason "long eval"')
    assert bot.tags(iid)["runctl:protected"] == "true"
    row = bot.repos.resources.get(iid)
    assert row is not None and row.tags.get("runctl:protected") == "true"

    bot.run(REQUESTER.id, f"keep {iid} 4h")
    until = datetime.fromisoformat(bot.tags(iid)["runctl:keep-until"])
    assert abs(until - (bot.clock.now() + timedelta(hours=4))) < timedelta(minutes=1)
    assert until.tzinfo is not None and until.utcoffset() == timedelta(0)

    day = (bot.clock.now() + timedelta(days=10)).date()
    bot.run(REQUESTER.id, f"keep {iid} {day.isoformat()}")
    assert bot.tags(iid)["runctl:keep-until"] == f"{day.isoformat()}T00:00:00Z"

    bot.run(REQUESTER.id, f"keep {iid} never")
    refusal = bot.last_reply(REQUESTER.id)
    assert "Only admins may run `keep … never`" in refusal and f"<@{ADMIN.id}>" in refusal
    assert bot.tags(iid)["runctl:keep-until"] == f"{day.isoformat()}T00:00:00Z"

    bot.run(ADMIN.id, f"keep {iid} never")
    assert bot.tags(iid)["runctl:keep-until"] == "never"

    bot.run(REQUESTER.id, f"unprotect {iid}")
    assert "runctl:protected" not in bot.tags(iid)

    actions = [(e.action, e.result) for e in bot.repos.audit.list(target=iid)]
    for action in ("protect", "keep", "unprotect"):
        assert (action, "succeeded") in actions, f"{action} is not in the audit log"
    messages = [rendered(m) for m in bot.posts()]
    assert any(f"protected {iid}" in m for m in messages)
    assert any("kept indefinitely" in m for m in messages)


def test_protect_refuses_unknown_and_unmanaged_machines(bot: Bot) -> None:
    (unmanaged,) = bot.seed(1, managed=False, tags={"team": "infra"})
    bot.run(REQUESTER.id, f"protect {unmanaged}")
    assert "not managed by runctl" in bot.last_reply(REQUESTER.id)
    bot.run(REQUESTER.id, "protect i-0123456789abcdef0")
    assert "i-0123456789abcdef0 was not found" in bot.last_reply(REQUESTER.id)
    assert bot.mutations() == 0
    assert bot.tags(unmanaged) == {"runctl:owner": REQUESTER.id, "runctl:project": "demo", "team": "infra"}
