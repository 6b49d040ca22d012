"""The sandbox page's JSON API, end to end: API → signed request → real Bolt app → stand-in → API."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.core.commands import VERBS
from bot.sandbox.users import ADMIN, APPROVER, DEMO_CHANNEL, DEMO_PEOPLE, OUTSIDER, REQUESTER
from bot.sandbox.web import SandboxApp, SandboxWeb
from bot.slack.standin import Message, SlackStandIn
from tests.integration.sandbox.harness import tiny_png


def call(
    url: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json"} if payload is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(
        url, data=payload, headers=all_headers, method="POST" if payload is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers.items()), error.read()


def api(web: SandboxWeb, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    status, _, raw = call(web.url + path, body, **kwargs)
    data = json.loads(raw)
    data["_status"] = status
    return data


def state(web: SandboxWeb, user: str) -> Any:
    return api(web, f"/api/state?user={user}")


def command(web: SandboxWeb, user: str, text: str) -> Any:
    return api(web, "/api/command", {"user": user, "text": text})


def approval_card(standin: SlackStandIn) -> Message:
    """Wait for the tiny bot's approval card (the top-level message with buttons)."""
    found = standin.wait_for(
        lambda: [m for m in standin.messages(DEMO_CHANNEL.id) if m.blocks and not m.is_reply],
        5,
        "the approval card",
    )
    return found[0]


def test_page_and_assets_are_served_locally_with_a_strict_policy(web: SandboxWeb) -> None:
    status, headers, page = call(web.url + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in policy and "script-src 'self'" in policy and "img-src 'self' data:" in policy
    )
    html = page.decode()
    assert '<script src="/static/app.js"' in html and 'href="/static/app.css"' in html
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset_status, asset_headers, asset = call(f"{web.url}/static/{name}")
        assert asset_status == 200 and asset_headers["Content-Type"].startswith(kind)
        text = asset.decode()
        assert "@import" not in text and "@font-face" not in text
        # The only absolute URL in the assets is the SVG namespace, which is a name, not a fetch.
        assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert not re.findall(r"(?:src|href)=\"https?:", html)
    assert call(web.url + "/static/../web.py")[0] == 404


def test_config_has_the_four_people_and_every_verb(web: SandboxWeb) -> None:
    config = api(web, "/api/config")
    assert [(p["id"], p["role"]) for p in config["people"]] == [(p.id, p.role) for p in DEMO_PEOPLE]
    assert config["channel"] == {
        "id": DEMO_CHANNEL.id,
        "name": "ml-fleet",
        "topic": DEMO_CHANNEL.topic,
        "purpose": DEMO_CHANNEL.purpose,
    }
    assert config["command"] == "/runctl"
    assert [v["name"] for v in config["verbs"]] == list(VERBS)
    terminate = next(v for v in config["verbs"] if v["name"] == "terminate")
    assert terminate["usage"] == VERBS["terminate"].usage
    assert terminate["summary"] == VERBS["terminate"].summary


def test_a_command_reaches_bolt_signed_and_its_answers_show_up(
    web: SandboxWeb, standin: SlackStandIn
) -> None:
    answer = command(web, REQUESTER.id, "/runctl hello")
    assert answer == {"kind": "command", "ok": True, "status": 200, "_status": 200}  # Bolt verified it
    card = approval_card(standin)
    standin.wait_for(
        lambda: card.ts in {r.thread_ts for r in standin.messages(DEMO_CHANNEL.id) if r.is_reply}
    )

    seen = state(web, REQUESTER.id)
    [message] = seen["channel"]["messages"]
    assert message["ts"] == card.ts and message["is_bot"] is True
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "context", "divider", "actions"]
    buttons = message["blocks"][4]["elements"]
    assert [(b["action_id"], b.get("style")) for b in buttons] == [("approve", "primary"), ("deny", "danger")]
    assert message["reply_count"] == 1
    assert [r["text"] for r in message["replies"]] == ["Waiting for an approver since _now_."]
    # The bot's synchronous HTTP answer is an ephemeral for the person who typed the command.
    [ack] = seen["channel"]["ephemerals"]
    assert ack["text"] == "Working on `hello` for you…" and ack["recipient"] == REQUESTER.id
    assert ack["ephemeral"] is True and ack["source"] == "command_reply"
    assert [p.via for p in standin.response_posts()] == ["command_reply"]


@pytest.mark.parametrize("viewer", [APPROVER, ADMIN, OUTSIDER])
def test_an_ephemeral_is_shown_only_to_its_recipient(
    web: SandboxWeb, standin: SlackStandIn, viewer: Any
) -> None:
    command(web, REQUESTER.id, "/runctl hello")
    approval_card(standin)
    seen = state(web, viewer.id)
    assert seen["channel"]["ephemerals"] == []
    assert len(seen["channel"]["messages"]) == 1


