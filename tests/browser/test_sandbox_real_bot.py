"""`runctl-bot sandbox` end to end in headless Chromium: the real bot, moto and the demo fleet.

Unlike test_sandbox_page.py (the page against a tiny Bolt app), everything behind the page here is the
production bot built by `bot.wiring.build_application`, with its scheduler on the sandbox's demo cadence.
The idle reminder comes first because the terminate step removes the very machine it is about.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from bot.sandbox.runner import Sandbox
from bot.sandbox.users import APPROVER, DEMO_CHANNEL, REQUESTER
from providers.tags import KEEP_UNTIL
from tests.browser.real_bot import (
    instance_state,
    instance_tags,
    isolated_sandbox,
    open_sandbox_page,
    sandbox_ec2,
    wait_until_terminated,
)
from tests.browser.support import Shots, send, switch_to

#: The demo cadence runs the idle cycle every 20 s; allow several cycles on a loaded machine.
REMINDER_WAIT_MS = 90_000
#: A click or command that makes the bot call AWS and then `chat.update`.
BOT_ROUND_TRIP_MS = 20_000
KEPT_UNTIL = re.compile(r"kept it until (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC")


@pytest.fixture
def real_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with isolated_sandbox(tmp_path / "sandbox-data") as sandbox:
        yield sandbox


@pytest.fixture
def shots_dir(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot directory, emptied of an earlier run's steps so none is mistaken for new."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    directory = Path(request.config.rootpath) / "test-output" / "browser" / name
    for stale in directory.glob("*.png"):
        stale.unlink()
    return directory


def test_a_fresh_sandbox_starts_and_serves_its_page_config(tmp_path: Path) -> None:
    """Start-up time is measured in benchmarks/ (startup), not asserted here: a ceiling in a test only
    turns a slow CI machine into a red build."""
    with isolated_sandbox(tmp_path / "sandbox-data") as sandbox:
        with urllib.request.urlopen(f"{sandbox.url}/api/config", timeout=5) as response:
            assert response.status == 200
            config = json.loads(response.read())
        assert sandbox.started_in > 0
    assert config["command"] == "/runctl"
    assert config["channel"]["id"] == DEMO_CHANNEL.id
    assert {person["id"] for person in config["people"]} >= {REQUESTER.id, APPROVER.id}
    assert "list" in {verb["name"] for verb in config["verbs"]}


def test_list_remind_keep_terminate_approve_with_the_real_bot(
    browser: BrowserContext, real_sandbox: Sandbox, shots_dir: Path
) -> None:
    page, watch = open_sandbox_page(browser, real_sandbox.url, REQUESTER.id)
    try:
        _walk_through(page, real_sandbox, Shots(page, shots_dir))
    finally:
        page.close()
    assert watch.problems() == []


def _walk_through(page: Page, sandbox: Sandbox, shots: Shots) -> None:
    ids = sandbox.fleet.ids()
    idle = ids["idle"]
    ec2 = sandbox_ec2()
    shots("page-loaded")

    # 1. The requester lists the whole fleet (an ephemeral answer, as in Slack).
    send(page, "/runctl list --all")
    listing = page.locator("#messages .message.ephemeral", has=page.locator("code", has_text=idle))
    expect(listing).to_be_visible(timeout=BOT_ROUND_TRIP_MS)
    expect(listing).to_contain_text("Only visible to you")
    for role in ("idle", "busy", "protected", "young", "spot", "stopped"):
        expect(listing.locator("code", has_text=ids[role])).to_have_count(1)
    shots("fleet-listed")

    # 2. The scheduler finds the idle machine and DMs its owner, with the evidence and three buttons.
    reminder = page.locator("#dm-messages .message", has=page.locator("code", has_text=idle))
    expect(reminder).to_be_visible(timeout=REMINDER_WAIT_MS)
    expect(reminder).to_contain_text("CPU max")
    for label in ("Keep 4 h", "Keep 1 day", "Stop now"):
        expect(reminder.locator("button.bk-button", has_text=label)).to_be_visible()
    shots("idle-reminder-in-dm")

    # 3. Keep 4 h: the reminder is updated in place and the cloud carries the keep-until tag.
    clicked_at = datetime.now(UTC)
    reminder.locator("button.bk-button", has_text="Keep 4 h").click()
    expect(reminder.locator(".message-body")).to_contain_text(KEPT_UNTIL, timeout=BOT_ROUND_TRIP_MS)
    expect(reminder.locator("button.bk-button")).to_have_count(0)
    expect(reminder.locator(".edited")).to_have_text("(edited)")
    shots("reminder-kept-4-hours")
    shown = KEPT_UNTIL.search(reminder.locator(".message-body").inner_text())
    assert shown is not None
    keep_until = datetime.fromisoformat(instance_tags(ec2, idle)[KEEP_UNTIL])
    assert keep_until.tzinfo is not None
    assert abs(keep_until - (clicked_at + timedelta(hours=4))) < timedelta(minutes=2)
    assert keep_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M") == shown.group(1)

    # 4. The requester asks to terminate it: an approval card with Approve / Deny in the channel.
    send(page, f"/runctl terminate {idle}")
    asked = page.locator("#messages .message", has=page.locator(".block-header", has_text="Approval needed"))
    expect(asked).to_have_count(1, timeout=BOT_ROUND_TRIP_MS)
    card = page.locator(f'#messages .message[data-ts="{asked.get_attribute("data-ts")}"]')
    expect(card).to_contain_text(idle)
    expect(card.locator("button.bk-button.bk-primary", has_text="Approve")).to_be_visible()
    expect(card.locator("button.bk-button.bk-danger", has_text="Deny")).to_be_visible()
    shots("approval-requested")

    # 5. Two people: the requester's own Approve is refused, and nothing happens to the machine.
    card.locator("button.bk-button", has_text="Approve").click()
    refusal = page.locator("#messages .message.ephemeral", has_text="someone else must approve it")
    expect(refusal).to_be_visible(timeout=BOT_ROUND_TRIP_MS)
    expect(card.locator("button.bk-button", has_text="Approve")).to_be_visible()
    shots("requester-cannot-approve")
    assert instance_state(ec2, idle) == "running"

    # 6. The approver approves; the card says who and what happened, and the machine is gone.
    switch_to(page, APPROVER.id)
    expect(page.locator("#viewer-role")).to_have_text("approver")
    expect(card.locator("button.bk-button", has_text="Approve")).to_be_visible()
    shots("approver-sees-the-request")
    card.locator("button.bk-button", has_text="Approve").click()
    body = card.locator(".message-body")
    expect(body).to_contain_text(f"Approved by @{APPROVER.user.name}", timeout=BOT_ROUND_TRIP_MS)
    expect(body).to_contain_text(re.compile(rf"Result:\s+terminat\w*\s+{idle}"))
    expect(card.locator("button.bk-button")).to_have_count(0)
    expect(card.locator(".edited")).to_have_text("(edited)")
    shots("approved-and-updated")
    assert wait_until_terminated(ec2, idle) == "terminated"
