"""Launch, start, stop, terminate, protect, unprotect and keep, as recorded operations.

Every operation gets an id before anything touches the cloud (it is also the RunInstances ClientToken
and the `runctl:request` tag), is recorded, judged by the safety rules, judged *again* on a fresh
describe immediately before the provider call, and completed afterwards. A crash in between leaves an
`executing` row that reconcile completes from the machine's tag. Terminations, and launches or starts
over the cost limits, go to an approver instead (see `ApprovalService`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bot.core import approvals as approval_rules
from bot.core.safety import (
    Action,
    Actor,
    ResourceFacts,
    SafetyContext,
    Verdict,
    evaluate,
    format_time,
)
from bot.services.audit import Auditor
from bot.services.deps import ServiceDeps, new_operation_id
from bot.services.pricing import Prices
from providers import tags as tagschema
from providers.base import Instance, InstanceState, LaunchSpec
from providers.errors import ProviderError
from storage.errors import AlreadyExists
from storage.models import Operation

log = logging.getLogger(__name__)

RUNNING_STATES = frozenset({InstanceState.RUNNING, InstanceState.STARTING})


class OpStatus:
    RECORDED = "recorded"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Outcome:
    """What a request came to, for the Slack layer to render."""

    operation_id: str
    kind: str
    status: str  # an OpStatus value
    summary: str
    instances: tuple[Instance, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    approval_id: str | None = None
    reasons: tuple[str, ...] = ()  # why an approval is needed
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in (OpStatus.SUCCEEDED, OpStatus.FAILED, OpStatus.REFUSED, OpStatus.CANCELLED)


@dataclass(frozen=True)
class LaunchRequest:
    instance_type: str
    project: str
    spot: bool = False
    max_price: float | None = None
    fallback_to_on_demand: bool = True
    ami: str | None = None
    disk_gb: int | None = None


class OperationService:
    def __init__(self, deps: ServiceDeps, prices: Prices, auditor: Auditor) -> None:
        self._deps = deps
        self._prices = prices
        self._audit = auditor

    # --- facts and verdicts --------------------------------------------------------------------

    def describe_many(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        """Fresh cloud state for a command's machines (commands name at most a handful)."""
        described = self._deps.provider.describe_many(list(dict.fromkeys(instance_ids)))
        return {iid: described[iid] for iid in dict.fromkeys(instance_ids) if iid in described}

    def facts_for(self, instances: Sequence[Instance]) -> list[ResourceFacts]:
        jobs = self._deps.repos.jobs.list_active([i.id for i in instances])
        running = {j.instance_id: j.id for j in jobs}
        return [ResourceFacts(instance=i, running_job=running.get(i.id)) for i in instances]

    def context(self, actor: Actor, *, force: bool = False) -> SafetyContext:
        return SafetyContext(now=self._deps.clock.now(), policy=self._deps.policy, actor=actor, force=force)

    def judge(
        self, action: Action, instance_ids: Sequence[str], actor: Actor, *, force: bool = False
    ) -> tuple[list[Verdict], list[str], dict[str, Instance]]:
        """Verdicts for the machines that exist, and the ids the cloud does not know."""
        found = self.describe_many(instance_ids)
        missing = [iid for iid in dict.fromkeys(instance_ids) if iid not in found]
        ctx = self.context(actor, force=force)
        verdicts = [evaluate(action, f, ctx) for f in self.facts_for(list(found.values()))]
        for verdict in verdicts:
            self._audit.verdict(verdict)
        return verdicts, missing, found

    # --- recording -----------------------------------------------------------------------------

    def _record(
        self,
        kind: str,
        actor: Actor,
        channel: str | None,
        instance_ids: Sequence[str],
        params: Mapping[str, Any],
        status: str,
        operation_id: str | None = None,
    ) -> Operation:
        now = self._deps.clock.now()
        op = Operation(
            id=operation_id or new_operation_id(),
            kind=kind,
            requester=actor.user_id,
            channel=channel,
            status=status,
            params=dict(params),
            instance_ids=list(instance_ids),
            created_at=now,
            updated_at=now,
        )
        created = self._deps.repos.operations.create(op)
        self._audit.event(
            actor.user_id,
            f"request:{kind}",
            status,
            target=",".join(instance_ids) or None,
            operation_id=op.id,
            detail=dict(params),
        )
        return created

    def _finish(self, op_id: str, ok: bool, *, result: Mapping[str, Any], error: str | None = None) -> None:
        self._deps.repos.operations.transition(
            op_id,
            OpStatus.EXECUTING,
            OpStatus.SUCCEEDED if ok else OpStatus.FAILED,
            at=self._deps.clock.now(),
            result=dict(result),
            error=error,
        )

    # --- launch --------------------------------------------------------------------------------

    def user_footprint(self, user: str) -> tuple[int, float]:
        """Machines the user runs now and what they cost per hour (from the database, no cloud calls)."""
        rows = [r for r in self._deps.repos.resources.list_open(owner=user) if r.state in RUNNING_STATES]
        if not rows:
            return 0, 0.0
        hourly = 0.0
        cache: dict[str, float | None] = {}
        for row in rows:
            if row.instance_type not in cache:
                cache[row.instance_type] = self._prices.on_demand(row.instance_type)
            hourly += cache[row.instance_type] or 0.0
        return len(rows), hourly

    def request_launch(
        self, actor: Actor, request: LaunchRequest, *, channel: str | None, operation_id: str | None = None
    ) -> Outcome:
        """Estimate first; launch within the user's limits, else record it for an approver."""
        price, basis = self._prices.estimate(request.instance_type, spot=request.spot)
        running, hourly = self.user_footprint(actor.user_id)
        reasons = approval_rules.approval_reasons(
            approval_rules.LAUNCH,
            hourly_usd=price,
            user_running=running,
            user_hourly_usd=hourly,
            policy=self._deps.policy.approvals,
        )
        params = {
            "instance_type": request.instance_type,
            "project": request.project,
            "spot": request.spot,
            "max_price": request.max_price,
            "fallback_to_on_demand": request.fallback_to_on_demand,
            "ami": request.ami,
            "disk_gb": request.disk_gb,
            "estimate_usd_per_hour": price,
            "estimate_basis": basis,
        }
        status = OpStatus.AWAITING_APPROVAL if reasons else OpStatus.EXECUTING
        try:
            op = self._record("launch", actor, channel, [], params, status, operation_id)
        except AlreadyExists:
            return self._replay(operation_id or "")
        if reasons:
            return Outcome(
                op.id, "launch", OpStatus.AWAITING_APPROVAL, "needs approval", reasons=reasons, details=params
            )
        return self.execute_launch(op)

    def _replay(self, operation_id: str) -> Outcome:
        """A retried request with an id already recorded: report it, never run it twice."""
        op = self._deps.repos.operations.get(operation_id)
        if op is None:
            raise RuntimeError(f"operation {operation_id} vanished")
        return Outcome(op.id, op.kind, op.status, "this request was already received", details=op.params)

    def execute_launch(self, op: Operation) -> Outcome:
        p = op.params
        spec = LaunchSpec(
            operation_id=op.id,
            instance_type=str(p["instance_type"]),
            owner=op.requester,
            project=str(p["project"]),
            owner_name=op.requester,
            spot=bool(p.get("spot")),
            spot_max_price=float(p["max_price"]) if p.get("max_price") is not None else None,
            allow_on_demand_fallback=bool(p.get("fallback_to_on_demand", True)),
            ami_id=p.get("ami"),
            root_volume_gb=p.get("disk_gb"),
        )
        try:
            result = self._deps.provider.launch(spec)
        except ProviderError as exc:
            self._finish(op.id, False, result={}, error=str(exc))
            self._audit.event(
                op.requester, "launch", "failed", operation_id=op.id, detail={"error": str(exc)}
            )
            return Outcome(op.id, "launch", OpStatus.FAILED, str(exc), details=p)
        inst = result.instance
        now = self._deps.clock.now()
        price = self._prices.hourly_by_instance([inst])
        self._deps.repos.resources.upsert_from_cloud([inst], now, price)
        self._deps.repos.resources.link_operation(inst.id, op.id)
        details = {
            **p,
            "instance_id": inst.id,
            "fell_back_to_on_demand": result.fell_back_to_on_demand,
            "reused_existing": result.reused_existing,
            "warnings": list(result.warnings),
            "hourly_usd": price.get(inst.id),
        }
        self._deps.repos.operations.transition(
            op.id, OpStatus.EXECUTING, OpStatus.SUCCEEDED, at=now, instance_ids=[inst.id], result=details
        )
        self._audit.event(
            op.requester,
            "launch",
            "succeeded",
            target=inst.id,
            operation_id=op.id,
            detail={"fell_back_to_on_demand": result.fell_back_to_on_demand},
        )
        summary = f"launched {inst.id} ({inst.instance_type}, {inst.lifecycle.value})"
        if result.fell_back_to_on_demand:
            summary += "; no spot capacity, so it runs on-demand as you allowed"
        return Outcome(op.id, "launch", OpStatus.SUCCEEDED, summary, instances=(inst,), details=details)

    # --- start / stop / terminate ----------------------------------------------------------------

    def request_power(
        self,
        action: Action,
        actor: Actor,
        instance_ids: Sequence[str],
        *,
        channel: str | None,
        force: bool = False,
        reason: str | None = None,
        operation_id: str | None = None,
    ) -> Outcome:
        """Stop or start now (after the rules); terminate always goes to an approver (two people)."""
        kind = action.value
        verdicts, missing, found = self.judge(action, instance_ids, actor, force=force)
        allowed = [v for v in verdicts if v.allowed]
        params: dict[str, Any] = {"force": force, "reason": reason, "missing": missing}
        reasons: tuple[str, ...] = ()
        if action is Action.TERMINATE:
            reasons = approval_rules.approval_reasons(Action.TERMINATE, policy=self._deps.policy.approvals)
        elif action is Action.START and allowed:
            running, hourly = self.user_footprint(actor.user_id)
            extra = sum(self._prices.hourly_by_instance([found[v.instance_id] for v in allowed]).values())
            reasons = approval_rules.approval_reasons(
                Action.START,
                hourly_usd=extra,
                user_running=running + len(allowed) - 1,
                user_hourly_usd=hourly,
                policy=self._deps.policy.approvals,
            )
        needs_approval = bool(reasons) and bool(allowed)
        status = (
            OpStatus.REFUSED
            if not allowed
            else OpStatus.AWAITING_APPROVAL
            if needs_approval
            else OpStatus.EXECUTING
        )
        try:
            op = self._record(
                kind, actor, channel, [v.instance_id for v in allowed], params, status, operation_id
            )
        except AlreadyExists:
            return self._replay(operation_id or "")
        instances = tuple(found[v.instance_id] for v in verdicts)
        if not allowed:
            summary = "; ".join([v.reason for v in verdicts] + [f"{m} was not found" for m in missing])
            return Outcome(
                op.id,
                kind,
                OpStatus.REFUSED,
                summary or "nothing to do",
                instances,
                tuple(verdicts),
                details=params,
            )
        if needs_approval:
            return Outcome(
                op.id,
                kind,
                OpStatus.AWAITING_APPROVAL,
                "needs approval",
                instances,
                tuple(verdicts),
                reasons=reasons,
                details=params,
            )
        return self.execute_power(op, actor, force=force, earlier=verdicts)

    def execute_power(
        self, op: Operation, actor: Actor, *, force: bool, earlier: Sequence[Verdict] = ()
    ) -> Outcome:
        """Re-check on a fresh describe, then one batched provider call for what is still allowed."""
        action = Action(op.kind)
        verdicts, missing, found = self.judge(action, op.instance_ids, actor, force=force)
        allowed = [v.instance_id for v in verdicts if v.allowed]
        skipped = [v for v in verdicts if not v.allowed]
        skipped_earlier = [v for v in earlier if not v.allowed]
        result: dict[str, Any] = {
            "skipped": {v.instance_id: v.reason for v in [*skipped_earlier, *skipped]},
            "missing": missing,
        }
        if not allowed:
            self._finish(op.id, False, result=result, error="the rules no longer allow it")
            return Outcome(
                op.id,
                op.kind,
                OpStatus.REFUSED,
                "; ".join(v.reason for v in skipped) or "the machines are gone",
                tuple(found.values()),
                tuple(verdicts),
                details=result,
            )
        call = {
            Action.START: self._deps.provider.start,
            Action.STOP: self._deps.provider.stop,
            Action.TERMINATE: self._deps.provider.terminate,
        }[action]
        try:
            states = call(allowed)
        except ProviderError as exc:
            self._finish(op.id, False, result=result, error=str(exc))
            self._audit.event(
                actor.user_id,
                op.kind,
                "failed",
                target=",".join(allowed),
                operation_id=op.id,
                detail={"error": str(exc)},
            )
            return Outcome(
                op.id,
                op.kind,
                OpStatus.FAILED,
                str(exc),
                tuple(found.values()),
                tuple(verdicts),
                details=result,
            )
        result["states"] = {iid: state.value for iid, state in states.items()}
        result["acted"] = allowed
        self._record_transitions(found, states, bot_stop=False)
        self._finish(op.id, True, result=result)
        for iid in allowed:
            self._audit.event(
                actor.user_id,
                op.kind,
                "succeeded",
                target=iid,
                operation_id=op.id,
                detail={"state": states.get(iid, InstanceState.UNKNOWN).value},
            )
        updated = tuple(replace(found[iid], state=states.get(iid, found[iid].state)) for iid in found)
        verb = {"start": "starting", "stop": "stopping", "terminate": "terminating"}[op.kind]
        summary = f"{verb} {', '.join(allowed)}"
        if skipped or skipped_earlier:
            summary += "; skipped: " + "; ".join(v.reason for v in [*skipped_earlier, *skipped])
        return Outcome(op.id, op.kind, OpStatus.SUCCEEDED, summary, updated, tuple(verdicts), details=result)

    def _record_transitions(
        self, found: Mapping[str, Instance], states: Mapping[str, InstanceState], *, bot_stop: bool
    ) -> None:
        now = self._deps.clock.now()
        changed = [replace(found[iid], state=state) for iid, state in states.items() if iid in found]
        if changed:
            self._deps.repos.resources.upsert_from_cloud(
                changed, now, self._prices.hourly_by_instance(changed)
            )

    # --- tags: protect / unprotect / keep -------------------------------------------------------

    def protect(
        self,
        actor: Actor,
        instance_ids: Sequence[str],
        *,
        channel: str | None,
        protect: bool,
        reason: str | None = None,
    ) -> Outcome:
        action = Action.PROTECT if protect else Action.UNPROTECT
        verdicts, missing, found = self.judge(action, instance_ids, actor)
        allowed = [v.instance_id for v in verdicts if v.allowed]
        op = self._record(
            action.value,
            actor,
            channel,
            allowed,
            {"reason": reason, "missing": missing},
            OpStatus.EXECUTING if allowed else OpStatus.REFUSED,
        )
        if not allowed:
            summary = "; ".join([v.reason for v in verdicts] + [f"{m} was not found" for m in missing])
            return Outcome(
                op.id, action.value, OpStatus.REFUSED, summary, tuple(found.values()), tuple(verdicts)
            )
        try:
            if protect:
                self._deps.provider.set_tags(allowed, {tagschema.PROTECTED: "true"})
            else:
                self._deps.provider.remove_tags(allowed, list(tagschema.PROTECTION_TAGS))
        except ProviderError as exc:
            self._finish(op.id, False, result={}, error=str(exc))
            return Outcome(
                op.id, action.value, OpStatus.FAILED, str(exc), tuple(found.values()), tuple(verdicts)
            )
        self._finish(op.id, True, result={"instances": allowed})
        self._refresh(allowed)
        for iid in allowed:
            self._audit.event(
                actor.user_id,
                action.value,
                "succeeded",
                target=iid,
                operation_id=op.id,
                detail={"reason": reason},
            )
        word = "protected" if protect else "unprotected"
        return Outcome(
            op.id,
            action.value,
            OpStatus.SUCCEEDED,
            f"{word} {', '.join(allowed)}",
            tuple(found.values()),
            tuple(verdicts),
        )

    def keep(self, actor: Actor, instance_id: str, *, until: datetime | None, channel: str | None) -> Outcome:
        """Write `runctl:keep-until` (ISO-8601 UTC, or `never` for admins) on the machine."""
        verdicts, _missing, found = self.judge(Action.KEEP, [instance_id], actor)
        value = tagschema.KEEP_FOREVER if until is None else until.strftime("%Y-%m-%dT%H:%M:%SZ")
        if until is None and not actor.is_admin:
            op = self._record("keep", actor, channel, [instance_id], {"until": value}, OpStatus.REFUSED)
            return Outcome(
                op.id, "keep", OpStatus.REFUSED, "only admins may keep a machine forever (`never`)"
            )
        if until is not None and until <= self._deps.clock.now():
            op = self._record("keep", actor, channel, [instance_id], {"until": value}, OpStatus.REFUSED)
            return Outcome(op.id, "keep", OpStatus.REFUSED, f"{format_time(until)} is already in the past")
        ok = [v for v in verdicts if v.allowed]
        op = self._record(
            "keep",
            actor,
            channel,
            [instance_id],
            {"until": value},
            OpStatus.EXECUTING if ok else OpStatus.REFUSED,
        )
        if not ok:
            summary = verdicts[0].reason if verdicts else f"{instance_id} was not found"
            return Outcome(op.id, "keep", OpStatus.REFUSED, summary, tuple(found.values()), tuple(verdicts))
        try:
            self._deps.provider.set_tags([instance_id], {tagschema.KEEP_UNTIL: value})
        except ProviderError as exc:
            self._finish(op.id, False, result={}, error=str(exc))
            return Outcome(op.id, "keep", OpStatus.FAILED, str(exc))
        self._finish(op.id, True, result={"until": value})
        self._refresh([instance_id])
        self._audit.event(
            actor.user_id,
            "keep",
            "succeeded",
            target=instance_id,
            operation_id=op.id,
            detail={"until": value},
        )
        shown = "indefinitely" if until is None else f"until {format_time(until)}"
        return Outcome(
            op.id,
            "keep",
            OpStatus.SUCCEEDED,
            f"{instance_id} is kept {shown}; idle rules leave it alone",
            tuple(found.values()),
            tuple(verdicts),
        )

    def _refresh(self, instance_ids: Sequence[str]) -> None:
        fresh = list(self.describe_many(instance_ids).values())
        if fresh:
            self._deps.repos.resources.upsert_from_cloud(
                fresh, self._deps.clock.now(), self._prices.hourly_by_instance(fresh)
            )
