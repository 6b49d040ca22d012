"""What every use case needs, built once at start-up and passed down (no globals)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bot.core.access import RoleBook
from bot.core.clock import Clock
from bot.core.policy import SafetyPolicy
from bot.services.outbox import Outbox
from bot.services.ports import Notifier
from providers.base import Provider
from storage.repositories import Repositories


@dataclass(frozen=True)
class ServiceDeps:
    provider: Provider
    repos: Repositories
    notifier: Notifier
    clock: Clock
    policy: SafetyPolicy
    roles: RoleBook
    enforce: bool = False  # idle rules act only when an admin turned enforcement on (dry-run first)
    team_channel: str | None = None

    @property
    def outbox(self) -> Outbox:
        """Slack messages that must outlive an outage go through here (see `bot.services.outbox`)."""
        return Outbox(self.repos.outbox, self.notifier, self.clock)


def new_operation_id() -> str:
    """Operation ids double as EC2 ClientTokens (≤ 64 ASCII) and `runctl:request` tag values."""
    return uuid.uuid4().hex
