"""Block Kit limits: a message Slack would refuse is refused, with Slack's ``invalid_blocks`` shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, HeaderBlock, SectionBlock

from bot.slack.standin import SlackStandIn, validate_blocks
from tests.support.slack import FLEET, running_standin, standin_web_client

JSON = dict[str, Any]


def plain(text: str) -> JSON:
    return {"type": "plain_text", "text": text}


def section(text: str) -> JSON:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str, text: str = "Go", value: str = "v") -> JSON:
    return {"type": "button", "text": plain(text), "action_id": action_id, "value": value}


def actions(*elements: JSON, block_id: str | None = None) -> JSON:
    block: JSON = {"type": "actions", "elements": list(elements)}
    if block_id is not None:
        block["block_id"] = block_id
    return block


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return standin_web_client(standin)


INVALID: list[tuple[str, list[JSON], str]] = [
    ("51 blocks", [{"type": "divider"}] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
    (
        "section text 3001",
        [section("x" * 3001)],
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ),
    (
        "empty section text",
        [section("")],
        "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
    ),
    (
        "11 fields",
        [{"type": "section", "fields": [plain("f")] * 11}],
        "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
    ),
    (
        "field 2001",
        [{"type": "section", "fields": [plain("x" * 2001)]}],
        "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
    ),
    ("section without text", [{"type": "section"}], "section needs text or fields [json-pointer:/blocks/0]"),
    (
        "header 151",
        [{"type": "header", "text": plain("h" * 151)}],
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
    ),
    (
        "mrkdwn header",
        [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}],
        "[json-pointer:/blocks/0/text/type]",
    ),
    (
        "11 context elements",
        [{"type": "context", "elements": [plain("c")] * 11}],
        "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
    ),
    (
        "26 buttons",
        [actions(*(button(f"b{i}") for i in range(26)))],
        "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
    ),
    (
        "button text 76",
        [actions(button("b", text="t" * 76))],
        "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
    ),
    (
        "button value 2001",
        [actions(button("b", value="v" * 2001))],
        "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
    ),
    (
        "action_id 256",
        [actions(button("a" * 256))],
        "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
    ),
    (
        "block_id 256",
        [actions(button("b"), block_id="k" * 256)],
        "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
    ),
    (
        "duplicate action_id across blocks",
        [actions(button("approve")), actions(button("approve"))],
        "duplicate action_id 'approve' [json-pointer:/blocks/1/elements/0/action_id]",
    ),
    (
        "duplicate block_id",
        [{"type": "divider", "block_id": "same"}, {"type": "divider", "block_id": "same"}],
        "duplicate block_id 'same' [json-pointer:/blocks/1/block_id]",
    ),
    (
        "image without alt_text",
        [{"type": "image", "image_url": "https://example.invalid/chart.png"}],
        "missing required field [json-pointer:/blocks/0/alt_text]",
    ),
    (
        "image without source",
        [{"type": "image", "alt_text": "chart"}],
        "must provide exactly one of image_url or slack_file [json-pointer:/blocks/0]",
    ),
    (
        "unknown block type",
        [{"type": "input", "element": {}}],
        "unsupported block type 'input' [json-pointer:/blocks/0/type]",
    ),
    (
        "markdown over 12000",
        [{"type": "markdown", "text": "m" * 6001}, {"type": "markdown", "text": "m" * 6000}],
        "markdown blocks must total less than 12001 characters per message [json-pointer:/blocks]",
    ),
    (
        "button style",
        [actions({**button("b"), "style": "fancy"})],
        "style must be primary or danger [json-pointer:/blocks/0/elements/0/style]",
    ),
]


@pytest.mark.parametrize(
    ("blocks", "problem"), [(b, p) for _, b, p in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_limit_breaks_are_rejected_as_invalid_blocks(
    standin: SlackStandIn, client: WebClient, blocks: list[JSON], problem: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=FLEET.id, text="fallback", blocks=blocks)

    data = excinfo.value.response.data
    assert isinstance(data, dict)
    assert data["error"] == "invalid_blocks"
    assert any(problem in e for e in data["errors"]), data["errors"]
    messages = data["response_metadata"]["messages"]
    assert messages and all(m.startswith("[ERROR] ") for m in messages)
    assert standin.messages() == []


def test_messages_exactly_at_the_limits_are_accepted(standin: SlackStandIn, client: WebClient) -> None:
    blocks: list[JSON] = [
        {"type": "header", "text": plain("h" * 150)},
        section("s" * 3000),
        {"type": "section", "fields": [plain("f" * 2000)] * 10},
        {"type": "context", "elements": [plain("c")] * 10},
        actions(*(button(f"b{i}", text="t" * 75, value="v" * 2000) for i in range(25))),
        {"type": "image", "image_url": "https://example.invalid/c.png", "alt_text": "cost chart"},
        {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": []}]},
        {"type": "markdown", "text": "m" * 12000},
    ]
    blocks += [{"type": "divider"}] * (50 - len(blocks))

    response = client.chat_postMessage(channel=FLEET.id, text="fallback", blocks=blocks)

    assert len(response["message"]["blocks"]) == 50
    assert len(standin.messages(FLEET.id)) == 1


def test_sdk_model_objects_are_accepted_and_ids_are_filled_in(
    standin: SlackStandIn, client: WebClient
) -> None:
    blocks = [
        HeaderBlock(text="Terminate i-0123456789abcdef0?"),
        SectionBlock(text="*Owner* <@U0BOB00002>"),
        ActionsBlock(
            elements=[
                ButtonElement(text="Approve", style="primary", value="appr-1"),
                ButtonElement(text="Deny", style="danger", value="appr-1", action_id="deny"),
            ]
        ),
    ]

    message = client.chat_postMessage(channel=FLEET.id, text="Approval needed", blocks=blocks)["message"]

    ids = [b["block_id"] for b in message["blocks"]]
    assert len(set(ids)) == 3
    approve, deny = message["blocks"][2]["elements"]
    assert approve["action_id"] and approve["action_id"] != "deny"
    assert deny["action_id"] == "deny"


def test_missing_text_fallback_is_a_notice_not_an_error(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.warns(UserWarning, match="top-level `text`"):
        ts = client.chat_postMessage(channel=FLEET.id, blocks=[section("no fallback")])["ts"]

    [notice] = standin.notices()
    assert (notice.method, notice.channel, notice.ts) == ("chat.postMessage", FLEET.id, ts)
    assert "fallback" in notice.text
    stored = standin.message(FLEET.id, ts)
    assert stored is not None and stored.warnings == (notice.text,)


def test_validator_collects_every_problem_and_leaves_the_input_alone() -> None:
    original: list[JSON] = [section(""), {"type": "header", "text": plain("h" * 200)}, actions(button("x"))]
    counter = iter(range(100))

    report = validate_blocks(original, new_id=lambda: f"id{next(counter)}", has_text_fallback=True)

    assert not report.ok
    assert len(report.errors) == 2
    assert "block_id" not in original[0]
    assert [b["block_id"] for b in report.blocks] == ["id0", "id1", "id2"]