def test_a_click_is_delivered_as_block_actions_and_the_update_is_reflected_in_place(
    web: SandboxWeb, standin: SlackStandIn
) -> None:
    command(web, REQUESTER.id, "/runctl hello")
    card = approval_card(standin)
    clicked = api(
        web,
        "/api/action",
        {
            "user": APPROVER.id,
            "channel": card.channel,
            "ts": card.ts,
            "action_id": "approve",
            "block_id": "decision",
        },
    )
    assert clicked == {"kind": "action", "ok": True, "status": 200, "_status": 200}
    standin.wait_for(lambda: standin.message(card.channel, card.ts).edited_ts, 5, "chat.update")  # type: ignore[union-attr]
    [message] = state(web, REQUESTER.id)["channel"]["messages"]
    assert message["ts"] == card.ts and message["edited"] is True
    assert message["blocks"][0]["text"]["text"] == f":white_check_mark: Approved by <@{APPROVER.id}>"
    assert [c.method for c in standin.calls() if c.method == "chat.update"] == ["chat.update"]


def test_deny_replaces_the_card_through_the_response_url(web: SandboxWeb, standin: SlackStandIn) -> None:
    command(web, REQUESTER.id, "/runctl hello")
    card = approval_card(standin)
    api(web, "/api/action", {"user": ADMIN.id, "channel": card.channel, "ts": card.ts, "action_id": "deny"})
    standin.wait_for(lambda: any(p.outcome == "replaced" for p in standin.response_posts()), 5, "respond()")
    [message] = state(web, ADMIN.id)["channel"]["messages"]
    assert message["text"] == f":x: Denied by <@{ADMIN.id}>" and message["blocks"] == []


def test_a_response_url_ephemeral_can_be_clicked_only_by_its_recipient(
    web: SandboxWeb, standin: SlackStandIn
) -> None:
    assert command(web, APPROVER.id, "/runctl whisper")["ok"] is True
    [whisper] = standin.wait_for(lambda: standin.ephemerals(user=APPROVER.id), 5, "the whisper")
    assert whisper.source == "response_url"
    [shown] = state(web, APPROVER.id)["channel"]["ephemerals"]
    assert shown["blocks"][0]["text"]["text"] == "Psst, only you see *this*."
    assert state(web, REQUESTER.id)["channel"]["ephemerals"] == []

    target = {"channel": whisper.channel, "ts": whisper.ts, "action_id": "whisper_ok", "ephemeral": True}
    refused = api(web, "/api/action", {"user": REQUESTER.id, **target})
    assert refused["_status"] == 404 and refused["error"] == "message_not_found"
    assert api(web, "/api/action", {"user": APPROVER.id, **target})["ok"] is True
    standin.wait_for(lambda: standin.ephemeral(whisper.ts).text == "Thanks, noted.", 5, "replace")  # type: ignore[union-attr]
    [replaced] = state(web, APPROVER.id)["channel"]["ephemerals"]
    assert replaced["text"] == "Thanks, noted." and replaced["edited"] is True


def test_direct_messages_appear_in_the_recipients_panel_and_their_buttons_work(
    web: SandboxWeb, standin: SlackStandIn
) -> None:
    command(web, REQUESTER.id, "/runctl dm")
    [dm] = standin.wait_for(lambda: standin.dms(REQUESTER.id), 5, "the DM")
    mine = state(web, REQUESTER.id)
    assert mine["dm"]["id"] == dm.channel
    assert [m["text"] for m in mine["dm"]["messages"]] == ["Your machine looks idle"]
    assert state(web, APPROVER.id)["dm"] is None

    clicked = api(
        web, "/api/action", {"user": REQUESTER.id, "channel": dm.channel, "ts": dm.ts, "action_id": "keep"}
    )
    assert clicked["ok"] is True
    standin.wait_for(lambda: standin.dms(REQUESTER.id)[0].edited_ts, 5, "the DM's update")
    assert state(web, REQUESTER.id)["dm"]["messages"][0]["text"] == "Kept for 4 h"
    someone_else = api(
        web, "/api/action", {"user": APPROVER.id, "channel": dm.channel, "ts": dm.ts, "action_id": "keep"}
    )
    assert someone_else["_status"] == 403 and someone_else["error"] == "channel_not_visible"


def test_uploaded_images_are_served_and_referenced_locally(web: SandboxWeb, standin: SlackStandIn) -> None:
    command(web, REQUESTER.id, "/runctl chart")
    standin.wait_for(
        lambda: len([m for m in standin.messages(DEMO_CHANNEL.id) if m.user != REQUESTER.id]) == 2
    )
    shared, image = state(web, OUTSIDER.id)["channel"]["messages"]
    [file] = shared["files"]
    assert file["is_image"] is True and file["mimetype"] == "image/png" and file["title"] == "Cost this week"
    status, headers, body = call(web.url + file["src"])
    assert status == 200 and headers["Content-Type"] == "image/png" and body == tiny_png()
    assert headers["Content-Disposition"].startswith("inline")
    assert image["blocks"][0]["sandbox_src"] == file["src"]
    assert call(web.url + "/api/files/F0NOSUCHFILE")[0] == 404


