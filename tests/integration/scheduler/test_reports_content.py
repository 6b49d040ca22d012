"""The scheduled report says what the seeded fleet really is: rate, costs, breakdowns, savings, chart.

Machines are launched in moto at real time and the bot's clock is moved months ahead, so they have run
since long before the report's week: a period's cost is its hours times the price. The bot stops one idle
machine itself (the real idle cycle), which is what the report counts as saved. Figures are read back from
the posted message and checked against the price table within the few real seconds a run takes.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from PIL import Image

from bot.services.costs import BOT_STOP_REASON
from tests.integration.scheduler.conftest import (
    TEAM,
    BotFactory,
    cpu,
    launch,
    move_to,
    scheduler_for,
    state_of,
)
from tests.support.harness import rendered
from tests.support.moto import run_instances
from tests.support.slack import BOB, CAROL

MONDAY = datetime(2027, 3, 15, 15, 0, tzinfo=UTC)  # 11:00 in New York: Bob's working hours
DAY_START = MONDAY.replace(hour=0)  # also the week's start: the report's day and week are the same
G5 = Decimal("1.006")  # g5.xlarge, us-east-1, the shipped price table
T3 = Decimal("0.0832")  # t3.large
CENT = Decimal("0.005")  # money() rounds to the cent


def hours(since: datetime, until: datetime) -> Decimal:
    return Decimal(str((until - since).total_seconds())) / 3600


def amount(pattern: str, text: str) -> Decimal:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return Decimal(found.group(1).replace(",", ""))


def test_the_report_has_the_fleets_real_figures_and_chart(make_bot: BotFactory) -> None:
    with make_bot(RUNCTL_IDLE_ENFORCE="true") as bot:
        llm = [launch(bot), launch(bot)]  # Bob, g5.xlarge, project llm
        idle = launch(bot, itype="t3.large", extra={"runctl:project": "vision"})  # Bob's, stopped by the bot
        carols = launch(bot, owner=CAROL.id, itype="t3.large", extra={"runctl:project": "vision"})
        (unmanaged,) = run_instances(bot.aws.client("ec2"), 1, tags={"Name": "not-ours"})
        runtime = scheduler_for(bot)
        assert runtime.run("reconcile")

        # The idle cycle notices Bob's idle t3.large, waits out the grace period and stops it.
        move_to(bot, MONDAY)
        for busy in (*llm, carols):
            cpu(bot, busy, 70.0)
        cpu(bot, idle, 1.0)
        assert runtime.run("idle")
        bot.clock.advance(minutes=61)
        for busy in (*llm, carols):
            cpu(bot, busy, 70.0)
        cpu(bot, idle, 1.0)
        assert runtime.run("idle")
        assert state_of(bot, idle) == "stopped"
        assert runtime.run("reconcile")
        points = bot.repos.history.changes([idle], DAY_START)[idle]
        (stopped_at,) = [at for at, _, _, reason in points if reason == BOT_STOP_REASON]

        move_to(bot, MONDAY + timedelta(hours=5))  # 20:00 UTC, 21:00 in Berlin: the daily report is due
        bot.repos.subscriptions.upsert(
            TEAM, "daily", at_time="09:00", timezone="Europe/Berlin", created_by=CAROL.id, at=bot.clock.now()
        )
        before = bot.clock.now()
        assert runtime.run("reports")
        after = bot.clock.now()

        (report,) = [m for m in bot.standin.messages(TEAM) if "Daily fleet report" in m.text]
        body = rendered(report)

        def between(pattern: str, cost_at: object) -> None:
            """The amount matches the cost at some instant of the run (money rounds to the cent)."""
            got = amount(pattern, body)
            low, high = cost_at(before), cost_at(after)  # type: ignore[operator]
            assert low - CENT <= got <= high + CENT, f"{pattern}: {got} not within [{low}, {high}]"

        # Running now: Bob's two g5.xlarge and Carol's t3.large (the stopped one bills nothing).
        assert "*Running now*\n3 machine(s) · $2.10/h" in body  # 2 x 1.006 + 0.0832
        assert report.text.startswith("Daily fleet report: 3 running, $2.10/h, week $")

        # Today and this week (Monday): every running hour since midnight, and Bob's t3.large until stopped.
        def bob(at: datetime) -> Decimal:
            return 2 * G5 * hours(DAY_START, at) + T3 * hours(DAY_START, stopped_at)

        def carol(at: datetime) -> Decimal:
            return T3 * hours(DAY_START, at)

        def fleet(at: datetime) -> Decimal:
            return bob(at) + carol(at)

        between(r"\*Cost today\*\n\$([\d,.]+)", fleet)
        between(r"\*Cost this week\*\n\$([\d,.]+)", fleet)
        assert 41 < amount(r"\*Cost today\*\n\$([\d,.]+)", body) < 45  # about $43.24: not a zero or a month

        # Owner and project breakdown of what runs now.
        assert f"*Running by owner*\n<@{BOB.id}>: 2\n<@{CAROL.id}>: 1" in body
        assert "*Running by project*\nllm: 2\nvision: 1" in body

        # Top spenders this week, biggest first.
        spenders = re.search(r"\*Top spenders this week:\* (.*)", body)
        assert spenders is not None
        assert spenders.group(1).index(BOB.id) < spenders.group(1).index(CAROL.id)
        between(rf"<@{BOB.id}> \$([\d,.]+)", bob)
        between(rf"<@{CAROL.id}> \$([\d,.]+)", carol)

        # Saved by the bot: the t3.large's hours since the idle stop, at its price.
        def saved(at: datetime) -> Decimal:
            return T3 * hours(stopped_at, at)

        between(r"\*Saved by the bot this week\*\n\$([\d,.]+)", saved)
        caught = amount(r"\(([\d.]+) idle hours caught\)", body)
        assert abs(caught - hours(stopped_at, after)) <= Decimal("0.06")  # shown to one decimal
        assert Decimal("3.8") <= caught <= Decimal("4.0")  # stopped at about 16:01, reported at 20:00

        # The unmanaged machine is listed, never counted.
        assert (
            f":eyes: *Unmanaged running machines* (listed, never touched): `{unmanaged}` (t3.micro)" in body
        )
        assert unmanaged not in body.split("Unmanaged")[0]

        # The chart: a real PNG in the report's thread with a bar per day and a colour per project.
        (chart,) = bot.standin.files()
        assert chart.completed and chart.content is not None
        thread = bot.standin.messages(TEAM, thread_ts=report.ts)
        assert any(chart.id in m.files for m in thread if m.ts != report.ts)
        assert chart.content[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(chart.content))
        image.load()  # decodes the whole image, not just the header
        assert image.format == "PNG" and image.size == (800, 360)
        assert len(chart.content) > 10_000
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 20  # bars, text and axes, not a blank image
        blue, orange = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours: llm, vision
        present = {rgb for _, rgb in colours}
        assert blue in present and orange in present
