"""Helpers for driving the sandbox page in Debian's Chromium with Playwright (no browser downloads)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import BrowserContext, Page, Playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Playwright, user_data_dir: Path) -> BrowserContext:
    """Headless Chromium with a fresh profile and a Slack-sized window."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 900},
        locale="en-US",
    )


class Shots:
    """Numbered screenshots of one test's steps, in its own directory."""

    def __init__(self, page: Page, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.taken: list[Path] = []

    def __call__(self, step: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.taken) + 1:02d}-{step}.png"
        self.page.screenshot(path=str(path))
        self.taken.append(path)
        return path


def send(page: Page, text: str) -> None:
    """Type a line in the composer and press Enter; returns once the composer has been cleared."""
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")


def switch_to(page: Page, user_id: str) -> None:
    """Act as another demo person (the page re-reads what that person sees)."""
    page.select_option("#user-switcher", user_id)
    expect(page.locator("#user-switcher")).to_have_value(user_id)
    expect(page.locator("#connection-status")).to_have_text("live")
