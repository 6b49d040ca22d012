"""The role matrix end to end: every mutating verb × user, approver, admin, outsider, and a channel the bot
does not take commands in. A refusal is private, names who can do it, and leaves the cloud, SSM, the jobs
and the subscriptions untouched; an allowed command is checked for what it is for (a job started, a job
cancelled or resumed, a subscription made or removed, the idle machine stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from storage.models import TrainingJob
from tests.support.harness import ADMIN, APPROVER, OUTSIDER, REQUESTER, Bot, running_bot
from tests.support.moto import MotoServer, put_metric_points
from tests.support.slack import FLEET, OPS

OK, APPROVAL, USERS_ONLY, ADMINS_ONLY, WRONG_CHANNEL = "ok", "approval", "users", "admins", "channel"
NOT_YOURS = "not yours"  # past the Slack gate, refused by the training service's owner rule

BUCKET = "matrix-code"
CODE = f"s3://{BUCKET}/code.tar.gz"

# Verb templates over the requester's machines, in an order where each allowed step leaves the next one
# meaningful: m1 (running), m2 (stopped), m3 (running, free for a job), m4 (running job A, to cancel),
# m5 (idle for hours: what a cleanup stops), m6 (running, free: where job B resumes; B's machine is gone).
TRAIN = f"train {{m3}} {CODE} --output s3://{BUCKET}/out/matrix/"
RESUME = "resume {job_b} --on {m6}"
STEPS = (
    "create t3.micro --project matrix",
    "protect {m1}",
    "unprotect {m1}",
    "keep {m1} 4h",
    "keep {m1} never",
    "stop {m1}",
    "start {m2}",
    "terminate {m2}",
    "terminate {m2} --force",
    TRAIN,
    "cancel {job_a}",
    RESUME,
    "subscribe daily 09:00 UTC",
    "unsubscribe",
    "cleanup run --yes",
)
ADMIN_STEPS = {
    "keep {m1} never",
    "terminate {m2} --force",
    "cleanup run --yes",
    "subscribe daily 09:00 UTC",
    "unsubscribe",
}
APPROVAL_STEPS = {"terminate {m2}", "terminate {m2} --force"}
# Training runs only on your own machine and resumes only your own job (admins: anyone's); cancelling
# someone else's job is for approvers and admins (bot/services/training.py).
OWNER_STEPS = {TRAIN, RESUME}


def expected(role: str, step: str) -> str:
    if role == "channel":
        return WRONG_CHANNEL
    if role == "outsider":
        return ADMINS_ONLY if step in ADMIN_STEPS else USERS_ONLY
    if step in ADMIN_STEPS and role != "admin":
        return ADMINS_ONLY
    if step in OWNER_STEPS and role == "approver":
        return NOT_YOURS
    return APPROVAL if step in APPROVAL_STEPS else OK


ROLES = {
    "user": (REQUESTER.id, FLEET.id),
    "approver": (APPROVER.id, FLEET.id),
    "admin": (ADMIN.id, FLEET.id),
    "outsider": (OUTSIDER.id, FLEET.id),
    "channel": (REQUESTER.id, OPS.id),  # a user, in a channel outside RUNCTL_CHANNELS
}


@dataclass(frozen=True)
class Fleet:
    m1: str
    m2: str
    m3: str
    m4: str
    m5: str
    m6: str
    job_a: str
    job_b: str

    def fill(self, step: str) -> str:
        return step.format(**vars(self))


@dataclass(frozen=True)
class Snapshot:
    """Everything a command could change: the cloud, SSM, jobs, subscriptions."""

    fleet: dict[str, tuple[str, dict[str, str]]]
    mutations: int
    ssm_commands: int
    jobs: tuple[tuple[str, str, str], ...]
    subscriptions: tuple[tuple[str, str, str], ...]


def snapshot(bot: Bot) -> Snapshot:
    jobs = sorted((j.id, j.instance_id, str(j.status)) for j in bot.repos.jobs.list_for_owner(REQUESTER.id))
    jobs += sorted((j.id, j.instance_id, str(j.status)) for j in bot.repos.jobs.list_for_owner(ADMIN.id))
    subs = sorted((s.channel, s.cadence, s.at_time) for s in bot.repos.subscriptions.list_all())
    return Snapshot(
        bot.fleet(), bot.mutations(), bot.calls.count("ssm.SendCommand"), tuple(jobs), tuple(subs)
    )


def _active_on(bot: Bot, instance_id: str) -> list[TrainingJob]:
    return bot.repos.jobs.list_active([instance_id])


def what_happened(
    bot: Bot, fleet: Fleet, user: str, step: str, before: Snapshot, after: Snapshot
) -> str | None:
    """None when the allowed step did what it is for, else what is missing."""
    if step.startswith("train "):
        jobs = _active_on(bot, fleet.m3)
        if after.ssm_commands != before.ssm_commands + 1 or [j.owner for j in jobs] != [user]:
            return f"no job of {user} started on m3 ({jobs})"
    elif step.startswith("cancel "):
        sent = [e for e in bot.repos.audit.list(actor=user, limit=500) if e.action == "train:cancel"]
        if after.ssm_commands != before.ssm_commands + 1 or [e.result for e in sent] != ["sent"]:
            return f"job A was not cancelled ({sent})"
    elif step.startswith("resume "):
        jobs = _active_on(bot, fleet.m6)
        if [j.resumed_from for j in jobs] != [fleet.job_b] or after.ssm_commands != before.ssm_commands + 1:
            return f"job B was not resumed on m6 ({jobs})"
    elif step.startswith("subscribe "):
        if (FLEET.id, "daily", "09:00") not in after.subscriptions:
            return f"no daily subscription ({after.subscriptions})"
    elif step == "unsubscribe":
        if [s for s in after.subscriptions if s[0] == FLEET.id]:
            return f"the subscription is still there ({after.subscriptions})"
    elif step == "cleanup run --yes":
        if bot.state(fleet.m5) != "stopped" or bot.calls.params("ec2.StopInstances")[-1:] != [
            {"InstanceIds": [fleet.m5]}
        ]:
            return "the idle machine was not stopped (and only it)"
    elif after.mutations == before.mutations:
        return "nothing happened"
    return None


def _cpu(bot: Bot, instance_id: str, percent: float) -> None:
    """A full hour of 5-minute CPU datapoints ending at the bot's `now`."""
    end = bot.clock.now()
    points = [(instance_id, end - timedelta(minutes=2.5 + 5 * k), percent) for k in range(12)]
    put_metric_points(bot.aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", points)


def prepare(bot: Bot) -> Fleet:
    """The requester's machines and two jobs: A running on m4, B lost with its machine (resumable)."""
    s3 = bot.aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code.tar.gz", Body=b"code")
    s3.put_object(Bucket=BUCKET, Key="out/b/checkpoints/step-1.pt", Body=b"weights")
    m1, m2, m3, m4, m5, m6, m7 = bot.seed(7)
    bot.ec2.stop_instances(InstanceIds=[m2])
    bot.clock.advance(hours=3)
    bot.run(REQUESTER.id, f"train {m4} {CODE}")
    bot.run(REQUESTER.id, f"train {m7} {CODE} --output s3://{BUCKET}/out/b/")
    (job_a,) = [j.id for j in _active_on(bot, m4)]
    (job_b,) = [j.id for j in _active_on(bot, m7)]
    bot.ec2.terminate_instances(InstanceIds=[m7])
    bot.application.scheduled.training.poll()
    lost = bot.repos.jobs.get(job_b)
    assert lost is not None and lost.status not in ("starting", "running"), lost
    _cpu(bot, m5, 1.0)
    bot.calls.reset()
    return Fleet(m1, m2, m3, m4, m5, m6, job_a, job_b)


@pytest.fixture
def fleet_only_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    # The requester runs six machines here; a seventh (create, start) stays within their limit.
    with running_bot(
        tmp_path, standin, aws, monkeypatch, RUNCTL_CHANNELS=FLEET.id, RUNCTL_USER_MAX_INSTANCES="10"
    ) as b:
        yield b


@pytest.mark.parametrize("role", list(ROLES))
def test_every_mutating_verb_for_every_role(fleet_only_bot: Bot, role: str) -> None:
    bot = fleet_only_bot
    user, channel = ROLES[role]
    fleet = prepare(bot)

    everyone = ", ".join(f"<@{u}>" for u in sorted((ADMIN.id, APPROVER.id, REQUESTER.id)))
    refusals = {
        USERS_ONLY: "Only users may run `{verb}`. Ask one of " + everyone + ".",
        ADMINS_ONLY: "Only admins may run `{verb}`. Ask one of <@" + ADMIN.id + ">.",
        WRONG_CHANNEL: f"I only take commands in <#{FLEET.id}> (or in a direct message with me).",
    }
    not_yours = {
        STEPS[
            9
        ]: f"Only the owner of `{fleet.m3}` (<@{REQUESTER.id}>) or an admin can run a training job on it.",
        RESUME: (f"Only the job's owner (<@{REQUESTER.id}>) or an admin can resume `{fleet.job_b}`."),
    }
    named = {
        "keep {m1} never": "keep … never",
        "terminate {m2} --force": "terminate --force",
        "cleanup run --yes": "cleanup run",
    }

    problems: list[str] = []
    for step in STEPS:
        text = fleet.fill(step)
        want = expected(role, step)
        before = snapshot(bot)
        before_posts = len(bot.posts(channel))
        before_replies = len(bot.replies(user))
        bot.run(user, text, channel=channel)
        replies = bot.replies(user)[before_replies:]
        posts = bot.posts(channel)[before_posts:]
        after = snapshot(bot)
        if want in refusals:
            verb = named.get(step, step.split()[0])
            refusal = refusals[want].format(verb=verb)
            if replies != [f":no_entry: {refusal}"]:
                problems.append(f"{role} `{text}`: expected the refusal {refusal!r}, got {replies}")
            if after != before or posts:
                problems.append(f"{role} `{text}`: a refused command changed something")
        elif want == NOT_YOURS:
            if not any(not_yours[step] in r for r in replies):
                problems.append(f"{role} `{text}`: expected {not_yours[step]!r}, got {replies}")
            if after != before:
                problems.append(f"{role} `{text}`: a refused command changed something")
        elif want == APPROVAL:
            if after.mutations != before.mutations:
                problems.append(f"{role} `{text}`: acted before the approval")
            if not any("Approval needed: terminate" in m.text for m in posts):
                problems.append(f"{role} `{text}`: no approval request was posted ({replies})")
        else:
            missing = what_happened(bot, fleet, user, step, before, after)
            if missing:
                problems.append(f"{role} `{text}`: {missing} ({replies})")
    assert not problems, "\n".join(problems)

    audit = bot.repos.audit.list(actor=user, limit=500)
    denials = [e for e in audit if e.result == "denied"]
    refused_steps = [s for s in STEPS if expected(role, s) in (USERS_ONLY, ADMINS_ONLY, WRONG_CHANNEL)]
    assert len(denials) == len(refused_steps), "every refusal at the Slack gate is in the audit log"


def test_read_only_verbs_stay_open_to_outsiders_but_not_outside_the_channel(fleet_only_bot: Bot) -> None:
    bot = fleet_only_bot
    (iid,) = bot.seed(1)
    bot.run(OUTSIDER.id, "list --all")
    assert iid in bot.last_reply(OUTSIDER.id)
    bot.run(OUTSIDER.id, f"status {iid}")
    assert f"{iid}: running" in bot.last_reply(OUTSIDER.id)
    bot.run(REQUESTER.id, "list", channel=OPS.id)
    assert bot.last_reply(REQUESTER.id).startswith(":no_entry: I only take commands in")
    bot.run(REQUESTER.id, "help", channel=OPS.id)
    assert bot.last_reply(REQUESTER.id).startswith(":no_entry: I only take commands in")
