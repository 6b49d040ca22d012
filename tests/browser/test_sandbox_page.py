"""The sandbox page as a person uses it: type a command, see Block Kit, switch user, click, see the update."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from slack_sdk import WebClient

from bot.sandbox.users import APPROVER, DEMO_CHANNEL, OUTSIDER, REQUESTER
from bot.slack.standin import SlackStandIn
from tests.browser.support import Shots, send, switch_to


def test_command_card_switch_user_click_and_update(page: Page, standin: SlackStandIn, shots: Shots) -> None:
    shots("page-loaded")
    send(page, "/runctl hello")

    header = page.locator("#messages .message", has=page.locator("[data-block-type=header]"))
    expect(header).to_have_count(1)
    card = page.locator(f'#messages .message[data-ts="{header.get_attribute("data-ts")}"]')
    expect(card.locator(".block-header")).to_have_text("Terminate request ⚠️")
    expect(card.locator(".block-section .mrkdwn b").first).to_have_text("terminate")
    expect(card.locator(".block-section .mention").first).to_have_text("@riya")
    expect(card.locator(".block-section .channel-mention")).to_have_text("#ml-fleet")
    expect(card.locator(".fields .field")).to_have_count(2)
    expect(card.locator(".block-context")).to_contain_text("Needs an approver")
    expect(card.locator("hr.block-divider")).to_have_count(1)
    approve = card.locator("button.bk-button", has_text="Approve")
    deny = card.locator("button.bk-button", has_text="Deny")
    expect(approve).to_have_class(re.compile(r"\bbk-primary\b"))
    expect(deny).to_have_class(re.compile(r"\bbk-danger\b"))
    ephemeral = page.locator("#messages .message.ephemeral")
    expect(ephemeral).to_have_count(1)
    expect(ephemeral).to_contain_text("Only visible to you")
    expect(ephemeral.locator(".message-body")).to_have_text("Working on hello for you…")
    shots("requester-sees-card-and-ephemeral")

    switch_to(page, APPROVER.id)
    expect(page.locator("#viewer-role")).to_have_text("approver")
    expect(card).to_have_count(1)
    expect(page.locator("#messages .message.ephemeral")).to_have_count(0)
    shots("approver-sees-card-without-the-ephemeral")

    card.locator("button.bk-button", has_text="Approve").click()
    expect(card.locator(".message-body")).to_contain_text(f"Approved by @{APPROVER.user.name}")
    expect(card.locator(".edited")).to_have_text("(edited)")
    expect(card.locator("button.bk-button")).to_have_count(0)
    shots("card-updated-in-place")

    [updated] = [m for m in standin.messages(DEMO_CHANNEL.id) if not m.is_reply]
    assert updated.edited_ts is not None and updated.text == "Approved"

    switch_to(page, REQUESTER.id)
    expect(page.locator("#messages .message.ephemeral")).to_have_count(1)
    page.locator("#messages .message.ephemeral .dismiss").click()
    expect(page.locator("#messages .message.ephemeral")).to_have_count(0)
    shots("requester-dismissed-the-ephemeral")


def test_autocomplete_offers_verbs_with_their_usage(page: Page, shots: Shots) -> None:
    composer = page.locator("#composer-input")
    composer.press_sequentially("/run")
    suggestions = page.locator("#autocomplete .ac-item")
    expect(suggestions).to_have_count(1)
    composer.press("Tab")
    expect(composer).to_have_value("/runctl ")
    expect(suggestions.first).to_have_attribute("data-verb", "help")
    composer.press_sequentially("te")
    expect(page.locator("#autocomplete .ac-item[data-verb=terminate]")).to_be_visible()
    expect(page.locator("#autocomplete .ac-item[data-verb=terminate] .ac-usage")).to_contain_text(
        "/runctl terminate"
    )
    shots("verbs-suggested")
    composer.press("Enter")  # completes, does not send: "te" is not a verb yet
    expect(composer).to_have_value("/runctl terminate ")
    expect(page.locator("#usage-hint")).to_contain_text("delete machines for good")
    shots("usage-hint")
    composer.press("Escape")
    expect(page.locator("#autocomplete")).to_be_hidden()


def test_threads_direct_messages_and_uploaded_images(page: Page, standin: SlackStandIn, shots: Shots) -> None:
    send(page, "/runctl hello")
    thread = page.locator("#messages .thread-summary")
    expect(thread).to_contain_text("1 reply")
    expect(page.locator("#messages .thread-replies")).to_have_count(0)
    thread.click()
    reply = page.locator("#messages .thread-replies .message")
    expect(reply).to_have_count(1)
    expect(reply.locator("i")).to_have_text("now")
    shots("thread-expanded")

    send(page, "/runctl dm")
    dm = page.locator("#dm-messages .message")
    expect(dm).to_have_count(1)
    expect(dm.locator("code")).to_have_text("i-0idle")
    dm.locator("button.bk-button", has_text="Keep 4 h").click()
    expect(dm.locator(".message-body")).to_contain_text("Kept for 4 h.")
    shots("dm-kept")
    switch_to(page, OUTSIDER.id)
    expect(page.locator("#dm-messages .message")).to_have_count(0)
    switch_to(page, REQUESTER.id)

    send(page, "/runctl chart")
    shared = page.locator("#messages .file-image img")
    expect(shared).to_have_count(1)
    expect(page.locator("#messages .block-image img")).to_have_count(1)
    expect(page.locator("#messages .block-image .image-title")).to_have_text("This week")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#messages img')]"
        ".every(i => i.complete && i.naturalWidth === 160 && i.naturalHeight === 90)"
    )
    shots("image-shown")


def test_messages_from_the_bot_arrive_live_with_mrkdwn(
    page: Page, standin: SlackStandIn, shots: Shots
) -> None:
    expect(page.locator("#messages .empty")).to_be_visible()
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    client.chat_postMessage(
        channel=DEMO_CHANNEL.id,
        text=(
            f"*Idle* _reminder_ for <@{REQUESTER.id}> in <#{DEMO_CHANNEL.id}> (run_demo_train, 2*3*4): "
            "~old~ `i-0abc` costs &lt;$1 &amp; see <https://example.com/runbook|the runbook>\n"
            "&gt; quoted line\n```cpu  0.4%\ngpu  0.0%```"
        ),
    )
    message = page.locator("#messages .message")
    expect(message).to_have_count(1)
    body = message.locator(".message-body .mrkdwn")
    expect(body.locator("b")).to_have_text("Idle")
    expect(body.locator("i")).to_have_text("reminder")
    expect(body.locator("s")).to_have_text("old")
    expect(body.locator(":scope > code")).to_have_text("i-0abc")
    expect(body.locator(".mention.me")).to_have_text("@riya")
    expect(body.locator(".channel-mention")).to_have_text("#ml-fleet")
    expect(body.locator("a")).to_have_attribute("href", "https://example.com/runbook")
    expect(body.locator("a")).to_have_text("the runbook")
    expect(body).to_contain_text("costs <$1 & see")
    expect(body.locator("blockquote")).to_have_text("quoted line")
    expect(body.locator("pre")).to_have_text("cpu  0.4%\ngpu  0.0%")
    shots("live-mrkdwn")

    standin.add_message(DEMO_CHANNEL.id, APPROVER.id, "On it.")
    expect(message).to_have_count(2)
    expect(message.nth(1).locator(".author")).to_have_text(APPROVER.user.real_name)


def test_a_button_with_confirm_asks_first(page: Page, standin: SlackStandIn, shots: Shots) -> None:
    send(page, "/runctl hello")
    deny = page.locator("#messages button.bk-button", has_text="Deny")
    dialog = page.locator("#confirm-backdrop")
    deny.click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_have_text("Deny this request?")
    expect(dialog.locator("#confirm-text b")).to_have_text("keeps running")
    expect(dialog.locator("#confirm-ok")).to_have_class(re.compile(r"\bbk-danger\b"))
    shots("confirm-dialog")
    dialog.locator("#confirm-deny", has_text="Keep waiting").click()
    expect(dialog).to_be_hidden()
    assert standin.calls("response_url") == []  # nothing was sent

    deny.click()
    dialog.locator("#confirm-ok", has_text="Deny").click()
    expect(page.locator("#messages .message-body", has_text="Denied by")).to_contain_text("Denied by @riya")
    expect(page.locator("#messages button.bk-button")).to_have_count(0)
    shots("denied")
