"""Driving a bot as Slack does: signed requests, clicks built from rendered buttons, response_url."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import Ack, App, BoltContext, Respond, Say
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.slack.standin import Message, SlackStandIn
from bot.slack.standin.delivery import (
    block_actions_request,
    build_block_actions,
    build_message_event,
    build_slash_command,
    deliver,
    event_request,
    send,
    sign,
    slash_command_request,
)
from tests.support.slack import ALICE, BOB, CAROL, FLEET, running_standin, standin_web_client

JSON = dict[str, Any]
START = 1_705_000_000.0

APPROVAL_BLOCKS: list[JSON] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Terminate `i-0abc`?"}},
    {
        "type": "actions",
        "block_id": "approval",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_id": "approve",
                "value": "appr-7",
                "style": "primary",
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Deny"},
                "action_id": "deny",
                "value": "appr-7",
                "style": "danger",
            },
            {
                "type": "static_select",
                "action_id": "snooze",
                "placeholder": {"type": "plain_text", "text": "Keep"},
                "options": [
                    {"text": {"type": "plain_text", "text": "4 h"}, "value": "4h"},
                    {"text": {"type": "plain_text", "text": "1 day"}, "value": "1d"},
                ],
            },
        ],
    },
]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def standin(clock: FakeClock) -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None, clock=clock) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return standin_web_client(standin)


def post_approval(client: WebClient, standin: SlackStandIn) -> Message:
    ts = client.chat_postMessage(channel=FLEET.id, text="Approval needed", blocks=APPROVAL_BLOCKS)["ts"]
    message = standin.message(FLEET.id, ts)
    assert message is not None
    return message


# -- signing ------------------------------------------------------------------------------------


def test_signatures_verify_with_slack_sdk(standin: SlackStandIn) -> None:
    request = slash_command_request(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    verifier = SignatureVerifier(standin.signing_secret)

    assert verifier.is_valid_request(request.body, request.headers)
    assert not SignatureVerifier("another-secret").is_valid_request(request.body, request.headers)
    assert not verifier.is_valid_request(request.body + b"&x=1", request.headers)

    stale = sign(b"body", standin.signing_secret, timestamp=int(SignatureVerifier(".").clock.now()) - 301)
    assert not verifier.is_valid(b"body", stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
    fresh = sign(b"body", standin.signing_secret)
    assert verifier.is_valid(b"body", fresh["X-Slack-Request-Timestamp"], fresh["X-Slack-Signature"])


def test_slash_command_form_matches_slack(standin: SlackStandIn) -> None:
    request = slash_command_request(
        standin, command="/runctl", text="stop i-0abc --force", user=BOB.id, channel=FLEET.id
    )

    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert form == request.payload
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (form["command"], form["text"], form["user_id"], form["user_name"]) == (
        "/runctl",
        "stop i-0abc --force",
        BOB.id,
        "bob",
    )
    assert (form["channel_id"], form["channel_name"], form["team_id"]) == (
        FLEET.id,
        "ml-fleet",
        standin.identity.team_id,
    )
    assert form["response_url"].startswith(f"{standin.url}/response/")
    assert request.response_url_id == standin.response_url_id(form["response_url"])
    assert form["trigger_id"].count(".") == 2


# -- response_url -------------------------------------------------------------------------------


def test_respond_defaults_to_ephemeral_and_can_post_in_channel(standin: SlackStandIn) -> None:
    form = build_slash_command(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    hook = WebhookClient(form["response_url"])

    assert hook.send(text="only for alice").status_code == 200
    assert hook.send(text="for everyone", response_type="in_channel").status_code == 200

    [ephemeral] = standin.ephemerals(user=ALICE.id)
    assert (ephemeral.channel, ephemeral.text, ephemeral.source) == (
        FLEET.id,
        "only for alice",
        "response_url",
    )
    [message] = standin.messages(FLEET.id)
    assert message.text == "for everyone" and message.user == standin.identity.bot_user_id
    assert [(p.outcome, p.status) for p in standin.response_posts()] == [
        ("ephemeral", 200),
        ("in_channel", 200),
    ]
    assert standin.response_posts()[0].payload == {"text": "only for alice"}


def test_click_then_replace_original_and_delete_original(standin: SlackStandIn, client: WebClient) -> None:
    message = post_approval(client, standin)
    click = build_block_actions(standin, user=CAROL.id, action_id="approve", message=message)

    reply = WebhookClient(click["response_url"]).send(replace_original=True, text="Approved by <@U0CAROL003>")

    assert reply.status_code == 200
    replaced = standin.message(FLEET.id, message.ts)
    assert replaced is not None
    assert replaced.text == "Approved by <@U0CAROL003>" and replaced.blocks == []
    assert replaced.edited_ts is not None

    second = build_block_actions(standin, user=CAROL.id, action_id="approve", message=message)
    assert WebhookClient(second["response_url"]).send(delete_original=True).status_code == 200
    assert standin.message(FLEET.id, message.ts) is None
    assert [p.outcome for p in standin.response_posts()] == ["replaced", "deleted"]


def test_replacing_an_ephemeral_original(standin: SlackStandIn, client: WebClient) -> None:
    ts = client.chat_postEphemeral(
        channel=FLEET.id, user=BOB.id, text="Stop idle machine?", blocks=APPROVAL_BLOCKS
    )["message_ts"]
    ephemeral = standin.ephemeral(ts)
    assert ephemeral is not None

    with pytest.raises(LookupError, match="only U0BOB00002"):
        build_block_actions(standin, user=ALICE.id, action_id="approve", message=ephemeral)
    click = build_block_actions(standin, user=BOB.id, action_id="deny", message=ephemeral)

    assert "message" not in click
    assert click["container"]["is_ephemeral"] is True
    WebhookClient(click["response_url"]).send(replace_original=True, text="Left running")
    replaced = standin.ephemeral(ts)
    assert replaced is not None and replaced.text == "Left running" and replaced.blocks == []


def test_response_url_errors_and_limits(standin: SlackStandIn, clock: FakeClock) -> None:
    form = build_slash_command(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    hook = WebhookClient(form["response_url"])

    bad = hook.send(text="x", blocks=[{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}])
    assert bad.status_code == 400 and json.loads(bad.body)["error"] == "invalid_blocks"
    empty = hook.send(text="")
    assert empty.status_code == 400 and json.loads(empty.body)["error"] == "no_text"
    no_original = hook.send(text="x", replace_original=True)
    assert json.loads(no_original.body)["error"] == "message_not_found"
    for i in range(2):
        assert hook.send(text=f"ok {i}").status_code == 200
    used = hook.send(text="sixth")
    assert used.status_code == 404 and json.loads(used.body)["error"] == "used_url"
    assert len(standin.ephemerals(user=ALICE.id)) == 2
    outcomes = [p.outcome for p in standin.response_posts()]
    assert outcomes == [
        "rejected:invalid_blocks",
        "rejected:no_text",
        "rejected:message_not_found",
        "ephemeral",
        "ephemeral",
        "rejected:used_url",
    ]

    late = build_slash_command(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    clock.now += 1801
    expired = WebhookClient(late["response_url"]).send(text="too late")
    assert expired.status_code == 404 and json.loads(expired.body)["error"] == "expired_url"
    unknown = WebhookClient(f"{standin.url}/response/nope").send(text="x")
    assert unknown.status_code == 404


# -- block_actions payloads ---------------------------------------------------------------------


def test_block_actions_payload_is_built_from_the_rendered_message(
    standin: SlackStandIn, client: WebClient
) -> None:
    message = post_approval(client, standin)

    payload = build_block_actions(standin, user=CAROL.id, action_id="deny", message=message)

    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": CAROL.id,
        "username": "carol",
        "name": "carol",
        "team_id": standin.identity.team_id,
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": message.ts,
        "channel_id": FLEET.id,
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": FLEET.id, "name": "ml-fleet"}
    assert payload["message"]["blocks"] == message.blocks
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["type"], action["value"], action["style"]) == (
        "deny",
        "approval",
        "button",
        "appr-7",
        "danger",
    )
    select = build_block_actions(standin, user=CAROL.id, action_id="snooze", message=message, value="1d")
    assert select["actions"][0]["selected_option"]["value"] == "1d"
    with pytest.raises(LookupError, match="no element with action_id 'start_back'"):
        build_block_actions(standin, user=CAROL.id, action_id="start_back", message=message)
    with pytest.raises(LookupError, match="no option"):
        build_block_actions(standin, user=CAROL.id, action_id="snooze", message=message, value="forever")


def test_message_events_record_the_human_message(standin: SlackStandIn) -> None:
    event = build_message_event(standin, user=BOB.id, channel=FLEET.id, text="status please", mention=True)

    assert event["type"] == "app_mention"
    assert event["text"] == f"<@{standin.identity.bot_user_id}> status please"
    [stored] = standin.messages(FLEET.id)
    assert (stored.user, stored.ts, stored.is_bot_message) == (BOB.id, event["ts"], False)
    request = event_request(standin, event=event, event_id="Ev0TEST0001")
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert (body["type"], body["event_id"], body["event"]["ts"]) == (
        "event_callback",
        "Ev0TEST0001",
        event["ts"],
    )
    assert body["authorizations"][0]["user_id"] == standin.identity.bot_user_id


# -- deliver ------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def recorder(status: int) -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Handler", (_Recorder,), {"received": received, "status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack/events", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_deliver_sends_exact_bytes_and_retry_headers(standin: SlackStandIn) -> None:
    request = slash_command_request(standin, command="/runctl", text="list", user=ALICE.id, channel=FLEET.id)
    with recorder(200) as (url, received):
        first = deliver(url, request.body, request.headers)
        retried = deliver(url, request.body, request.headers, retry_num=2)

    assert (first.status, first.text, retried.status) == (200, "ok", 200)
    (headers_1, body_1), (headers_2, body_2) = received
    assert body_1 == body_2 == request.body
    assert headers_1["X-Slack-Signature"] == request.headers["X-Slack-Signature"]
    assert "X-Slack-Retry-Num" not in headers_1
    assert (headers_2["X-Slack-Retry-Num"], headers_2["X-Slack-Retry-Reason"]) == ("2", "http_timeout")

    with recorder(401) as (url, _):
        refused = deliver(url, request.body, request.headers)
    assert refused.status == 401


# -- a real Bolt app over HTTP ------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def bolt_over_http(app: App) -> Iterator[str]:
    server: WSGIServer = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def build_app(standin: SlackStandIn) -> App:
    app = App(client=standin_web_client(standin), signing_secret=standin.signing_secret)

    @app.command("/runctl")
    def runctl(ack: Ack, respond: Respond, command: JSON, client: WebClient) -> None:
        if command["text"] == "help":
            ack("Usage: /runctl <verb> [args]")
            return
        ack()
        if command["text"] == "approve-demo":
            client.chat_postMessage(
                channel=command["channel_id"], text="Approval needed", blocks=APPROVAL_BLOCKS
            )
        else:
            respond(text=f"Fleet of <@{command['user_id']}>: 0 machines", response_type="in_channel")

    @app.action("approve")
    def approve(ack: Ack, body: JSON, respond: Respond) -> None:
        ack()
        respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    @app.event("app_mention")
    def mention(event: JSON, say: Say, context: BoltContext) -> None:
        say(text=f"hello <@{event['user']}>", thread_ts=event["ts"])

    return app


def test_bolt_app_end_to_end_over_signed_http(standin: SlackStandIn) -> None:
    app = build_app(standin)
    assert [c.method for c in standin.calls()] == ["auth.test"]

    with bolt_over_http(app) as url:
        help_answer = send(
            standin,
            url,
            slash_command_request(standin, command="/runctl", text="help", user=ALICE.id, channel=FLEET.id),
        )
        assert help_answer.status == 200
        [usage] = standin.ephemerals(user=ALICE.id)
        assert (usage.text, usage.source) == ("Usage: /runctl <verb> [args]", "command_reply")

        listed = send(
            standin,
            url,
            slash_command_request(standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id),
        )
        assert (listed.status, listed.body) == (200, b"")
        reply = standin.wait_for(lambda: standin.messages(FLEET.id), timeout=5)
        assert reply[0].text == f"Fleet of <@{BOB.id}>: 0 machines"

        send(
            standin,
            url,
            slash_command_request(
                standin, command="/runctl", text="approve-demo", user=BOB.id, channel=FLEET.id
            ),
        )
        approval = standin.wait_for(
            lambda: [m for m in standin.messages(FLEET.id) if m.text == "Approval needed"], timeout=5
        )[0]
        clicked = send(
            standin, url, block_actions_request(standin, user=CAROL.id, action_id="approve", message=approval)
        )
        assert clicked.status == 200
        decided = standin.wait_for(
            lambda: (
                (m := standin.message(FLEET.id, approval.ts)) is not None
                and m.text.startswith("Approved")
                and m
            ),
            timeout=5,
        )
        assert decided and decided.text == f"Approved by <@{CAROL.id}>" and decided.blocks == []

        event = build_message_event(standin, user=BOB.id, channel=FLEET.id, text="hi", mention=True)
        assert send(standin, url, event_request(standin, event=event)).status == 200
        answer = standin.wait_for(lambda: standin.messages(FLEET.id, thread_ts=event["ts"])[1:], timeout=5)
        assert answer[0].text == f"hello <@{BOB.id}>"


def test_bolt_refuses_forged_and_stale_requests(standin: SlackStandIn) -> None:
    app = build_app(standin)
    with bolt_over_http(app) as url:
        forged = slash_command_request(
            standin, command="/runctl", text="list", user=BOB.id, channel=FLEET.id, signing_secret="wrong"
        )
        stale = slash_command_request(
            standin,
            command="/runctl",
            text="list",
            user=BOB.id,
            channel=FLEET.id,
            timestamp=int(SignatureVerifier(".").clock.now()) - 301,
        )

        assert send(standin, url, forged).status == 401
        assert send(standin, url, stale).status == 401

    assert standin.messages() == [] and standin.response_posts() == [] and standin.ephemerals() == []
