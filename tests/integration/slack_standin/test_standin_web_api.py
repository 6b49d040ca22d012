"""The stand-in's Web API through the real ``slack_sdk.WebClient``: shapes, state and error names."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.standin import SlackStandIn
from tests.support.slack import (
    ALICE,
    ARCHIVED,
    BOB,
    DAVE,
    FLEET,
    NOT_JOINED,
    PRIVATE,
    running_standin,
    standin_web_client,
)

MISSING_TEXT_WARNING = "ignore:The top-level `text` argument is missing:UserWarning"
TS_PATTERN = re.compile(r"^\d{10}\.\d{6}$")
WINTER = 1_705_000_000.0  # 2024-01-11, no daylight saving anywhere north


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None, clock=lambda: WINTER) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return standin_web_client(standin)


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> Any:
    return excinfo.value.response["error"]


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        parsed: dict[str, Any] = json.loads(response.read())
        return parsed


def test_auth_test_returns_the_bot_identity(standin: SlackStandIn, client: WebClient) -> None:
    response = client.auth_test()

    assert response.status_code == 200
    assert response["user_id"] == standin.identity.bot_user_id
    assert response["bot_id"] == standin.identity.bot_id
    assert response["team_id"] == standin.identity.team_id
    assert response["team"] == standin.identity.team_name
    assert response["url"] == f"{standin.url}/"
    assert "chat:write" in response.headers["X-OAuth-Scopes"]


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, "not_authed"), ("xoxb-wrong", "invalid_auth"), ("xapp-standin", "not_allowed_token_type")],
)
def test_bad_tokens_are_refused_with_slack_error_names(
    standin: SlackStandIn, token: str | None, error: str
) -> None:
    client = WebClient(token=token, base_url=standin.api_url)

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=FLEET.id, text="hello")

    assert excinfo.value.response.status_code == 200
    assert slack_error(excinfo) == error
    assert standin.messages() == []


def test_the_app_token_is_only_for_apps_connections_open(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.apps_connections_open(app_token=standin.bot_token)

    assert slack_error(excinfo) == "not_allowed_token_type"
    url = client.apps_connections_open(app_token=standin.app_token)["url"]
    assert url.startswith(f"ws://127.0.0.1:{standin.port}/link/?ticket=")


def test_unknown_method_answers_unknown_method_with_http_200(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.postMessageX", json={"channel": FLEET.id, "text": "hi"})

    assert excinfo.value.response.status_code == 200
    assert slack_error(excinfo) == "unknown_method"


def test_post_message_returns_slack_shape_and_is_stored(standin: SlackStandIn, client: WebClient) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Launch* requested"}},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "value": "a-1"}
            ],
        },
    ]

    response = client.chat_postMessage(channel=FLEET.id, text="Launch requested", blocks=blocks)

    assert response["channel"] == FLEET.id
    assert TS_PATTERN.match(response["ts"])
    message = response["message"]
    assert message["type"] == "message"
    assert message["ts"] == response["ts"]
    assert message["text"] == "Launch requested"
    assert message["user"] == standin.identity.bot_user_id
    assert message["bot_id"] == standin.identity.bot_id
    assert message["bot_profile"]["app_id"] == standin.identity.app_id
    assert all(len(block["block_id"]) == 5 for block in message["blocks"])
    button = message["blocks"][1]["elements"][0]
    assert button["action_id"] and button["value"] == "a-1"

    stored = standin.messages(FLEET.id)
    assert [m.ts for m in stored] == [response["ts"]]
    assert stored[0].blocks == message["blocks"]
    assert standin.message_json(stored[0]) == message


def test_timestamps_strictly_increase_even_when_the_clock_stands_still(
    standin: SlackStandIn, client: WebClient
) -> None:
    stamps = [client.chat_postMessage(channel=FLEET.id, text=f"m{i}")["ts"] for i in range(3)]

    assert stamps == ["1705000000.000000", "1705000000.000001", "1705000000.000002"]


def test_user_id_as_channel_posts_into_the_bot_dm(standin: SlackStandIn, client: WebClient) -> None:
    response = client.chat_postMessage(channel=BOB.id, text="your machine is idle")

    dm = standin.dm_channel(BOB.id)
    assert dm is not None and dm.startswith("D")
    assert response["channel"] == dm
    assert [m.text for m in standin.dms(BOB.id)] == ["your machine is idle"]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"channel": "C0NOSUCH99", "text": "x"}, "channel_not_found"),
        ({"channel": "ml-fleet", "text": "x"}, "channel_not_found"),
        ({"channel": FLEET.id}, "no_text"),
        ({"channel": FLEET.id, "text": ""}, "no_text"),
        ({"channel": NOT_JOINED.id, "text": "x"}, "not_in_channel"),
        ({"channel": ARCHIVED.id, "text": "x"}, "is_archived"),
        ({"channel": FLEET.id, "text": "x" * 40001}, "msg_too_long"),
        ({"channel": FLEET.id, "text": "x", "thread_ts": "1600000000.000001"}, "thread_not_found"),
        ({"channel": FLEET.id, "text": "x", "thread_ts": "not-a-ts"}, "thread_not_found"),
        ({"channel": FLEET.id, "text": "x", "blocks": [{"type": "table"}]}, "invalid_blocks"),
        ({"channel": FLEET.id, "text": "x", "blocks": "{not json"}, "invalid_blocks_format"),
    ],
)
@pytest.mark.filterwarnings(MISSING_TEXT_WARNING)
def test_post_message_errors(
    standin: SlackStandIn, client: WebClient, arguments: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(**arguments)

    assert slack_error(excinfo) == error
    assert standin.messages() == []


def test_thread_replies_update_the_parent_like_slack(standin: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=FLEET.id, text="launching")["ts"]
    first = client.chat_postMessage(channel=FLEET.id, text="step 1", thread_ts=parent)
    second = client.chat_postMessage(channel=FLEET.id, text="step 2", thread_ts=parent)

    assert first["message"]["thread_ts"] == parent
    assert first["message"]["parent_user_id"] == standin.identity.bot_user_id
    thread = standin.messages(FLEET.id, thread_ts=parent)
    assert [m.text for m in thread] == ["launching", "step 1", "step 2"]
    head = thread[0]
    assert (head.thread_ts, head.reply_count, head.latest_reply) == (parent, 2, second["ts"])
    assert head.reply_users == (standin.identity.bot_user_id,)

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=FLEET.id, text="nested", thread_ts=first["ts"])
    assert slack_error(excinfo) == "cannot_reply_to_message"


def test_update_replaces_content_and_keeps_omitted_blocks(standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "plain_text", "text": "pending"}}]
    ts = client.chat_postMessage(channel=FLEET.id, text="pending", blocks=blocks)["ts"]

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": ":white_check_mark: approved"}}]
    updated = client.chat_update(channel=FLEET.id, ts=ts, text="approved", blocks=new_blocks)

    assert updated["channel"] == FLEET.id
    assert updated["ts"] == ts
    assert updated["text"] == "approved"
    assert updated["message"]["blocks"][0]["text"]["text"] == ":white_check_mark: approved"
    assert "edited" in updated["message"]

    client.chat_update(channel=FLEET.id, ts=ts, text="approved by carol")
    kept = standin.message(FLEET.id, ts)
    assert kept is not None
    assert kept.text == "approved by carol"
    assert kept.blocks[0]["text"]["text"] == ":white_check_mark: approved"
    assert any("keeps the previous blocks" in n.text for n in standin.notices())

    client.chat_update(channel=FLEET.id, ts=ts, text="plain now", blocks=[])
    cleared = standin.message(FLEET.id, ts)
    assert cleared is not None and cleared.blocks == [] and cleared.text == "plain now"
    assert len(standin.messages(FLEET.id)) == 1


@pytest.mark.filterwarnings(MISSING_TEXT_WARNING)
def test_update_errors(standin: SlackStandIn, client: WebClient) -> None:
    ts = client.chat_postMessage(channel=FLEET.id, text="mine")["ts"]
    ephemeral_ts = client.chat_postEphemeral(channel=FLEET.id, user=ALICE.id, text="only alice")["message_ts"]
    human = standin.add_message(FLEET.id, ALICE.id, "written by alice")

    cases = [
        ({"channel": FLEET.id, "ts": "1600000000.000001", "text": "x"}, "message_not_found"),
        ({"channel": FLEET.id, "ts": ephemeral_ts, "text": "x"}, "message_not_found"),
        ({"channel": FLEET.id, "ts": human.ts, "text": "x"}, "cant_update_message"),
        ({"channel": "C0NOSUCH99", "ts": ts, "text": "x"}, "channel_not_found"),
        ({"channel": FLEET.id, "ts": ts}, "no_text"),
        ({"channel": FLEET.id, "ts": ts, "text": "x" * 40001}, "msg_too_long"),
        (
            {
                "channel": FLEET.id,
                "ts": ts,
                "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            },
            "invalid_blocks",
        ),
    ]
    for arguments, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_update(**arguments)
        assert slack_error(excinfo) == error, arguments

    untouched = standin.message(FLEET.id, ts)
    assert untouched is not None and untouched.text == "mine" and untouched.edited_ts is None


@pytest.mark.filterwarnings(MISSING_TEXT_WARNING)
def test_ephemerals_are_kept_apart_and_need_a_member(standin: SlackStandIn, client: WebClient) -> None:
    response = client.chat_postEphemeral(channel=FLEET.id, user=ALICE.id, text="only you can see this")

    assert TS_PATTERN.match(response["message_ts"])
    assert set(response.data) == {"ok", "message_ts"}
    assert standin.messages() == []
    [ephemeral] = standin.ephemerals(user=ALICE.id)
    assert (ephemeral.channel, ephemeral.text, ephemeral.ts) == (
        FLEET.id,
        "only you can see this",
        response["message_ts"],
    )
    assert standin.ephemerals(user=BOB.id) == []

    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": FLEET.id, "user": "U0NOSUCH99", "text": "x"}, "user_not_found"),
        ({"channel": PRIVATE.id, "user": DAVE.id, "text": "x"}, "user_not_in_channel"),
        ({"channel": "C0NOSUCH99", "user": ALICE.id, "text": "x"}, "channel_not_found"),
        ({"channel": FLEET.id, "user": ALICE.id, "text": ""}, "no_text"),
    ]
    for arguments, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postEphemeral(**arguments)
        assert slack_error(excinfo) == error, arguments


def test_delete_removes_bot_messages_only(standin: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=FLEET.id, text="parent")["ts"]
    reply = client.chat_postMessage(channel=FLEET.id, text="reply", thread_ts=parent)["ts"]
    human = standin.add_message(FLEET.id, ALICE.id, "hello bot")

    assert client.chat_delete(channel=FLEET.id, ts=reply).data == {
        "ok": True,
        "channel": FLEET.id,
        "ts": reply,
    }
    head = standin.message(FLEET.id, parent)
    assert head is not None and head.reply_count == 0 and head.thread_ts is None

    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": FLEET.id, "ts": reply}, "message_not_found"),
        ({"channel": FLEET.id, "ts": human.ts}, "cant_delete_message"),
        ({"channel": "C0NOSUCH99", "ts": parent}, "channel_not_found"),
    ]
    for arguments, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_delete(**arguments)
        assert slack_error(excinfo) == error, arguments
    assert [m.ts for m in standin.messages(FLEET.id)] == [parent, human.ts]


def test_conversations_open_gives_one_dm_per_user(standin: SlackStandIn, client: WebClient) -> None:
    first = client.conversations_open(users=BOB.id)
    again = client.conversations_open(users=[BOB.id])

    dm = first["channel"]["id"]
    assert dm.startswith("D") and again["channel"]["id"] == dm
    assert "already_open" not in first.data and again["already_open"] is True
    info = client.conversations_info(channel=dm)["channel"]
    assert (info["is_im"], info["user"]) == (True, BOB.id)
    assert client.conversations_open(users=BOB.id, return_im=True)["channel"]["is_im"] is True

    client.chat_postMessage(channel=dm, text="direct")
    assert [m.text for m in standin.dms(BOB.id)] == ["direct"]
    assert standin.dms(ALICE.id) == []

    group = client.conversations_open(users=[ALICE.id, BOB.id])["channel"]["id"]
    assert group != dm and client.conversations_info(channel=group)["channel"]["is_mpim"] is True

    cases: list[tuple[dict[str, Any], str]] = [
        ({"users": "U0NOSUCH99"}, "user_not_found"),
        ({}, "users_list_not_supplied"),
        ({"channel": FLEET.id}, "channel_not_found"),
    ]
    for arguments, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.api_call("conversations.open", params=arguments)
        assert slack_error(excinfo) == error, arguments


def test_conversations_info(client: WebClient) -> None:
    channel = client.conversations_info(channel=PRIVATE.id)["channel"]

    assert channel["id"] == PRIVATE.id
    assert channel["name"] == "secret-project"
    assert (channel["is_private"], channel["is_channel"], channel["is_member"]) == (True, False, True)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_info(channel="C0NOSUCH99")
    assert slack_error(excinfo) == "channel_not_found"


def test_users_info_has_time_zone_and_roles(standin: SlackStandIn, client: WebClient) -> None:
    alice = client.users_info(user=ALICE.id)["user"]
    bob = client.users_info(user=BOB.id)["user"]
    bot = client.users_info(user=standin.identity.bot_user_id)["user"]

    assert (alice["name"], alice["real_name"], alice["is_admin"]) == ("alice", "Alice Admin", True)
    assert (alice["tz"], alice["tz_offset"], alice["tz_label"]) == ("Europe/Berlin", 3600, "CET")
    assert (bob["tz"], bob["tz_offset"], bob["is_admin"]) == ("America/New_York", -18000, False)
    assert bob["team_id"] == standin.identity.team_id
    assert bot["is_bot"] is True and bot["profile"]["bot_id"] == standin.identity.bot_id
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U0NOSUCH99")
    assert slack_error(excinfo) == "user_not_found"


def test_permalink(standin: SlackStandIn, client: WebClient) -> None:
    ts = client.chat_postMessage(channel=FLEET.id, text="x")["ts"]

    link = client.chat_getPermalink(channel=FLEET.id, message_ts=ts)["permalink"]

    assert link == f"{standin.url}/archives/{FLEET.id}/p{ts.replace('.', '')}"


def test_form_bodies_query_strings_and_body_tokens_are_accepted(standin: SlackStandIn) -> None:
    blocks = json.dumps([{"type": "section", "text": {"type": "plain_text", "text": "from a form"}}])
    form = urllib.parse.urlencode(
        {"token": standin.bot_token, "channel": FLEET.id, "text": "form", "blocks": blocks}
    ).encode()
    posted = raw_post(
        f"{standin.api_url}chat.postMessage", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert posted["ok"] is True
    assert posted["message"]["blocks"][0]["text"]["text"] == "from a form"

    request = urllib.request.Request(
        f"{standin.api_url}users.info?user={ALICE.id}",
        headers={"Authorization": f"Bearer {standin.bot_token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["user"]["id"] == ALICE.id

    bad = raw_post(
        f"{standin.api_url}chat.postMessage",
        b"{broken",
        {"Content-Type": "application/json", "Authorization": f"Bearer {standin.bot_token}"},
    )
    assert bad == {"ok": False, "error": "invalid_json"}


def test_every_call_is_journaled_without_tokens(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel=FLEET.id, text="journal me")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0NOSUCH99", text="x")

    calls = standin.calls("chat.postMessage")
    assert [(c.status, c.ok, c.error) for c in calls] == [
        (200, True, None),
        (200, False, "channel_not_found"),
    ]
    assert calls[0].params == {"channel": FLEET.id, "text": "journal me"}
    assert calls[0].headers["Authorization"] == "Bearer xoxb-<redacted>"
    assert calls[0].token_kind == "bot"
    assert isinstance(calls[0].response, dict) and calls[0].response["ts"]
    assert standin.bot_token not in repr(standin.calls())


def test_reset_forgets_activity_but_keeps_the_workspace(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel=BOB.id, text="hi")
    standin.fail_next("auth.test", status=500)

    standin.reset()

    assert standin.messages() == [] and standin.calls() == [] and standin.dm_channel(BOB.id) is None
    assert standin.pending_faults() == 0
    assert {u.id for u in standin.users()} >= {ALICE.id, BOB.id}
    assert client.auth_test()["ok"] is True


def test_wait_for_returns_the_value_or_times_out(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel=FLEET.id, text="ready")

    assert standin.wait_for(lambda: standin.messages(FLEET.id), timeout=1)[0].text == "ready"
    with pytest.raises(TimeoutError, match="nothing in ops"):
        standin.wait_for(lambda: standin.messages("C0OPS00002"), timeout=0.05, description="nothing in ops")
