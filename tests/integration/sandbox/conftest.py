"""The sandbox page's API against a running stand-in and a tiny real Bolt app (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.web import SandboxWeb
from bot.slack.standin import SlackStandIn
from tests.integration.sandbox.harness import sandbox_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[SlackStandIn, str, SandboxWeb]]:
    with sandbox_stack() as running:
        yield running


@pytest.fixture
def standin(stack: tuple[SlackStandIn, str, SandboxWeb]) -> SlackStandIn:
    """The module's stand-in, emptied: every test starts from the seeded workspace."""
    stack[0].reset()
    return stack[0]


@pytest.fixture
def web(stack: tuple[SlackStandIn, str, SandboxWeb], standin: SlackStandIn) -> SandboxWeb:
    return stack[2]


@pytest.fixture
def bot_url(stack: tuple[SlackStandIn, str, SandboxWeb]) -> str:
    return stack[1]
