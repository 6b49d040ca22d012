"""One place that writes audit rows, so every path records who, what, rule and result the same way."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.core.safety import Verdict
from storage.repos import AuditRepository

log = logging.getLogger(__name__)


class Auditor:
    def __init__(self, repo: AuditRepository) -> None:
        self._repo = repo

    def event(
        self,
        actor: str,
        action: str,
        result: str,
        *,
        target: str | None = None,
        rule: str | None = None,
        operation_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            self._repo.record(
                actor, action, result, target=target, rule=rule, operation_id=operation_id, detail=detail
            )
        except Exception:
            # An audit failure must be loud, but it must not turn a finished cloud action into an error.
            log.exception("audit write failed: %s %s %s on %s", actor, action, result, target)

    def verdict(self, verdict: Verdict, *, operation_id: str | None = None) -> None:
        self.event(
            str(verdict.evidence.get("actor", "runctl-bot")),
            f"verdict:{verdict.action.value}",
            "allowed" if verdict.allowed else "skipped",
            target=verdict.instance_id,
            rule=verdict.rule.value if verdict.rule else None,
            operation_id=operation_id,
            detail={"reason": verdict.reason, "evidence": dict(verdict.evidence)},
        )
