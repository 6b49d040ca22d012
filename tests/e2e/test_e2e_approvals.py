"""Approvals end to end: clicks are applied once, by the right people, in time, after a fresh check.

Clicks are real signed HTTP deliveries of buttons that are really in the stand-in's copy of the message.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bot.slack.standin import Message
from tests.support.harness import ADMIN, APPROVER, OUTSIDER, REQUESTER, Bot, buttons, rendered

APPROVE, DENY = "approval_approve", "approval_deny"


def _terminate_request(bot: Bot, *, owner: str = REQUESTER.id) -> tuple[str, Message]:
    (iid,) = bot.seed(1, owner=owner)
    bot.clock.advance(minutes=10)
    bot.run(owner, f"terminate {iid}")
    return iid, bot.with_button(APPROVE)


def _events(bot: Bot, action: str, result: str | None = None) -> int:
    return sum(
        1 for e in bot.repos.audit.list(limit=1000) if e.action == action and result in (None, e.result)
    )


def test_fifty_concurrent_approve_clicks_execute_once(bot: Bot) -> None:
    iid, request = _terminate_request(bot)

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: bot.click(APPROVER.id, request, APPROVE).status, range(50)))
    assert statuses == [200] * 50
    bot.wait_idle()

    assert bot.calls.count("ec2.TerminateInstances") == 1
    assert bot.state(iid) == "terminated"
    assert _events(bot, "approval:approve", "approved") == 1
    assert _events(bot, "terminate", "succeeded") == 1
    closed = bot.current(request)
    assert buttons(closed) == []
    assert f"Approved by <@{APPROVER.id}>" in rendered(closed)
    assert f"*Result:* terminating {iid}" in rendered(closed)
    losers = bot.replies(APPROVER.id)
    assert len(losers) == 49
    assert all(f"pproved by <@{APPROVER.id}>" in text for text in losers), losers[:3]
    approval = bot.repos.approvals.get_by_operation(bot.repos.audit.list(target=iid)[0].operation_id or "")
    assert approval is not None and approval.status == "succeeded"


def test_concurrent_approve_and_deny_decide_once(bot: Bot) -> None:
    iid, request = _terminate_request(bot)

    def click(n: int) -> int:
        user, action = (APPROVER.id, APPROVE) if n % 2 else (ADMIN.id, DENY)
        return bot.click(user, request, action).status

    with ThreadPoolExecutor(max_workers=40) as pool:
        assert set(pool.map(click, range(40))) == {200}
    bot.wait_idle()

    approved = _events(bot, "approval:approve", "approved")
    denied = _events(bot, "approval:deny", "denied")
    assert approved + denied == 1
    assert bot.calls.count("ec2.TerminateInstances") == approved
    assert bot.state(iid) == ("terminated" if approved else "running")
    assert buttons(bot.current(request)) == []


def test_only_an_approver_who_did_not_ask_may_decide(bot: Bot) -> None:
    iid, request = _terminate_request(bot, owner=ADMIN.id)

    bot.press(ADMIN.id, request, APPROVE)
    assert "someone else must approve it" in bot.last_reply(ADMIN.id)
    bot.press(REQUESTER.id, request, APPROVE)
    assert f"Only approvers (RUNCTL_APPROVERS) can approve or deny this, and <@{REQUESTER.id}>" in (
        bot.last_reply(REQUESTER.id)
    )
    bot.press(OUTSIDER.id, request, DENY)
    assert f"<@{OUTSIDER.id}> is not one" in bot.last_reply(OUTSIDER.id)

    assert bot.state(iid) == "running" and bot.mutations() == 0
    assert buttons(bot.current(request)) == [APPROVE, DENY], "refused clicks change nothing"
    assert _events(bot, "approval:approve", "refused") == 2
    assert _events(bot, "approval:deny", "refused") == 1

    bot.press(APPROVER.id, request, DENY)
    closed = bot.current(request)
    assert f"Denied by <@{APPROVER.id}>" in rendered(closed) and buttons(closed) == []
    assert bot.state(iid) == "running" and bot.mutations() == 0

    (operation,) = bot.repos.operations.list_by_status(["cancelled"], kind="terminate")
    assert operation.instance_ids == [iid]


def test_the_requester_may_withdraw_their_request(bot: Bot) -> None:
    iid, request = _terminate_request(bot)
    bot.press(REQUESTER.id, request, DENY)
    closed = bot.current(request)
    assert f"Withdrawn by <@{REQUESTER.id}>, who asked for it" in rendered(closed)
    assert buttons(closed) == []
    assert bot.state(iid) == "running"


def test_a_click_after_expiry_says_so_and_runs_nothing(bot: Bot) -> None:
    iid, request = _terminate_request(bot)
    bot.clock.advance(minutes=31)
    bot.press(APPROVER.id, request, APPROVE)

    assert "Too late: this request expired at" in bot.last_reply(APPROVER.id)
    assert bot.state(iid) == "running"
    assert bot.calls.count("ec2.TerminateInstances") == 0
    closed = bot.current(request)
    assert ":hourglass: This request expired at" in rendered(closed) and buttons(closed) == []
    (operation,) = bot.repos.operations.list_by_status(["cancelled"], kind="terminate")
    assert "expired" in (operation.error or "")


def test_the_expiry_sweep_closes_the_message(bot: Bot) -> None:
    iid, request = _terminate_request(bot)
    services = bot.application.services
    assert services.approvals.expire_due() == [], "not before its time"

    bot.clock.advance(minutes=31)
    (expired,) = services.approvals.expire_due()
    assert services.approvals.expire_due() == [], "an expired request expires once"
    closed = bot.current(request)
    assert ":hourglass: This request expired at" in rendered(closed)
    assert buttons(closed) == []
    approval = bot.repos.approvals.get(expired)
    assert approval is not None and approval.status == "expired"
    # A stale copy of the message (a client that did not refresh) still cannot run it.
    bot.press(APPROVER.id, request, APPROVE)
    assert "expired" in bot.last_reply(APPROVER.id)
    assert bot.state(iid) == "running" and bot.mutations() == 0


def test_the_rules_are_checked_again_at_click_time(bot: Bot) -> None:
    iid, request = _terminate_request(bot)
    bot.run(REQUESTER.id, f"protect {iid}")  # protected while the request waits
    bot.calls.reset()

    bot.press(APPROVER.id, request, APPROVE)
    assert bot.state(iid) == "running"
    assert bot.calls.count("ec2.TerminateInstances") == 0
    closed = bot.current(request)
    assert f"Approved by <@{APPROVER.id}>, but the rules no longer allow it" in rendered(closed)
    assert "protected" in rendered(closed)
    assert buttons(closed) == []
