"""End-to-end: signed HTTP into the running app → services → moto server + Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack.standin import SlackStandIn
from tests.support.harness import Bot, running_bot
from tests.support.moto import MotoServer
from tests.support.slack import running_standin


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    """The stand-in, checked after every test: whatever the bot sent Slack was accepted as sent.

    A call the test did not make fail (no injected fault) must have succeeded, every response_url post
    must have been applied, and Slack must have had nothing to warn about (e.g. blocks without a text
    fallback), so a message Slack would refuse in production fails the test that produced it.
    """
    with running_standin(rate_limit_per_channel=None) as s:
        yield s
        refused = [
            f"{c.method}: {c.error or c.status}"
            for c in s.calls()
            if c.kind == "api" and c.fault is None and not c.ok
        ]
        rejected = [
            f"response_url: {p.outcome}" for p in s.response_posts() if p.outcome.startswith("rejected")
        ]
        warned = [f"{n.method}: {n.text}" for n in s.notices()]
        assert not (refused or rejected or warned), "\n".join(refused + rejected + warned)


@pytest.fixture
def bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    with running_bot(tmp_path, standin, aws, monkeypatch) as b:
        yield b
