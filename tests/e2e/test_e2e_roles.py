"""The role matrix end to end: every mutating verb × user, approver, admin, outsider, and a channel the bot
does not take commands in. A refusal is private, names who can do it, and leaves the cloud untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.harness import ADMIN, APPROVER, OUTSIDER, REQUESTER, Bot, running_bot
from tests.support.moto import MotoServer
from tests.support.slack import FLEET, OPS

OK, APPROVAL, USERS_ONLY, ADMINS_ONLY, WRONG_CHANNEL = "ok", "approval", "users", "admins", "channel"

# Verb templates over two machines of the requester's, m1 (running) and m2 (stopped), in an order where
# each allowed step leaves the next one meaningful.
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
    "cleanup run --yes",
)
ADMIN_STEPS = {"keep {m1} never", "terminate {m2} --force", "cleanup run --yes"}
APPROVAL_STEPS = {"terminate {m2}", "terminate {m2} --force"}


def expected(role: str, step: str) -> str:
    if role == "channel":
        return WRONG_CHANNEL
    if role == "outsider":
        return ADMINS_ONLY if step in ADMIN_STEPS else USERS_ONLY
    if step in ADMIN_STEPS and role != "admin":
        return ADMINS_ONLY
    return APPROVAL if step in APPROVAL_STEPS else OK


ROLES = {
    "user": (REQUESTER.id, FLEET.id),
    "approver": (APPROVER.id, FLEET.id),
    "admin": (ADMIN.id, FLEET.id),
    "outsider": (OUTSIDER.id, FLEET.id),
    "channel": (REQUESTER.id, OPS.id),  # a user, in a channel outside RUNCTL_CHANNELS
}


@pytest.fixture
def fleet_only_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    with running_bot(tmp_path, standin, aws, monkeypatch, RUNCTL_CHANNELS=FLEET.id) as b:
        yield b


@pytest.mark.parametrize("role", list(ROLES))
def test_every_mutating_verb_for_every_role(fleet_only_bot: Bot, role: str) -> None:
    bot = fleet_only_bot
    user, channel = ROLES[role]
    m1, m2 = bot.seed(2)
    bot.ec2.stop_instances(InstanceIds=[m2])
    bot.clock.advance(minutes=10)
    bot.calls.reset()

    everyone = ", ".join(f"<@{u}>" for u in sorted((ADMIN.id, APPROVER.id, REQUESTER.id)))
    refusals = {
        USERS_ONLY: "Only users may run `{verb}`. Ask one of " + everyone + ".",
        ADMINS_ONLY: "Only admins may run `{verb}`. Ask one of <@" + ADMIN.id + ">.",
        WRONG_CHANNEL: f"I only take commands in <#{FLEET.id}> (or in a direct message with me).",
    }
    named = {
        "keep {m1} never": "keep … never",
        "terminate {m2} --force": "terminate --force",
        "cleanup run --yes": "cleanup run",
    }

    problems: list[str] = []
    for step in STEPS:
        text = step.format(m1=m1, m2=m2)
        want = expected(role, step)
        before_fleet, before_calls = bot.fleet(), bot.mutations()
        before_posts = len(bot.posts(channel))
        before_replies = len(bot.replies(user))
        bot.run(user, text, channel=channel)
        replies = bot.replies(user)[before_replies:]
        posts = bot.posts(channel)[before_posts:]
        if want in refusals:
            verb = named.get(step, step.split()[0])
            refusal = refusals[want].format(verb=verb)
            if replies != [f":no_entry: {refusal}"]:
                problems.append(f"{role} `{text}`: expected the refusal {refusal!r}, got {replies}")
            if bot.fleet() != before_fleet or bot.mutations() != before_calls or posts:
                problems.append(f"{role} `{text}`: a refused command changed something")
        elif want == APPROVAL:
            if bot.mutations() != before_calls:
                problems.append(f"{role} `{text}`: acted before the approval")
            if not any("Approval needed: terminate" in m.text for m in posts):
                problems.append(f"{role} `{text}`: no approval request was posted ({replies})")
        elif bot.mutations() == before_calls and step != "cleanup run --yes":
            problems.append(f"{role} `{text}`: nothing happened ({replies})")
    assert not problems, "\n".join(problems)

    audit = bot.repos.audit.list(actor=user, limit=500)
    denials = [e for e in audit if e.result == "denied"]
    refused_steps = [s for s in STEPS if expected(role, s) not in (OK, APPROVAL)]
    assert len(denials) == len(refused_steps), "every refusal is in the audit log"


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
