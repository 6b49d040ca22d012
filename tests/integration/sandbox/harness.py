"""A tiny real Bolt app, the stand-in and the sandbox page, wired the way `runctl-bot sandbox` wires them.

The Bolt app is deliberately small but real: slack_bolt verifies every request's signature, acks within
the HTTP response (so its ack body becomes an ephemeral, as in Slack), and answers through the stand-in's
Web API and response URLs. What it does per `/runctl` text:

* `hello`: posts an approval card (header, section with fields, context, divider, Approve/Deny buttons)
  and a thread reply under it; Approve `chat.update`s the card, Deny replaces it through `response_url`.
* `dm`: opens a DM with the invoker and posts a reminder with a Keep button (clicked: `chat.update`).
* `chart`: uploads a PNG with `files_upload_v2` and posts an image block showing it.
* `whisper`: answers only through `response_url` (`respond`) with an ephemeral that has a button.
* anything else: only the ack.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.sandbox.users import DEMO_CHANNEL, DEMO_USERS
from bot.sandbox.web import SandboxWeb
from bot.slack.standin import SlackStandIn
from bot.web import HttpServer, make_wsgi_app

SIGNING_SECRET = "sandbox-test-signing-secret"


def tiny_png(width: int = 160, height: int = 90) -> bytes:
    """A valid PNG bar chart (truecolour, four green bars on white) without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bars = (0.35, 0.8, 0.55, 0.95)
    rows = []
    for y in range(height):
        level = 1.0 - y / height
        row = bytearray(b"\x00")  # filter type "none"
        for x in range(width):
            bar = x * len(bars) // width
            inside = x % (width // len(bars)) > 4 and level <= bars[bar]
            row += bytes((0, 122, 90)) if inside else b"\xff\xff\xff"
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def approval_blocks(requester: str, text: str) -> list[dict[str, Any]]:
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "Terminate request :warning:"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"<@{requester}> asks to *terminate* `i-0demo1234` (_{text}_). "
                f"See <#{DEMO_CHANNEL.id}>.",
            },
            "fields": [
                {"type": "mrkdwn", "text": "*Machine*\n`i-0demo1234`"},
                {"type": "mrkdwn", "text": "*Cost so far*\n$12.40"},
            ],
            "accessory": {
                "type": "button",
                "action_id": "details",
                "text": {"type": "plain_text", "text": "Details"},
                "value": "i-0demo1234",
            },
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "Needs an approver who is not the requester"},
                {"type": "plain_text", "text": "expires in 30 min"},
            ],
        },
        {"type": "divider"},
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": "op-1",
                },
                {
                    "type": "button",
                    "action_id": "deny",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Deny"},
                    "value": "op-1",
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Deny this request?"},
                        "text": {"type": "mrkdwn", "text": "The machine *keeps running*."},
                        "confirm": {"type": "plain_text", "text": "Deny"},
                        "deny": {"type": "plain_text", "text": "Keep waiting"},
                        "style": "danger",
                    },
                },
            ],
        },
    ]


def build_tiny_bot(standin: SlackStandIn, signing_secret: str = SIGNING_SECRET) -> App:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url, timeout=5)
    app = App(client=client, signing_secret=signing_secret)

    @app.command("/runctl")
    def runctl(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        text = command.get("text", "").strip()
        user = command["user_id"]
        channel = command["channel_id"]
        if text == "whisper":
            ack()
            respond(
                response_type="ephemeral",
                text="A whisper",
                blocks=[
                    {"type": "section", "text": {"type": "mrkdwn", "text": "Psst, only you see *this*."}},
                    {
                        "type": "actions",
                        "elements": [
                            {
                                "type": "button",
                                "action_id": "whisper_ok",
                                "text": {"type": "plain_text", "text": "Got it"},
                            }
                        ],
                    },
                ],
            )
            return
        ack(text=f"Working on `{text or 'nothing'}` for you…")
        if text == "hello":
            posted = client.chat_postMessage(
                channel=channel,
                text=f"<@{user}> asks to terminate i-0demo1234",
                blocks=approval_blocks(user, text),
            )
            client.chat_postMessage(
                channel=channel, thread_ts=posted["ts"], text="Waiting for an approver since _now_."
            )
        elif text == "dm":
            opened = client.conversations_open(users=user)
            client.chat_postMessage(
                channel=opened["channel"]["id"],
                text="Your machine looks idle",
                blocks=[
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": "`i-0idle` has been idle for *2 h*."},
                    },
                    {
                        "type": "actions",
                        "elements": [
                            {
                                "type": "button",
                                "action_id": "keep",
                                "text": {"type": "plain_text", "text": "Keep 4 h"},
                                "value": "4h",
                            }
                        ],
                    },
                ],
            )
        elif text == "chart":
            upload = client.files_upload_v2(
                channel=channel,
                content=tiny_png(),
                filename="cost-chart.png",
                title="Cost this week",
                alt_txt="cost chart",
            )
            file_id = upload["file"]["id"]
            client.chat_postMessage(
                channel=channel,
                text="Cost chart",
                blocks=[
                    {
                        "type": "image",
                        "slack_file": {"id": file_id},
                        "alt_text": "cost chart",
                        "title": {"type": "plain_text", "text": "This week"},
                    }
                ],
            )

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text="Approved",
            blocks=[
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f":white_check_mark: Approved by <@{body['user']['id']}>",
                    },
                }
            ],
        )

    @app.action("deny")
    def deny(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        respond(replace_original=True, text=f":x: Denied by <@{body['user']['id']}>")

    @app.action("keep")
    def keep(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text="Kept for 4 h",
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "Kept for *4 h*."}}],
        )

    @app.action("whisper_ok")
    def whisper_ok(ack: Ack, respond: Respond) -> None:
        ack()
        respond(replace_original=True, text="Thanks, noted.")

    @app.action("details")
    def details(ack: Ack) -> None:
        ack()

    return app


@contextmanager
def serve_bolt(app: App) -> Iterator[str]:
    """The Bolt app under waitress on 127.0.0.1; yields its `/slack/events` URL."""
    server = HttpServer(make_wsgi_app(SlackRequestHandler(app)), "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=server.serve_forever, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/slack/events"
    finally:
        server.close()
        thread.join(timeout=5)


@contextmanager
def sandbox_stack(signing_secret: str = SIGNING_SECRET) -> Iterator[tuple[SlackStandIn, str, SandboxWeb]]:
    """Stand-in (demo workspace, no rate limit) + tiny Bolt app + sandbox page, all on 127.0.0.1."""
    with SlackStandIn(
        users=DEMO_USERS,
        channels=[DEMO_CHANNEL],
        signing_secret=signing_secret,
        rate_limit_per_channel=None,
    ) as standin:
        app = build_tiny_bot(standin, signing_secret)
        with (
            serve_bolt(app) as bot_url,
            SandboxWeb(standin, bot_url, signing_secret, channel_id=DEMO_CHANNEL.id) as web,
        ):
            yield standin, bot_url, web
