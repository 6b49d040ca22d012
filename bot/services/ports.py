"""Ports the services talk through. The Slack adapter implements `Notifier`; tests may use a recorder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Blocks = Sequence[dict[str, Any]]


@dataclass(frozen=True)
class MessageRef:
    """Where a message lives, so that later state changes update it in place instead of re-posting."""

    channel: str
    ts: str


class Notifier(Protocol):
    def post(
        self, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> MessageRef: ...

    def update(self, ref: MessageRef, text: str, blocks: Blocks | None = None) -> None: ...

    def dm(self, user: str, text: str, blocks: Blocks | None = None) -> MessageRef: ...

    def ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None: ...

    def upload(
        self,
        channel: str,
        filename: str,
        content: bytes,
        *,
        title: str,
        alt_text: str,
        comment: str = "",
        thread_ts: str | None = None,
    ) -> None: ...

    def user_timezone(self, user: str) -> str | None: ...
