"""Slack misbehaving: rate limits and server errors are retried so every message arrives exactly once,
and when Slack will not take a message the person still learns what happened.
"""

from __future__ import annotations

import pytest

from tests.support.harness import ADMIN, APPROVER, REQUESTER, Bot, rendered

START_BACK = "start_it_back"


def _attempts(bot: Bot, method: str) -> tuple[int, int]:
    """(failed, succeeded) calls of a Web API method."""
    calls = bot.standin.calls(method)
    return sum(1 for c in calls if not c.ok), sum(1 for c in calls if c.ok)


@pytest.mark.parametrize(
    ("status", "retry_after", "count"),
    [(429, 0, 2), (429, 1, 1), (500, None, 2), (503, None, 1)],
    ids=["429-twice", "429-retry-after-1s", "500-twice", "503"],
)
def test_a_launch_message_arrives_exactly_once_through_429s_and_5xx(
    bot: Bot, status: int, retry_after: int | None, count: int
) -> None:
    bot.standin.fail_next("chat.postMessage", status=status, retry_after=retry_after, count=count)
    bot.standin.fail_next("chat.update", status=status, retry_after=retry_after, count=count)
    bot.run(REQUESTER.id, "create t3.micro")

    assert _attempts(bot, "chat.postMessage") == (count, 1)
    assert _attempts(bot, "chat.update") == (count, 1)
    (message,) = bot.posts()
    assert len(bot.fleet()) == 1
    assert f"launched {next(iter(bot.fleet()))}" in rendered(bot.current(message))
    assert bot.standin.pending_faults() == 0


def test_an_approval_and_its_notices_arrive_exactly_once_under_rate_limits(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.standin.fail_next("chat.postMessage", status=429, retry_after=0, count=2)
    bot.standin.fail_next("conversations.open", status=429, retry_after=0)
    bot.run(REQUESTER.id, f"terminate {iid}")

    (request,) = bot.posts()
    assert "Approval needed: terminate" in request.text
    for approver in (APPROVER.id, ADMIN.id):
        assert len(bot.standin.dms(approver)) == 1
    assert bot.standin.dms(REQUESTER.id) == []

    bot.standin.fail_next("chat.update", status=429, retry_after=0, count=2)
    bot.press(APPROVER.id, request, "approval_approve")
    assert bot.state(iid) == "terminated"
    assert f"Approved by <@{APPROVER.id}>" in rendered(bot.current(request))
    assert len(bot.posts()) == 1


def test_when_slack_refuses_the_channel_message_the_result_still_reaches_the_channel(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.standin.fail_next("chat.postMessage", status=503, count=3)  # more than the client retries
    bot.run(REQUESTER.id, f"stop {iid}")

    assert bot.state(iid) == "stopped"
    (answer,) = [p for p in bot.standin.response_posts() if p.outcome == "in_channel"]
    assert f"stopping {iid}" in str(answer.payload["text"])
    # The answer is a real channel message, and its Start it back button works.
    stop_message = bot.with_button(START_BACK)
    bot.press(REQUESTER.id, stop_message, START_BACK)
    assert bot.state(iid) == "running"


def test_a_failure_before_acting_is_a_short_private_error_with_the_operation_id(bot: Bot) -> None:
    bot.standin.fail_next("chat.postMessage", status=500, count=3)
    bot.run(REQUESTER.id, "create t3.micro")

    assert bot.fleet() == {}, "nothing launches when the launch cannot be announced"
    error = bot.last_reply(REQUESTER.id)
    assert error.startswith(":x: `/runctl create` failed unexpectedly (operation `")
    assert "Traceback" not in error and "SlackApiError" not in error
    assert bot.posts() == []


def test_a_rate_limit_and_a_server_error_while_closing_an_approval_are_retried(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"terminate {iid}")
    request = bot.with_button("approval_approve")
    bot.standin.fail_next("chat.update", status=429, retry_after=0)
    bot.standin.fail_next("chat.update", status=500)
    bot.press(APPROVER.id, request, "approval_approve")
    assert bot.state(iid) == "terminated"
    assert bot.calls.count("ec2.TerminateInstances") == 1
    assert _attempts(bot, "chat.update") == (2, 1), "the closing update is applied once"
    assert "*Result:* terminating" in rendered(bot.current(request))
