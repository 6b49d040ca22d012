"""What reaches the bot over HTTP: only Slack's signed, fresh requests are heard, and a redelivery is
done once.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.slack.standin.delivery import (
    SlackRequest,
    block_actions_request,
    deliver,
    slash_command_request,
)
from tests.support.harness import APPROVER, REQUESTER, Bot, buttons

APPROVE = "approval_approve"


def _nothing_happened(bot: Bot, api_calls_before: int) -> None:
    bot.wait_idle()
    assert len(bot.standin.calls()) == api_calls_before, "no Web API call, no response_url post"
    assert bot.standin.response_posts() == []
    assert bot.calls.total() == 0, "no AWS call"
    assert set(bot.rows().values()) == {0}, "no database row"


def _create(bot: Bot, *, signing_secret: str | None = None, timestamp: int | None = None) -> SlackRequest:
    return slash_command_request(
        bot.standin,
        command="/runctl",
        text="create t3.micro",
        user=REQUESTER.id,
        channel="C0FLEET001",
        signing_secret=signing_secret,
        timestamp=timestamp,
    )


@pytest.mark.parametrize(
    ("secret", "skew"),
    [
        ("not-the-signing-secret", 0),
        (None, -6 * 60),  # older than Slack's 5-minute window
        (None, 6 * 60),  # from the future, just as stale
    ],
    ids=["forged-signature", "old-timestamp", "future-timestamp"],
)
def test_unsigned_or_stale_commands_get_401_and_nothing_is_done(
    bot: Bot, secret: str | None, skew: int
) -> None:
    before = len(bot.standin.calls())
    request = _create(bot, signing_secret=secret, timestamp=int(time.time()) + skew)
    assert deliver(bot.url, request.body, request.headers).status == 401
    _nothing_happened(bot, before)


def test_a_tampered_body_is_refused(bot: Bot) -> None:
    before = len(bot.standin.calls())
    request = _create(bot)
    tampered = request.body.replace(b"t3.micro", b"p4d.24xlarge")
    assert deliver(bot.url, tampered, request.headers).status == 401
    _nothing_happened(bot, before)


def test_a_forged_click_is_refused(bot: Bot) -> None:
    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    bot.run(REQUESTER.id, f"terminate {iid}")
    request = bot.with_button(APPROVE)
    calls_before, rows_before = len(bot.standin.calls()), bot.rows()
    bot.calls.reset()
    forged = block_actions_request(
        bot.standin,
        user=APPROVER.id,
        action_id=APPROVE,
        message=request,
        signing_secret="guessed",
    )
    assert deliver(bot.url, forged.body, forged.headers).status == 401
    bot.wait_idle()
    assert bot.calls.total() == 0
    assert bot.rows() == rows_before
    assert len(bot.standin.calls()) == calls_before
    assert buttons(bot.current(request)) == [APPROVE, "approval_deny"]
    assert bot.state(iid) == "running"


def test_missing_signature_headers_are_refused(bot: Bot) -> None:
    before = len(bot.standin.calls())
    request = _create(bot)
    response = deliver(bot.url, request.body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 401
    _nothing_happened(bot, before)


def test_a_command_redelivered_with_retry_headers_is_done_once(bot: Bot) -> None:
    request = _create(bot)
    statuses = [deliver(bot.url, request.body, request.headers).status]
    for retry in (1, 2, 3):
        statuses.append(deliver(bot.url, request.body, request.headers, retry_num=retry).status)
    assert statuses == [200] * 4
    bot.wait_idle()

    assert len(bot.fleet()) == 1
    assert bot.calls.count("ec2.RunInstances") == 1
    assert len(bot.posts()) == 1
    assert len(bot.standin.calls("chat.postMessage")) == 1
    assert bot.rows()["operations"] == 1
    assert bot.rows()["slack_deliveries"] == 1


def test_redeliveries_racing_the_first_delivery_are_done_once(bot: Bot) -> None:
    request = _create(bot)

    def send(retry: int) -> int:
        return deliver(bot.url, request.body, request.headers, retry_num=retry or None).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(send, range(4))) == [200] * 4
    bot.wait_idle()
    assert len(bot.fleet()) == 1
    assert len(bot.posts()) == 1
    assert bot.rows()["operations"] == 1


def test_two_commands_with_the_same_text_are_two_requests(bot: Bot) -> None:
    """Dedup is per delivery, not per text: typing the command twice launches twice."""
    bot.run(REQUESTER.id, "create t3.micro")
    bot.run(REQUESTER.id, "create t3.micro")
    assert len(bot.fleet()) == 2
    assert len(bot.posts()) == 2
