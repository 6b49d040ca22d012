"""The read-only verbs end to end: list, status, cost, cleanup plan (and cleanup run), config.

Answers are private Block Kit messages that must stay inside Slack's limits whatever the fleet size.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.slack.standin import Ephemeral
from tests.support.harness import ADMIN, APPROVER, REQUESTER, Bot, rendered
from tests.support.moto import put_metric_points


def _last_private(bot: Bot, user: str) -> Ephemeral:
    found = bot.standin.ephemerals(user=user)
    assert found, f"{user} got no private answer"
    return found[-1]


def _ids_in(text: str) -> set[str]:
    return set(re.findall(r"i-[0-9a-f]{17}", text))


def _within_slack_limits(message: Ephemeral) -> None:
    assert len(message.blocks) <= 50
    for block in message.blocks:
        text = block.get("text")
        if isinstance(text, dict):
            assert len(text["text"]) <= 3000
        for item in block.get("fields", []) + block.get("elements", []):
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                assert len(item["text"]) <= 3000


def test_list_shows_mine_by_default_everyones_with_all_and_one_project(bot: Bot) -> None:
    mine_a = bot.seed(2, project="llama")
    mine_b = bot.seed(1, project="eval", instance_type="c5.xlarge")
    theirs = bot.seed(1, owner=APPROVER.id, project="llama")

    bot.run(REQUESTER.id, "list")
    mine = _last_private(bot, REQUESTER.id)
    assert _ids_in(rendered(mine)) == set(mine_a + mine_b)
    assert "Your machines" in rendered(mine)
    # 2 × t3.micro ($0.0104/h) + 1 × c5.xlarge ($0.17/h)
    assert "3 machine(s) · 3 running · $0.191/h now" in rendered(mine)

    bot.run(REQUESTER.id, "list --all")
    everyone = rendered(_last_private(bot, REQUESTER.id))
    assert _ids_in(everyone) == set(mine_a + mine_b + theirs)
    assert f"owner <@{APPROVER.id}>" in everyone

    bot.run(REQUESTER.id, "list --all --project llama")
    assert _ids_in(rendered(_last_private(bot, REQUESTER.id))) == set(mine_a + theirs)

    bot.run(REQUESTER.id, "ls --project eval")
    assert _ids_in(rendered(_last_private(bot, REQUESTER.id))) == set(mine_b)

    bot.run(REQUESTER.id, f"list --user <@{APPROVER.id}>")
    assert _ids_in(rendered(_last_private(bot, REQUESTER.id))) == set(theirs)

    bot.run(APPROVER.id, "list")
    assert _ids_in(rendered(_last_private(bot, APPROVER.id))) == set(theirs)

    bot.ec2.stop_instances(InstanceIds=mine_a[:1])
    bot.run(REQUESTER.id, "list --state stopped")
    assert _ids_in(rendered(_last_private(bot, REQUESTER.id))) == set(mine_a[:1])

    bot.run(ADMIN.id, "list")
    assert "No machines. Try `/runctl list --all`." in rendered(_last_private(bot, ADMIN.id))
    assert bot.posts() == [] and bot.mutations() == 0


def test_a_long_list_stays_within_slack_limits_and_says_how_many_more(bot: Bot) -> None:
    ids = bot.seed(60, project="sweep")
    bot.run(REQUESTER.id, "list")
    answer = _last_private(bot, REQUESTER.id)
    _within_slack_limits(answer)
    text = rendered(answer)
    shown = _ids_in(text)
    assert shown < set(ids)
    assert f"and {60 - len(shown)} more" in text
    assert "60 machine(s) · 60 running" in text, "totals count every machine, shown or not"
    rejected = [p for p in bot.standin.response_posts() if p.outcome.startswith("rejected")]
    assert rejected == []


def test_status_shows_one_machine_in_detail(bot: Bot) -> None:
    (iid,) = bot.seed(1, project="llama", instance_type="c5.xlarge", tags={"runctl:protected": "true"})
    bot.clock.advance(hours=2)
    bot.run(REQUESTER.id, f"status {iid}")
    text = rendered(_last_private(bot, REQUESTER.id))
    for part in (
        f"{iid}: running",
        "*Type*\nc5.xlarge (on-demand)",
        f"*Owner*\n<@{REQUESTER.id}>",
        "*Project*\nllama",
        "*Price*\n$0.170/h",
        "*Cost so far*\n$0.34",
        "*Protected*\nrunctl:protected=true",
        "*Training job*\nnone",
    ):
        assert part in text, f"{part!r} missing from\n{text}"

    bot.run(REQUESTER.id, "status i-0123456789abcdef0")
    assert "`i-0123456789abcdef0` was not found in us-east-1" in bot.last_reply(REQUESTER.id)

    (stranger,) = bot.seed(1, managed=False)
    bot.run(REQUESTER.id, f"status {stranger}")
    assert "not managed by runctl" in bot.last_reply(REQUESTER.id)
    assert bot.mutations() == 0


def _spent(text: str) -> float:
    match = re.search(r"\*Spent\*\n\$([0-9,.]+)", text)
    assert match, text
    return float(match.group(1).replace(",", ""))


def test_cost_adds_up_mine_the_teams_and_a_projects(bot: Bot) -> None:
    bot.seed(1, project="llama", instance_type="c5.xlarge")  # $0.17/h
    bot.seed(1, owner=APPROVER.id, project="eval", instance_type="m5.large")  # $0.096/h
    seeded = bot.clock.now()
    bot.clock.advance(hours=10)
    now = bot.clock.now()
    # What "this month" covers, even when the ten hours cross a month boundary.
    hours = (now - max(seeded, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))) / timedelta(
        hours=1
    )

    bot.run(REQUESTER.id, "cost")
    mine = rendered(_last_private(bot, REQUESTER.id))
    assert "Your cost this month" in mine
    assert abs(_spent(mine) - 0.17 * hours) <= 0.011
    assert "*Running now*\n$0.170/h" in mine

    bot.run(REQUESTER.id, "cost --all")
    team = rendered(_last_private(bot, REQUESTER.id))
    assert abs(_spent(team) - (0.17 + 0.096) * hours) <= 0.011
    assert f"<@{REQUESTER.id}>: $" in team and f"<@{APPROVER.id}>: $" in team
    assert "llama: $" in team and "eval: $" in team

    bot.run(REQUESTER.id, "cost --project eval --period today")
    project = rendered(_last_private(bot, REQUESTER.id))
    assert "cost today · eval" in project
    today = (now - max(seeded, now.replace(hour=0, minute=0, second=0, microsecond=0))) / timedelta(hours=1)
    assert abs(_spent(project) - 0.096 * today) <= 0.011
    assert bot.posts() == [] and bot.mutations() == 0


def _cpu(bot: Bot, instance_id: str, percent: float, end: datetime) -> None:
    """A full hour of 5-minute CPU datapoints ending at the bot's `now`."""
    points = [(instance_id, end - timedelta(minutes=2.5 + 5 * k), percent) for k in range(12)]
    put_metric_points(bot.aws.client("cloudwatch"), "AWS/EC2", "CPUUtilization", points)


