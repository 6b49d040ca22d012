"""Socket Mode end to end: the same app factory, reached over the stand-in's websocket instead of HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.slack.standin import Message, SlackStandIn
from bot.slack.standin.delivery import push_block_actions, push_slash_command
from tests.support.harness import APPROVER, REQUESTER, Bot, rendered, running_bot
from tests.support.moto import MotoServer
from tests.support.slack import FLEET


@pytest.fixture
def socket_bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Bot, SocketModeHandler]]:
    with running_bot(tmp_path, standin, aws, monkeypatch, SLACK_APP_TOKEN=standin.app_token) as bot:
        assert bot.settings.socket_mode
        handler = SocketModeHandler(bot.application.slack_app, standin.app_token)
        handler.client.connect()  # what SocketModeHandler.connect() does (that one is untyped)
        try:
            standin.wait_for_socket()
            yield bot, handler
        finally:
            # The client's receive loop holds its lock in a blocking read; closing from Slack's side first
            # lets it go at once instead of at the read's timeout.
            handler.client.auto_reconnect_enabled = False
            standin.close_sockets()
            handler.client.close()


def test_slash_commands_and_clicks_arrive_over_socket_mode(socket_bot: tuple[Bot, SocketModeHandler]) -> None:
    bot, _ = socket_bot
    standin = bot.standin
    assert standin.calls("apps.connections.open"), "the client asked Slack for a websocket URL"

    envelope = push_slash_command(
        standin, command="/runctl", text="help stop", user=REQUESTER.id, channel=FLEET.id
    )
    ack = standin.wait_for_ack(envelope)
    assert ack.known and ack.payload is not None
    assert "*/runctl stop*" in str(ack.payload["text"])
    assert "*/runctl stop*" in bot.last_reply(REQUESTER.id), "the ack's payload is shown to the user"

    (iid,) = bot.seed(1)
    bot.clock.advance(minutes=10)
    envelope = push_slash_command(
        standin, command="/runctl", text=f"terminate {iid}", user=REQUESTER.id, channel=FLEET.id
    )
    standin.wait_for_ack(envelope)

    def approval_request() -> Message | None:
        return next((m for m in bot.posts() if "Approval needed" in m.text), None)

    standin.wait_for(approval_request, description="the approval request")
    request = approval_request()
    assert request is not None
    envelope = push_block_actions(standin, user=APPROVER.id, action_id="approval_approve", message=request)
    standin.wait_for_ack(envelope)
    bot.wait_idle()
    assert bot.state(iid) == "terminated"
    assert f"Approved by <@{APPROVER.id}>" in rendered(bot.current(request))


def test_socket_mode_refuses_like_http(socket_bot: tuple[Bot, SocketModeHandler]) -> None:
    bot, _ = socket_bot
    envelope = push_slash_command(
        bot.standin, command="/runctl", text="cleanup run --yes", user=REQUESTER.id, channel=FLEET.id
    )
    ack = bot.standin.wait_for_ack(envelope)
    assert ack.payload is not None and "Only admins may run `cleanup run`" in str(ack.payload["text"])
    bot.wait_idle()
    assert bot.mutations() == 0
