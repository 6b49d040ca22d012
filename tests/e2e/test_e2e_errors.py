"""Failures end to end: whatever fails, the person gets a short private answer with an id to quote, and the
bot's log has a line with the same id (the stack trace stays there, never in Slack).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from slack_bolt import Respond

from tests.support.harness import APPROVER, REQUESTER, Bot, buttons, rendered

START_BACK, APPROVE = "start_it_back", "approval_approve"


def _quoted(text: str, label: str) -> str:
    """The id after `label` in backticks, e.g. operation `abc…`."""
    match = re.search(rf"{label} `([0-9a-z-]+)`", text)
    assert match, f"no {label} id in {text!r}"
    return match.group(1)


def _logged(caplog: pytest.LogCaptureFixture, ref: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if ref in r.getMessage() and r.levelno >= logging.WARNING]


def test_start_it_back_refused_by_aws_tells_the_clicker_the_operation_the_log_names(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"stop {iid}")
    stop_message = bot.with_button(START_BACK)
    bot.faults.error(
        "ec2",
        "StartInstances",
        code="UnauthorizedOperation",
        status=403,
        message="You are not authorized to perform this operation.",
    )
    posts_before = len(bot.posts())

    bot.press(REQUESTER.id, stop_message, START_BACK)

    answer = bot.last_reply(REQUESTER.id)
    assert answer.startswith(":x: *Start it back* failed (operation `")
    assert "not authorized" in answer and "Traceback" not in answer
    assert len(answer) < 800, "a short message, not a dump"
    ref = _quoted(answer, "operation")
    (operation,) = bot.repos.operations.list_by_status(["failed"], kind="start")
    assert operation.id == ref and operation.instance_ids == [iid]
    assert _logged(caplog, ref), "the log line carries the id the person was shown"
    # Nothing was started and nothing new was said in the channel; the button stays to try again.
    assert bot.state(iid) == "stopped"
    assert len(bot.posts()) == posts_before
    assert START_BACK in buttons(bot.current(stop_message))


def test_start_it_back_when_aws_is_unreachable_names_the_operation_too(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """The machine cannot even be looked up (DescribeInstances fails after every retry)."""
    caplog.set_level(logging.WARNING)
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"stop {iid}")
    stop_message = bot.with_button(START_BACK)
    bot.faults.server_error("ec2", "DescribeInstances")

    bot.press(REQUESTER.id, stop_message, START_BACK)

    answer = bot.last_reply(REQUESTER.id)
    assert answer.startswith(":x: *Start it back* "), answer
    assert "Traceback" not in answer
    ref = _quoted(answer, "operation")
    assert _logged(caplog, ref)
    assert bot.calls.count("ec2.StartInstances") == 0
    assert bot.state(iid) == "stopped"


def test_an_approval_click_that_fails_names_the_operation_of_the_request(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """AWS cannot be reached when the approver clicks: the approver is told which operation failed."""
    caplog.set_level(logging.WARNING)
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"terminate {iid}")
    request = bot.with_button(APPROVE)
    operation_id = _quoted(rendered(request), "operation")
    approval = bot.repos.approvals.get_by_operation(operation_id)
    assert approval is not None
    request_id = approval.id
    bot.faults.server_error("ec2", "DescribeInstances")

    bot.press(APPROVER.id, request, APPROVE)

    answer = bot.last_reply(APPROVER.id)
    assert answer.startswith(f":x: Your click on request `{request_id}` could not reach AWS (operation `")
    assert _quoted(answer, "operation") == operation_id
    assert "Traceback" not in answer
    assert APPROVE in buttons(bot.current(request)), "the request stays open to try again"
    assert _logged(caplog, operation_id)
    assert bot.state(iid) == "running"
    assert bot.calls.count("ec2.TerminateInstances") == 0


class _RefusingHandoff:
    """A hand-off that cannot take work (as when the work process is gone and cannot be restarted)."""

    def put(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        raise RuntimeError("the work queue refused the delivery")

    def drain(self, timeout: float = 30.0) -> bool:
        return True


def test_a_listener_that_raises_answers_with_a_reference_the_log_has(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    (iid,) = bot.seed(1)
    bot.application.slack.use_handoff(_RefusingHandoff())

    response = bot.command(REQUESTER.id, f"status {iid}")

    assert response.status == 200, "Slack gets an answer, not a 500 and its own error text"
    bot.wait_idle()
    answer = bot.last_reply(REQUESTER.id)
    assert answer.startswith(":x: Something went wrong (reference `err-")
    assert "Traceback" not in answer and "work queue" not in answer
    ref = _quoted(answer, "reference")
    (record,) = _logged(caplog, ref)
    assert record.exc_info is not None, "the stack trace is in the log"
    assert "work queue refused" in str(record.exc_info[1])
