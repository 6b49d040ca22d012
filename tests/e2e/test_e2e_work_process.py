"""The work after each ack in a separate process, as `serve` runs it: still once, still by the right people.

The web process acks and hands each delivery to the work process as data; these repeat the exactly-once
guarantees across that boundary (redeliveries, fifty racing clicks, a refused click) against the same
moto server, stand-in and database file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import deliver, slash_command_request
from tests.support.harness import APPROVER, REQUESTER, Bot, buttons, rendered, running_bot
from tests.support.moto import MotoServer
from tests.support.slack import FLEET

APPROVE = "approval_approve"


@pytest.fixture
def bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    # The child keeps the wall clock, so the command age rule must not wait for a freshly seeded machine.
    with running_bot(
        tmp_path, standin, aws, monkeypatch, work_process=True, RUNCTL_MIN_AGE_COMMAND="1s"
    ) as b:
        yield b


def test_the_work_runs_in_another_process(bot: Bot) -> None:
    worker = bot.application.worker
    assert worker is not None and worker.alive()
    bot.run(REQUESTER.id, "create t3.micro")
    assert len(bot.fleet()) == 1
    assert len(bot.posts()) == 1
    # Nothing ran on this process's executor: the cloud calls came from the child.
    assert bot.calls.count("ec2.RunInstances") == 0
    assert bot.rows()["operations"] == 1


def test_a_command_redelivered_four_times_is_done_once(bot: Bot) -> None:
    request = slash_command_request(
        bot.standin, command="/runctl", text="create t3.micro", user=REQUESTER.id, channel=FLEET.id
    )

    def send(retry: int) -> int:
        return deliver(bot.url, request.body, request.headers, retry_num=retry or None).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(send, range(4))) == [200] * 4
    bot.wait_idle()
    assert len(bot.fleet()) == 1
    assert len(bot.posts()) == 1
    assert bot.rows()["operations"] == 1
    assert bot.rows()["slack_deliveries"] == 1


def test_fifty_concurrent_approve_clicks_execute_once(bot: Bot) -> None:
    (iid,) = bot.seed(1, owner=REQUESTER.id)
    time.sleep(2)  # older than the 1 s command age rule on the child's wall clock (moto stamps whole seconds)
    bot.run(REQUESTER.id, f"terminate {iid}")
    request = bot.with_button(APPROVE)

    # The requester's own click is refused privately and changes nothing.
    bot.press(REQUESTER.id, request, APPROVE)
    assert "someone else must approve it" in bot.last_reply(REQUESTER.id)
    assert bot.state(iid) == "running"

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: bot.click(APPROVER.id, request, APPROVE).status, range(50)))
    assert statuses == [200] * 50
    bot.wait_idle()

    assert bot.state(iid) == "terminated"
    decided = [e for e in bot.repos.audit.list(limit=1000) if e.action == "approval:approve"]
    assert [e.result for e in decided if e.result == "approved"] == ["approved"]
    assert (
        sum(
            1 for e in bot.repos.audit.list(limit=1000) if e.action == "terminate" and e.result == "succeeded"
        )
        == 1
    )
    closed = bot.current(request)
    assert buttons(closed) == []
    assert f"Approved by <@{APPROVER.id}>" in rendered(closed)
    assert len(bot.replies(APPROVER.id)) == 49