def test_cleanup_plan_lists_what_is_proven_idle_and_cleanup_run_stops_only_that(bot: Bot) -> None:
    idle, busy, silent, protected = bot.seed(4, project="sweep")
    bot.ec2.create_tags(Resources=[protected], Tags=[{"Key": "runctl:protected", "Value": "true"}])
    bot.clock.advance(hours=3)
    now = bot.clock.now()
    _cpu(bot, idle, 1.0, now)
    _cpu(bot, busy, 55.0, now)
    _cpu(bot, protected, 1.0, now)

    bot.run(REQUESTER.id, "cleanup plan")
    plan = rendered(_last_private(bot, REQUESTER.id))
    assert "Cleanup plan: 1 idle machine(s)" in plan
    assert _ids_in(plan) == {idle}
    assert "4 managed machine(s)" in plan and "dry-run" in plan

    bot.run(REQUESTER.id, "cleanup run --yes")
    assert "Only admins may run `cleanup run`" in bot.last_reply(REQUESTER.id)

    bot.run(ADMIN.id, "cleanup run")
    assert "Nothing was stopped" in rendered(_last_private(bot, ADMIN.id))
    assert bot.mutations() == 0

    bot.run(ADMIN.id, "cleanup run --yes")
    assert bot.state(idle) == "stopped"
    assert {bot.state(i) for i in (busy, silent, protected)} == {"running"}
    assert bot.calls.params("ec2.StopInstances") == [{"InstanceIds": [idle]}]
    (announcement,) = bot.posts()
    assert f"Stopped 1 idle machine(s): `{idle}`" in rendered(announcement)


def test_config_shows_the_settings_and_no_secret(bot: Bot) -> None:
    bot.run(REQUESTER.id, "config")
    text = rendered(_last_private(bot, REQUESTER.id))
    for shown in ("aws_region", "min_age_command", "approval_expiry", "approval_cost_per_hour", "roles"):
        assert f"`{shown}`" in text
    assert "`min_age_command` = 5 min" in text
    assert "`approval_expiry` = 30 min" in text
    assert "`work_days` = mon, tue, wed, thu, fri" in text
    secrets = [
        bot.standin.signing_secret,
        bot.standin.bot_token,
        bot.settings.database_url,
        str(bot.settings.aws_endpoint_url),
        "testing",  # the fake AWS credentials
        "xoxb-",
        "xapp-",
    ]
    for secret in secrets:
        assert secret not in text, f"config shows {secret!r}"
    for user in (ADMIN.id, APPROVER.id, REQUESTER.id):
        assert user not in text, "config lists how many people hold a role, not who"
