"""Cost alerts beyond the per-machine ones: a user's day, the team's month, and a DM that fails.

Machines are launched in moto at real time and the bot's clock is moved months ahead, so each machine has
been running since long before the periods measured here: a period's cost is its hours times the price.
Each figure is read back from the message and compared with the price table (to the cent, allowing for
the seconds of real time a run takes).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.integration.scheduler.conftest import TEAM, BotFactory, launch, move_to, scheduler_for, texts
from tests.support.slack import BOB, CAROL

MONDAY = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)
G5 = Decimal("1.006")  # g5.xlarge, us-east-1, the shipped price table
T3 = Decimal("0.0832")  # t3.large
ONLY_USER_DAY = {
    "RUNCTL_ALERT_MACHINE_COST": "0",
    "RUNCTL_ALERT_MACHINE_HOURS": "0",
    "RUNCTL_ALERT_USER_DAILY_COST": "25",
}
ONLY_TEAM_MONTH = {
    "RUNCTL_ALERT_MACHINE_COST": "0",
    "RUNCTL_ALERT_MACHINE_HOURS": "0",
    "RUNCTL_ALERT_USER_DAILY_COST": "0",
    "RUNCTL_TEAM_MONTHLY_BUDGET": "350",
}


def dollars(pattern: str, text: str) -> Decimal:
    """The amount captured by `pattern` (one `$(...)` group) in `text`."""
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in {text!r}"
    return Decimal(found.group(1).replace(",", ""))


def close_to(amount: Decimal, hours: float, rate: Decimal) -> bool:
    """`amount` is `hours` at `rate`, give or take a cent (the run took a few real seconds)."""
    return abs(amount - Decimal(str(hours)) * rate) <= Decimal("0.01")


def test_a_users_daily_cost_alert_is_sent_once_a_day(make_bot: BotFactory) -> None:
    with make_bot(**ONLY_USER_DAY) as bot:
        launch(bot)
        launch(bot)
        launch(bot, owner=CAROL.id)
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")

        move_to(bot, MONDAY)  # 15 h into the day: Bob's two machines cost $30.18, Carol's one $15.09
        assert runtime.run("alerts")
        (first,) = bot.standin.dms(BOB.id)
        assert "Your machines have cost $" in first.text and "today (alert at $25.00)" in first.text
        assert close_to(dollars(r"cost \$([\d,.]+) today", first.text), 15 * 2, G5)
        assert bot.standin.dms(CAROL.id) == []  # under the threshold
        assert bot.standin.messages(TEAM) == []  # a user's alert is theirs alone

        bot.clock.advance(minutes=5)
        assert runtime.run("alerts")  # the job ran; the crossing was already told
        bot.clock.advance(hours=8)
        assert runtime.run("alerts")
        assert len(bot.standin.dms(BOB.id)) == 1

        move_to(bot, MONDAY + timedelta(hours=23))  # Tuesday 14:00: a new day, crossed again at $28.17
        assert runtime.run("alerts")
        first_again, second = bot.standin.dms(BOB.id)
        assert first_again.ts == first.ts
        assert close_to(dollars(r"cost \$([\d,.]+) today", second.text), 14 * 2, G5)
        assert bot.standin.dms(CAROL.id) == []
        assert runtime.stats["alerts"].last_result == [f"alert:user-day:{BOB.id}:2027-03-16"]


def test_the_team_budget_is_posted_to_the_team_channel_once_a_month(make_bot: BotFactory) -> None:
    with make_bot(**ONLY_TEAM_MONTH) as bot:
        launch(bot)
        launch(bot, owner=CAROL.id, itype="t3.large")
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")

        move_to(bot, MONDAY)  # 14 days 15 h into March: 351 h of g5.xlarge + t3.large = $382.31
        assert runtime.run("alerts")
        (alert,) = bot.standin.messages(TEAM)
        assert ":rotating_light: The team has spent $" in alert.text
        assert "this month, over the budget of $350.00." in alert.text
        assert close_to(dollars(r"spent \$([\d,.]+) this month", alert.text), 351, G5 + T3)
        assert bot.standin.dms(BOB.id) == [] and bot.standin.dms(CAROL.id) == []  # the team's, not theirs

        bot.clock.advance(minutes=5)
        assert runtime.run("alerts")
        move_to(bot, datetime(2027, 3, 31, 23, 0, tzinfo=UTC))
        assert runtime.run("alerts")
        assert len(bot.standin.messages(TEAM)) == 1  # once for March, however far over

        move_to(bot, datetime(2027, 4, 10, tzinfo=UTC))  # April starts from nothing: 216 h = $235.27
        assert runtime.run("alerts")
        assert len(bot.standin.messages(TEAM)) == 1
        move_to(bot, datetime(2027, 4, 14, 12, 0, tzinfo=UTC))  # 324 h = $352.90: over again
        assert runtime.run("alerts")
        march, april = bot.standin.messages(TEAM)
        assert march.ts == alert.ts
        assert close_to(dollars(r"spent \$([\d,.]+) this month", april.text), 324, G5 + T3)
        assert runtime.stats["alerts"].last_result == ["alert:team-month:2027-04"]


def test_an_owners_alerts_come_in_one_dm_and_a_failed_dm_is_sent_again(make_bot: BotFactory) -> None:
    env = {"RUNCTL_ALERT_MACHINE_COST": "20", "RUNCTL_ALERT_MACHINE_HOURS": "24"}
    with make_bot(**env, RUNCTL_ALERT_USER_DAILY_COST="16") as bot:
        bob_machines = [launch(bot), launch(bot, itype="t3.large")]
        carols = launch(bot, owner=CAROL.id)
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")
        move_to(bot, MONDAY)

        # Slack refuses the run's first DM: that owner's alerts are given back, the other owner's stand.
        bot.standin.fail_next("chat.postMessage", status=200, error="fatal_error")
        assert runtime.run("alerts")
        assert sorted([len(bot.standin.dms(BOB.id)), len(bot.standin.dms(CAROL.id))]) == [0, 1]

        bot.clock.advance(minutes=5)
        assert runtime.run("alerts")
        (to_bob,) = bot.standin.dms(BOB.id)
        (to_carol,) = bot.standin.dms(CAROL.id)
        bob_said = texts([to_bob])
        # Bob: two machines over $20 and 24 h, and his day ($16.34) over $16, in one message.
        assert to_bob.text.startswith("*5 cost alerts:*")
        for iid in bob_machines:
            assert f"`{iid}` " in bob_said and f"/runctl stop {iid}" in bob_said
        assert bob_said.count("has cost $") == 2 and bob_said.count("has been running") == 2
        assert "Your machines have cost $" in bob_said
        # Carol: one g5.xlarge, $15.09 today (under $16): the machine's two alerts only.
        carol_said = texts([to_carol])
        assert to_carol.text.startswith("*2 cost alerts:*")
        assert f"`{carols}` (g5.xlarge) has cost $" in carol_said and "Your machines" not in carol_said

        bot.clock.advance(minutes=5)
        assert runtime.run("alerts")
        assert len(bot.standin.dms(BOB.id)) == 1 and len(bot.standin.dms(CAROL.id)) == 1
