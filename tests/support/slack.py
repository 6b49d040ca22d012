"""Reusable pytest helpers for anything that talks to the Slack stand-in.

Import the fixture into a ``conftest.py`` (``from tests.support.slack import slack_standin``) and build
clients with :func:`standin_web_client`, which wires the same slack_sdk retry handlers the bot uses,
with a tiny backoff so retry tests stay fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    RateLimitErrorRetryHandler,
    RetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from bot.slack.standin import Channel, SlackStandIn, User

T = TypeVar("T")

ALICE = User(id="U0ALICE001", name="alice", real_name="Alice Admin", tz="Europe/Berlin", is_admin=True)
BOB = User(id="U0BOB00002", name="bob", real_name="Bob Builder", tz="America/New_York")
CAROL = User(id="U0CAROL003", name="carol", real_name="Carol Approver", tz="Asia/Tokyo")
DAVE = User(id="U0DAVE0004", name="dave", real_name="Dave Outsider", tz="UTC")
DEFAULT_USERS = (ALICE, BOB, CAROL, DAVE)

FLEET = Channel(id="C0FLEET001", name="ml-fleet", created=1_700_000_000)
OPS = Channel(id="C0OPS00002", name="ops", created=1_700_000_000)
PRIVATE = Channel(
    id="G0PRIVATE3",
    name="secret-project",
    is_private=True,
    members=frozenset({ALICE.id, BOB.id}),
    created=1_700_000_000,
)
NOT_JOINED = Channel(id="C0RANDOM04", name="random", is_member=False, created=1_700_000_000)
ARCHIVED = Channel(id="C0ARCHIVE5", name="old-fleet", is_archived=True, created=1_700_000_000)
DEFAULT_CHANNELS = (FLEET, OPS, PRIVATE, NOT_JOINED, ARCHIVED)


@contextmanager
def running_standin(**kwargs: Any) -> Iterator[SlackStandIn]:
    """A started stand-in seeded with the default users and channels unless told otherwise."""
    kwargs.setdefault("users", DEFAULT_USERS)
    kwargs.setdefault("channels", DEFAULT_CHANNELS)
    with SlackStandIn(**kwargs) as standin:
        yield standin


@pytest.fixture
def slack_standin() -> Iterator[SlackStandIn]:
    with running_standin() as standin:
        yield standin


def retry_handlers(
    *,
    rate_limit_retries: int = 2,
    server_error_retries: int = 2,
    connection_error_retries: int = 2,
    retry_interval: float = 0.01,
) -> list[RetryHandler]:
    """The handler set the bot uses; ``retry_interval`` replaces slack_sdk's backoff (not Retry-After)."""
    interval = FixedValueRetryIntervalCalculator(fixed_internal=retry_interval)
    return [
        RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ServerErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=interval),
        ConnectionErrorRetryHandler(max_retry_count=connection_error_retries, interval_calculator=interval),
    ]


def standin_web_client(
    standin: SlackStandIn,
    *,
    token: str | None = None,
    timeout: int = 5,
    handlers: list[RetryHandler] | None = None,
) -> WebClient:
    """A real ``WebClient`` pointed at the stand-in, with rate-limit, 5xx and connection retries."""
    return WebClient(
        token=standin.bot_token if token is None else token,
        base_url=standin.api_url,
        timeout=timeout,
        retry_handlers=retry_handlers() if handlers is None else handlers,
    )


def assert_eventually(
    predicate: Callable[[], T],
    timeout: float = 2.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout``.

    For state produced by background threads that the stand-in cannot signal (e.g. a client's
    connection flag); for stand-in state prefer ``SlackStandIn.wait_for``.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout:g}s")
        time.sleep(interval)
