"""The sandbox page in headless Chromium (Debian's `chromium`), driven by Playwright for Python.

No browser is downloaded: Playwright drives `/usr/bin/chromium`. Without it these tests skip, saying so.
Screenshots of every step go to `test-output/browser/<test>/` (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from bot.sandbox.users import REQUESTER
from bot.sandbox.web import SandboxWeb
from bot.slack.standin import SlackStandIn
from tests.browser.support import CHROMIUM, Shots, launch_chromium
from tests.integration.sandbox.harness import sandbox_stack

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[SlackStandIn, str, SandboxWeb]]:
    with sandbox_stack() as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(
    chromium: Path, playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
    yield context
    context.close()


@pytest.fixture
def standin(stack: tuple[SlackStandIn, str, SandboxWeb]) -> SlackStandIn:
    stack[0].reset()
    return stack[0]


@pytest.fixture
def web(stack: tuple[SlackStandIn, str, SandboxWeb], standin: SlackStandIn) -> SandboxWeb:
    return stack[2]


class Requests:
    """Every URL the page asked for: nothing may leave 127.0.0.1."""

    def __init__(self) -> None:
        self.urls: list[str] = []


@pytest.fixture
def requests_seen() -> Requests:
    return Requests()


@pytest.fixture
def page(browser: BrowserContext, web: SandboxWeb, requests_seen: Requests) -> Iterator[Page]:
    opened = browser.new_page()
    opened.on("request", lambda request: requests_seen.urls.append(request.url))
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{web.url}/#as={REQUESTER.id}")
    expect(opened.locator("#connection-status")).to_have_text("live")
    yield opened
    opened.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    foreign = [u for u in requests_seen.urls if not (u.startswith(web.url + "/") or u.startswith("data:"))]
    assert foreign == [], f"the page reached outside the sandbox: {foreign}"


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Shots:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return Shots(page, request.config.rootpath / "test-output" / "browser" / name)
