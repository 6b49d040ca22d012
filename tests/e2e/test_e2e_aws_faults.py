"""AWS misbehaving under a command: throttling is retried, a lost answer never launches twice, and a
refusal from AWS is told to the person with the operation id instead of vanishing into the log.
"""

from __future__ import annotations

from tests.support.harness import APPROVER, REQUESTER, Bot, buttons, rendered


def test_throttled_stop_is_retried_and_done_once(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.faults.throttle("ec2", "StopInstances", times=2)
    bot.run(REQUESTER.id, f"stop {iid}")
    assert bot.state(iid) == "stopped"
    assert bot.calls.count("ec2.StopInstances") == 3
    (message,) = bot.posts()
    assert f"stopping {iid}" in rendered(message)


def test_a_launch_whose_answer_was_lost_launches_one_machine(bot: Bot) -> None:
    bot.faults.lose_response("ec2", "RunInstances", how="read-timeout")
    bot.run(REQUESTER.id, "create t3.micro --project llama")
    fleet = bot.fleet()
    assert len(fleet) == 1, fleet
    (iid,) = fleet
    (message,) = bot.posts()
    assert f"launched {iid}" in rendered(bot.current(message))
    (operation,) = bot.repos.operations.list_by_status(["succeeded"], kind="launch")
    assert operation.instance_ids == [iid]


def test_aws_refusing_an_approved_terminate_is_shown_in_the_request(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"terminate {iid}")
    request = bot.with_button("approval_approve")
    bot.faults.error(
        "ec2",
        "TerminateInstances",
        code="UnauthorizedOperation",
        status=403,
        message="You are not authorized to perform this operation.",
    )
    bot.press(APPROVER.id, request, "approval_approve")

    assert bot.state(iid) == "running"
    closed = bot.current(request)
    assert buttons(closed) == []
    text = rendered(closed)
    assert f":x: Approved by <@{APPROVER.id}>" in text
    assert "not authorized" in text
    (operation,) = bot.repos.operations.list_by_status(["failed"], kind="terminate")
    assert operation.instance_ids == [iid]
    approval = bot.repos.approvals.get_by_operation(operation.id)
    assert approval is not None and approval.status == "failed"


def test_aws_unreachable_for_a_list_is_a_short_private_error(bot: Bot) -> None:
    bot.faults.server_error("ec2", "DescribeInstances")
    bot.run(REQUESTER.id, "list")
    answer = bot.last_reply(REQUESTER.id)
    assert answer.startswith(":x: `/runctl list` could not reach AWS")
    assert "(operation `" in answer
    assert "Traceback" not in answer
    assert bot.posts() == []
