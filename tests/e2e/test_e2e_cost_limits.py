"""Money shown within its limits: `/runctl cost --all` for a team bigger than the breakdown shows (the
biggest owners and projects by name, the rest in one "and N more" line with what they cost, inside Slack's
limits), and a launch estimate when the price is unknown ("price unknown", never "$0.00/day").
"""

from __future__ import annotations

import re
from decimal import Decimal

from bot.slack.standin import Ephemeral
from bot.views.fleet import MAX_COST_ROWS
from providers import tags as tagschema
from tests.support.harness import REQUESTER, Bot, rendered
from tests.support.moto import run_instances

OWNERS = 14
# Fallback-table prices, each distinct, so the ranking is the same on every run.
TYPES = ("m5.4xlarge", "c5.4xlarge", "m5.2xlarge", "c5.2xlarge", "m5.xlarge", "c5.xlarge", "m5.large")


def _within_slack_limits(message: Ephemeral) -> None:
    assert len(message.blocks) <= 50
    for block in message.blocks:
        text = block.get("text")
        if isinstance(text, dict):
            assert len(text["text"]) <= 3000
        for item in block.get("fields", []) + block.get("elements", []):
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                assert len(item["text"]) <= 3000


def _field(message: Ephemeral, label: str) -> str:
    for block in message.blocks:
        for item in block.get("fields", []):
            if item["text"].startswith(f"*{label}*"):
                return str(item["text"])
    raise AssertionError(f"no {label} field in {rendered(message)}")


def _dollars(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_cost_breakdowns_name_the_top_spenders_and_sum_up_the_rest(bot: Bot) -> None:
    # A long project name: names are clipped, the breakdown still fits and still ends with the rest.
    long_project = "p-" + "x" * 300
    for k in range(OWNERS):
        project = long_project if k == OWNERS - 1 else f"proj-{k:02d}"
        tags = {tagschema.MANAGED: "true", tagschema.OWNER: f"U{k:09d}", tagschema.PROJECT: project}
        run_instances(bot.ec2, 1, tags=tags, instance_type=TYPES[k % len(TYPES)])
    bot.application.services.tracking.reconcile()
    bot.clock.advance(hours=10)

    bot.run(REQUESTER.id, "cost --all")

    (answer,) = bot.standin.ephemerals(user=REQUESTER.id)
    _within_slack_limits(answer)
    spent_shown = re.search(r"\*Spent\*\n\$([0-9,.]+)", rendered(answer))
    assert spent_shown, rendered(answer)
    spent = _dollars(spent_shown.group(1))
    assert spent > 0
    for label, noun in (("By owner", "owner(s)"), ("By project", "project(s)")):
        lines = _field(answer, label).split("\n")[1:]
        named, rest = lines[:-1], lines[-1]
        assert len(named) == MAX_COST_ROWS, lines
        match = re.fullmatch(rf"_…and (\d+) more {re.escape(noun)}: \$([0-9,.]+)_", rest)
        assert match, f"{label} does not end with the rest: {rest!r}"
        assert int(match.group(1)) == OWNERS - MAX_COST_ROWS
        amounts = [_dollars(line.rsplit("$", 1)[1]) for line in named]
        assert amounts == sorted(amounts, reverse=True), "the biggest spenders are the ones named"
        # What is named plus the rest adds up to the total (each figure is rounded to the cent).
        assert abs(sum(amounts) + _dollars(match.group(2)) - spent) <= Decimal("0.01") * (MAX_COST_ROWS + 2)
        assert min(amounts) >= _dollars(match.group(2)) / (OWNERS - MAX_COST_ROWS)
    assert bot.posts() == [] and bot.mutations() == 0


def test_a_breakdown_that_fits_has_no_rest_line(bot: Bot) -> None:
    bot.seed(1, project="llama")
    bot.clock.advance(hours=2)
    bot.run(REQUESTER.id, "cost --all")
    (answer,) = bot.standin.ephemerals(user=REQUESTER.id)
    assert _field(answer, "By owner").startswith(f"*By owner*\n<@{REQUESTER.id}>: $")
    assert "more" not in _field(answer, "By owner") and "more" not in _field(answer, "By project")
    assert _field(answer, "By project").startswith("*By project*\nllama: $")


def test_a_launch_with_no_known_price_says_so_without_made_up_dollars(bot: Bot) -> None:
    """a1.medium is in neither the Pricing API (off here) nor the shipped table."""
    bot.run(REQUESTER.id, "create a1.medium --project llama")

    (launching,) = [
        c for c in bot.standin.calls() if c.method == "chat.postMessage" and "Launching" in str(c.params)
    ]
    first = str(launching.params)
    assert "estimate price unknown. Working…" in first
    request = rendered(bot.current(bot.with_button("approval_approve")))
    assert "*Estimate*\nprice unknown\n" in request
    for text in (first, request):
        assert "$" not in text, f"a made-up dollar figure: {text}"
    assert bot.calls.count("ec2.RunInstances") == 0, "an unknown price waits for an approver"
