"""Reconcile: make the database agree with the cloud, and say what changed.

Idempotent and safe beside concurrent commands: the repository ignores listings older than what it
already saw, and rows are closed only when the cloud stopped returning them before this listing began.
Instances launched by an operation whose database write was lost are linked to it through their
`runctl:request` tag (the upsert reads it), so a crash between the cloud call and the write heals here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.services.audit import Auditor
from bot.services.deps import ServiceDeps
from bot.services.pricing import Prices
from providers.base import Instance, InstanceState
from storage.repositories import TransitionRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileResult:
    instances: tuple[Instance, ...]
    transitions: tuple[TransitionRecord, ...]
    linked_operations: tuple[str, ...]


class TrackingService:
    def __init__(self, deps: ServiceDeps, prices: Prices, auditor: Auditor) -> None:
        self._deps = deps
        self._prices = prices
        self._audit = auditor

    def reconcile(self) -> ReconcileResult:
        deps = self._deps
        started = deps.clock.now()
        instances = deps.provider.list_managed()
        hourly = self._prices.hourly_by_instance(instances)
        ended = self._ended_since_last_listing(instances)
        changes = deps.repos.resources.upsert_from_cloud([*instances, *ended], started, hourly)
        changes += deps.repos.resources.close_missing(
            [i.id for i in instances], started, provider=deps.provider.name, region=deps.provider.region
        )
        linked = self._heal_operations(instances)
        if changes or linked:
            self._audit.event(
                "runctl-bot",
                "reconcile",
                "changed",
                detail={
                    "transitions": len(changes),
                    "linked_operations": linked,
                    "instances": len(instances),
                },
            )
        return ReconcileResult(tuple(instances), tuple(changes), tuple(linked))

    def _ended_since_last_listing(self, listed: list[Instance]) -> list[Instance]:
        """Machines the database still has open that the listing (which leaves out terminated ones) did
        not return, described by id: EC2 keeps a terminated machine visible for about an hour, with the
        reason (a spot reclaim says so). What is not found at all is closed by `close_missing`."""
        deps = self._deps
        gone = deps.repos.resources.open_ids(provider=deps.provider.name, region=deps.provider.region) - {
            i.id for i in listed
        }
        if not gone:
            return []
        found = deps.provider.describe_many(sorted(gone))
        return [i for i in found.values() if i.state is InstanceState.TERMINATED]

    def _heal_operations(self, instances: list[Instance]) -> list[str]:
        """Launch operations left `executing` by a crash are completed from the machine their tag names."""
        repos = self._deps.repos
        by_operation = {i.operation_id: i for i in instances if i.operation_id}
        if not by_operation:
            return []
        healed: list[str] = []
        for op in repos.operations.list_by_status(["executing"], kind="launch"):
            inst = by_operation.get(op.id)
            if inst is None:
                continue
            repos.resources.link_operation(inst.id, op.id)
            if repos.operations.transition(
                op.id,
                "executing",
                "succeeded",
                instance_ids=[inst.id],
                result={"instance_id": inst.id, "healed_by": "reconcile"},
            ):
                healed.append(op.id)
                self._audit.event("runctl-bot", "launch", "healed", target=inst.id, operation_id=op.id)
        return healed
