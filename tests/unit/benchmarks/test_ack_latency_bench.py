"""The ack benchmark's floors (the two bare apps, served as processes) and its verdicts in the report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from slack_sdk import WebClient

from benchmarks import bare_app
from benchmarks.bench_ack_latency import BARES, BOTS, TARGET_RATIO, render
from benchmarks.common import ServedProcess, free_port
from bot.slack.app import PROCESS_BEFORE_RESPONSE
from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import deliver, slash_command_request
from tests.support.slack import BOB, FLEET


def test_the_plain_bare_app_keeps_bolts_defaults_and_the_inline_one_takes_the_bots_setting() -> None:
    client = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/api/")
    plain = bare_app.build("secret", 8, client, inline=False)
    inline = bare_app.build("secret", 8, client, inline=True)
    assert plain.process_before_response is False  # Bolt's default: listener pool, 10 ms ack polling
    assert inline.process_before_response is PROCESS_BEFORE_RESPONSE


@pytest.mark.parametrize("flags", [[], ["--inline"]], ids=["bare", "bare-inline"])
def test_a_bare_app_process_acks_a_signed_command_and_refuses_a_forged_one(
    standin: SlackStandIn, tmp_path: Path, flags: list[str]
) -> None:
    port = free_port()
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": standin.signing_secret,
        "RUNCTL_SLACK_API_URL": standin.api_url,
        "RUNCTL_HOST": "127.0.0.1",
        "RUNCTL_PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
    }
    server = ServedProcess([sys.executable, "-m", "benchmarks.bare_app", *flags], env, port, "bare").start()
    try:
        url = f"{server.base_url}/slack/events"
        signed = slash_command_request(standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id)
        answer = deliver(url, signed.body, signed.headers)
        assert (answer.status, answer.text) == (200, "")
        forged = {**signed.headers, "X-Slack-Signature": "v0=" + "0" * 64}
        assert deliver(url, signed.body, forged).status == 401
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0  # SIGTERM is a clean stop


def _latency(p99: float) -> dict[str, float]:
    return {"p50_ms": p99 / 2, "p95_ms": p99 * 0.9, "p99_ms": p99, "max_ms": p99 * 1.1}


def _cell(command: str, bare: float, inline: float, bot: float, cycle: float) -> dict[str, object]:
    p99 = {"bare": bare, "bare inline": inline, "bot": bot, "bot+cycle": cycle}
    cell: dict[str, object] = {"command": f"/runctl {command}", "concurrency": 1}
    for variant in (*BARES, *BOTS):
        cell[variant] = {
            "latency": _latency(p99[variant]),
            "requests_per_s": 100.0,
            "over_slack_limit": 0,
            **(
                {"work": {"acks_and_work_s": 2.0, "drain_after_last_ack_s": 1.5}}
                if variant in BOTS and command != "help"
                else {}
            ),
        }
    cell["ratio_p99"] = {v: round(p99[v] / bare, 2) for v in BOTS}
    cell["ratio_p99_inline"] = {v: round(p99[v] / inline, 2) for v in BOTS}
    return cell


def test_the_report_marks_each_ratio_over_the_target_against_each_floor() -> None:
    cells = [_cell("list", 10.0, 0.5, 3.0, 16.0), _cell("help", 10.0, 0.5, 0.6, 0.7)]
    result = {
        "setup": {
            "requests_per_cell": 100,
            "fleet_machines": 50,
            "http_threads": 8,
            "bot_workers": 8,
            "connections": "keep-alive",
            "limits": "high",
            "harness": "niced",
            "cycle": "dry run",
        },
        "cells": cells,
        "target_met": False,
        "inline_floor_met": False,
        "bot_process_peak_rss_mb": 90.0,
        "work_process_peak_rss_mb": 160.0,
        "wall_s": 180.0,
    }
    text = render(result)
    assert f"bot p99 ≤ {TARGET_RATIO}× bare p99 at every level — **missed**" in text
    assert "| `/runctl list` | 1 | bot | 1.5 | 2.7 | 3.0 | 3.3 | 0.30 | 6.00 ✗ | 100 |" in text
    assert "| `/runctl list` | 1 | bot+cycle | 8.0 | 14.4 | 16.0 | 17.6 | 1.60 ✗ | 32.00 ✗ | 100 |" in text
    assert "| `/runctl help` | 1 | bot | 0.3 | 0.5 | 0.6 | 0.7 | 0.06 | 1.20 | 100 |" in text
    work_table = text.split("Work after the ack", 1)[1]
    assert "`/runctl list`" in work_table and "`/runctl help`" not in work_table  # help has no work