def test_only_local_image_sources_are_offered(web: SandboxWeb, standin: SlackStandIn) -> None:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    client.chat_postMessage(
        channel=DEMO_CHANNEL.id,
        text="images",
        blocks=[
            {"type": "image", "image_url": "https://example.com/chart.png", "alt_text": "outside"},
            {
                "type": "context",
                "elements": [
                    {"type": "image", "image_url": "data:image/png;base64,iVBORw0K", "alt_text": "inline"}
                ],
            },
        ],
    )
    [message] = state(web, REQUESTER.id)["channel"]["messages"]
    assert message["blocks"][0]["sandbox_src"] is None
    assert message["blocks"][1]["elements"][0]["sandbox_src"] == "data:image/png;base64,iVBORw0K"
    assert message["blocks"][0]["image_url"] == "https://example.com/chart.png"  # the original is kept


def test_typed_text_is_escaped_and_mentions_are_linked_as_slack_does(
    web: SandboxWeb, standin: SlackStandIn
) -> None:
    posted = command(web, REQUESTER.id, "hi @amir in #ml-fleet: a<b & @nobody")
    assert posted["ok"] is True and posted["kind"] == "message"
    [message] = standin.messages(DEMO_CHANNEL.id)
    assert message.user == REQUESTER.id
    assert message.text == f"hi <@{APPROVER.id}|amir> in <#{DEMO_CHANNEL.id}|ml-fleet>: a&lt;b &amp; @nobody"

    command(web, REQUESTER.id, "/runctl cost @grace")
    [ack] = standin.wait_for(lambda: standin.ephemerals(user=REQUESTER.id), 5)
    assert ack.text == f"Working on `cost <@{ADMIN.id}|grace>` for you…"


def test_failures_are_reported_the_way_slack_reports_them(web: SandboxWeb, standin: SlackStandIn) -> None:
    unknown = command(web, REQUESTER.id, "/deploy prod")
    assert unknown["ok"] is False and unknown["error"] == "unknown_command"

    wrong_secret = SandboxApp(standin, web.app.bot_url, "not-the-secret", channel_id=DEMO_CHANNEL.id)
    refused = wrong_secret.run_command({"user": REQUESTER.id, "text": "/runctl hello"})
    assert refused["ok"] is False and refused["status"] == 401 and refused["error"] == "dispatch_failed"

    with SandboxWeb(standin, "http://127.0.0.1:9/slack/events", channel_id=DEMO_CHANNEL.id) as closed:
        gone = command(closed, REQUESTER.id, "/runctl hello")
    assert gone["ok"] is False and gone["error"] == "dispatch_failed"
    assert standin.messages() == [] and standin.ephemerals() == []


def test_requests_from_elsewhere_are_refused(web: SandboxWeb) -> None:
    body = {"user": REQUESTER.id, "text": "/runctl hello"}
    assert api(web, "/api/config", headers={"Host": "evil.example:80"})["error"] == "forbidden_host"
    text_plain = call(
        web.url + "/api/command", data=json.dumps(body).encode(), headers={"Content-Type": "text/plain"}
    )
    assert text_plain[0] == 415
    cross = api(web, "/api/command", body, headers={"Origin": "http://evil.example"})
    assert cross["_status"] == 403 and cross["error"] == "forbidden_origin"
    stranger = api(web, "/api/command", {"user": "U0STRANGER", "text": "/runctl hello"})
    assert stranger["_status"] == 400 and stranger["error"] == "unknown_user"
    assert api(web, "/api/state?user=U0STRANGER")["_status"] == 400
    assert api(web, "/api/command")["_status"] == 405


def test_the_state_long_poll_answers_when_something_changes(web: SandboxWeb, standin: SlackStandIn) -> None:
    version = state(web, REQUESTER.id)["version"]
    answers: list[Any] = []
    started = threading.Event()

    def poll() -> None:
        started.set()
        answers.append(api(web, f"/api/state?user={REQUESTER.id}&since={version}&wait=20"))

    poller = threading.Thread(target=poll)
    poller.start()
    started.wait(5)
    standin.add_message(DEMO_CHANNEL.id, APPROVER.id, "anyone there?")
    poller.join(15)
    assert not poller.is_alive()
    [answer] = answers
    assert answer["version"] > version
    assert [m["text"] for m in answer["channel"]["messages"]] == ["anyone there?"]


def test_stopping_releases_pending_long_polls(standin: SlackStandIn, bot_url: str) -> None:
    web = SandboxWeb(standin, bot_url, channel_id=DEMO_CHANNEL.id).start()
    version = standin.version
    answers: list[int] = []

    def poll() -> None:
        answers.append(call(f"{web.url}/api/state?user={REQUESTER.id}&since={version}&wait=25")[0])

    poller = threading.Thread(target=poll)
    poller.start()
    web.app.wait_for_change(version, 0.2)  # give the request time to arrive; returns unchanged
    web.stop()
    poller.join(10)
    assert not poller.is_alive() and answers == [200]
    web.stop()  # idempotent
    with pytest.raises(RuntimeError):
        web.start()


def test_only_loopback_addresses_can_be_bound(standin: SlackStandIn, bot_url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxWeb(standin, bot_url, channel_id=DEMO_CHANNEL.id, host="0.0.0.0")
    with pytest.raises(ValueError, match="not in the stand-in"):
        SandboxWeb(standin, bot_url, channel_id="C0NOTHERE1")
