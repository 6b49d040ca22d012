"""Socket Mode through the stand-in's own ``ws://`` endpoint, with slack_sdk's and Bolt's clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.slack.standin import SlackStandIn
from bot.slack.standin.delivery import build_message_event, push_block_actions, push_event, push_slash_command
from tests.support.slack import ALICE, BOB, FLEET, assert_eventually, running_standin, standin_web_client

JSON = dict[str, Any]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None) as s:
        yield s


@contextmanager
def connected(standin: SlackStandIn, client: SocketModeClient) -> Iterator[SocketModeClient]:
    """Connect, and on exit close from Slack's side first so the client's blocking read ends at once."""
    client.connect()
    try:
        standin.wait_for_socket(timeout=5)
        yield client
    finally:
        client.auto_reconnect_enabled = False
        client.default_auto_reconnect_enabled = False
        standin.close_sockets()
        client.close()


def sdk_client(standin: SlackStandIn) -> SocketModeClient:
    return SocketModeClient(app_token=standin.app_token, web_client=WebClient(base_url=standin.api_url))


def test_sdk_client_connects_receives_a_slash_command_and_its_ack_is_recorded(standin: SlackStandIn) -> None:
    client = sdk_client(standin)
    raw_messages: list[str] = []
    requests: list[SocketModeRequest] = []
    client.on_message_listeners.append(raw_messages.append)

    def acknowledge(socket_client: Any, request: SocketModeRequest) -> None:
        requests.append(request)
        socket_client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(acknowledge)

    with connected(standin, client):
        [open_call] = standin.calls("apps.connections.open")
        assert open_call.token_kind == "app" and open_call.ok
        hello = json.loads(assert_eventually(lambda: raw_messages)[0])
        assert hello["type"] == "hello"
        assert hello["connection_info"]["app_id"] == standin.identity.app_id

        envelope_id = push_slash_command(
            standin, command="/runctl", text="list --all", user=ALICE.id, channel=FLEET.id
        )
        ack = standin.wait_for_ack(envelope_id, timeout=5)

    assert ack.known and ack.payload is None and ack.raw == {"envelope_id": envelope_id}
    [request] = requests
    assert (request.type, request.envelope_id, request.accepts_response_payload) == (
        "slash_commands",
        envelope_id,
        True,
    )
    assert (request.payload["command"], request.payload["text"], request.payload["user_id"]) == (
        "/runctl",
        "list --all",
        ALICE.id,
    )
    [envelope] = standin.envelopes()
    assert (envelope.envelope_id, envelope.type) == (envelope_id, "slash_commands")
    assert standin.ephemerals() == []


def test_ack_payload_is_shown_to_the_user_like_slack_does(standin: SlackStandIn) -> None:
    client = sdk_client(standin)

    def reply(socket_client: Any, request: SocketModeRequest) -> None:
        socket_client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "Unknown verb `lsit`"})
        )

    client.socket_mode_request_listeners.append(reply)
    with connected(standin, client):
        envelope_id = push_slash_command(
            standin, command="/runctl", text="lsit", user=BOB.id, channel=FLEET.id
        )
        standin.wait_for_ack(envelope_id)
        [ephemeral] = standin.wait_for(lambda: standin.ephemerals(user=BOB.id))

    assert (ephemeral.text, ephemeral.source, ephemeral.channel) == (
        "Unknown verb `lsit`",
        "socket_ack",
        FLEET.id,
    )
    assert [p.via for p in standin.response_posts()] == ["socket_ack"]


def test_events_and_interactions_arrive_with_slack_envelope_fields(standin: SlackStandIn) -> None:
    client = sdk_client(standin)
    requests: list[SocketModeRequest] = []

    def acknowledge(socket_client: Any, request: SocketModeRequest) -> None:
        requests.append(request)
        socket_client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(acknowledge)
    posted = WebClient(token=standin.bot_token, base_url=standin.api_url).chat_postMessage(
        channel=FLEET.id,
        text="Idle machine",
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Keep 4 h"},
                        "action_id": "keep_4h",
                    }
                ],
            }
        ],
    )
    message = standin.message(FLEET.id, posted["ts"])
    assert message is not None

    with connected(standin, client):
        event = build_message_event(standin, user=BOB.id, channel=FLEET.id, text="status", mention=True)
        event_envelope = push_event(standin, event=event, retry_attempt=1, retry_reason="timeout")
        click_envelope = push_block_actions(standin, user=BOB.id, action_id="keep_4h", message=message)
        standin.wait_for_ack(event_envelope)
        standin.wait_for_ack(click_envelope)

    by_id = {r.envelope_id: r for r in requests}
    event_request = by_id[event_envelope]
    assert (event_request.type, event_request.retry_attempt, event_request.retry_reason) == (
        "events_api",
        1,
        "timeout",
    )
    assert event_request.payload["event"]["type"] == "app_mention"
    click = by_id[click_envelope]
    assert (click.type, click.accepts_response_payload) == ("interactive", False)
    assert click.payload["actions"][0]["action_id"] == "keep_4h"


def test_disconnect_makes_the_client_reconnect_with_a_fresh_url(standin: SlackStandIn) -> None:
    client = sdk_client(standin)
    acked: list[str] = []

    def acknowledge(socket_client: Any, request: SocketModeRequest) -> None:
        acked.append(request.envelope_id)
        socket_client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(acknowledge)
    with connected(standin, client):
        standin.socket_disconnect()
        standin.wait_for(lambda: len(standin.calls("apps.connections.open")) == 2, timeout=5)
        standin.wait_for(
            lambda: len([c for c in standin.calls("socket_mode") if c.status == 101]) == 2, timeout=5
        )
        assert_eventually(lambda: len(standin.socket_sessions()) == 1, timeout=5)

        envelope_id = push_slash_command(
            standin, command="/runctl", text="help", user=ALICE.id, channel=FLEET.id
        )
        standin.wait_for_ack(envelope_id)

    urls = [c.response["url"] for c in standin.calls("apps.connections.open") if isinstance(c.response, dict)]
    assert len(set(urls)) == 2
    assert acked == [envelope_id]


def test_pushing_without_a_client_fails_loudly(standin: SlackStandIn) -> None:
    with pytest.raises(RuntimeError, match="no Socket Mode client"):
        push_slash_command(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    with pytest.raises(ValueError, match="envelope type"):
        standin.push_envelope("hello", {})


def test_bolt_socket_mode_handler_acks_and_responds(standin: SlackStandIn) -> None:
    app = App(client=standin_web_client(standin), signing_secret=standin.signing_secret)

    @app.command("/runctl")
    def runctl(ack: Ack, respond: Respond, command: JSON) -> None:
        ack(f"Working on `{command['text']}`")
        respond(text="Fleet: 0 machines", response_type="in_channel")

    handler = SocketModeHandler(app, app_token=standin.app_token)
    with connected(standin, handler.client):
        envelope_id = push_slash_command(
            standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id
        )
        ack = standin.wait_for_ack(envelope_id, timeout=5)
        [message] = standin.wait_for(lambda: standin.messages(FLEET.id), timeout=5)

    assert ack.payload == {"text": "Working on `list`"}
    assert message.text == "Fleet: 0 machines"
    [ephemeral] = standin.ephemerals(user=BOB.id)
    assert ephemeral.text == "Working on `list`"
