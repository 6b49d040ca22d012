"""Cleanup: find machines the rules prove idle (plan) and stop them within every rule (apply).

The plan costs ⌈N/1000⌉ DescribeInstances calls and ⌈candidates × metrics / 500⌉ GetMetricData calls:
the rules that need no metrics (managed, protected, state, job, keep, age) run first, and only the
machines that pass them are asked about. Nothing is fetched per machine. Cleanup never terminates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.core.idle import IdleVerdict, idle_verdict
from bot.core.policy import IdleStatistic, SafetyPolicy
from bot.core.safety import (
    Action,
    Actor,
    BatchResult,
    ResourceFacts,
    Rule,
    SafetyContext,
    Verdict,
    evaluate,
    evaluate_batch,
)
from bot.services.audit import Auditor
from bot.services.deps import ServiceDeps, new_operation_id
from bot.services.operations import OpStatus, Outcome
from bot.services.pricing import Prices
from providers.base import Instance, InstanceState
from providers.errors import ProviderError
from storage.models import Operation

log = logging.getLogger(__name__)

# Rules a plan may fail on and still list a machine: the owner's quiet hours only delay a reminder.
_PLAN_TOLERATED = frozenset({Rule.QUIET_HOURS})

#: `Operation.params["breaker_source"]` of a batch the breaker held in a command-started cleanup: an
#: admin's approval is judged and run here (`judge_held`, `run_held`), not by the idle cycle.
BREAKER_SOURCE = "cleanup_run"


@dataclass(frozen=True)
class PlanOptions:
    window: timedelta | None = None
    min_age: timedelta | None = None
    cpu_threshold: float | None = None
    statistic: str | None = None
    period_seconds: int | None = None
    min_coverage: float | None = None

    def apply_to(self, policy: SafetyPolicy) -> SafetyPolicy:
        idle = policy.idle
        idle = replace(
            idle,
            window=self.window or idle.window,
            threshold_percent=self.cpu_threshold
            if self.cpu_threshold is not None
            else idle.threshold_percent,
            statistic=IdleStatistic(self.statistic) if self.statistic else idle.statistic,
            period_seconds=self.period_seconds or idle.period_seconds,
            min_coverage=self.min_coverage if self.min_coverage is not None else idle.min_coverage,
        )
        return replace(policy, idle=idle, min_age_idle=self.min_age or policy.min_age_idle)


@dataclass(frozen=True)
class PlanItem:
    instance: Instance
    verdict: Verdict
    idle: IdleVerdict | None
    hourly_usd: float | None

    @property
    def in_plan(self) -> bool:
        return self.verdict.allowed or set(self.verdict.rules) <= _PLAN_TOLERATED


@dataclass(frozen=True)
class CleanupPlan:
    items: tuple[PlanItem, ...]
    fleet_size: int
    candidates: int

    @property
    def idle(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.in_plan)

    @property
    def skipped(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if not i.in_plan)

    @property
    def idle_hourly_usd(self) -> float:
        return sum(i.hourly_usd or 0.0 for i in self.idle)


@dataclass(frozen=True)
class ApplyResult:
    operation_id: str
    batch: BatchResult
    stopped: tuple[str, ...]
    error: str | None = None
    held: Outcome | None = None  # what the breaker held: a stop waiting for an admin's approval


class CleanupService:
    def __init__(self, deps: ServiceDeps, prices: Prices, auditor: Auditor) -> None:
        self._deps = deps
        self._prices = prices
        self._audit = auditor

    def _facts(self, instances: list[Instance]) -> list[ResourceFacts]:
        jobs = self._deps.repos.jobs.list_active([i.id for i in instances])
        running = {j.instance_id: j.id for j in jobs}
        return [ResourceFacts(instance=i, running_job=running.get(i.id)) for i in instances]

    def plan(self, options: PlanOptions | None = None) -> CleanupPlan:
        deps = self._deps
        policy = (options or PlanOptions()).apply_to(deps.policy)
        now = deps.clock.now()
        fleet = [i for i in deps.provider.list_managed() if i.state is not InstanceState.TERMINATED]
        running = [i for i in fleet if i.state is InstanceState.RUNNING]
        ctx = SafetyContext(now=now, policy=policy, automatic=True, fleet_size=len(fleet))
        first = {f.instance_id: (f, evaluate(Action.IDLE_REMIND, f, ctx)) for f in self._facts(running)}
        # Only machines held back by nothing but missing idle proof (and quiet hours) are worth metrics.
        candidates = [f for f, v in first.values() if set(v.rules) <= {Rule.NOT_IDLE, *_PLAN_TOLERATED}]
        series = (
            deps.provider.utilisation(
                [f.instance_id for f in candidates],
                end=now,
                window=policy.idle.window,
                period_seconds=policy.idle.period_seconds,
                instance_types={f.instance_id: f.instance.instance_type for f in candidates},
            )
            if candidates
            else {}
        )
        hourly = self._prices.hourly_by_instance(running)
        candidate_ids = {f.instance_id for f in candidates}
        items: list[PlanItem] = []
        for facts, verdict in first.values():
            idle: IdleVerdict | None = None
            if facts.instance_id in candidate_ids:
                idle = idle_verdict(
                    series.get(facts.instance_id, {}), policy.idle, now, instance_id=facts.instance_id
                )
                verdict = evaluate(Action.IDLE_REMIND, replace(facts, idle=idle), ctx)
            items.append(PlanItem(facts.instance, verdict, idle, hourly.get(facts.instance_id)))
        items.sort(key=lambda i: (not i.in_plan, -(i.hourly_usd or 0.0), i.instance.id))
        return CleanupPlan(tuple(items), len(fleet), len(candidates))

    def apply(
        self, actor: Actor, options: PlanOptions | None = None, *, ask_admin: bool = False
    ) -> tuple[CleanupPlan, ApplyResult]:
        """Stop what a fresh plan finds idle, still bound by every rule and the circuit breaker.

        With `ask_admin` (the Slack command, whose caller posts the request), what the breaker held is
        recorded as one stop waiting for an admin's approval; otherwise it is only reported as skipped.
        """
        deps = self._deps
        plan = self.plan(options)
        now = deps.clock.now()
        ctx = SafetyContext(now=now, policy=deps.policy, actor=actor, fleet_size=plan.fleet_size)
        facts = [ResourceFacts(instance=i.instance, idle=i.idle) for i in plan.idle]
        fresh = self._facts([f.instance for f in facts])
        facts = [replace(f, running_job=g.running_job) for f, g in zip(facts, fresh, strict=True)]
        batch = evaluate_batch(Action.STOP, facts, ctx)
        for verdict in batch.verdicts:
            self._audit.verdict(verdict)
        allowed = [v.instance_id for v in batch.allowed]
        op = Operation(
            id=new_operation_id(),
            kind="cleanup",
            requester=actor.user_id,
            channel=None,
            status="executing" if allowed else "refused",
            params={"planned": [i.instance.id for i in plan.idle]},
            instance_ids=allowed,
            created_at=now,
            updated_at=now,
        )
        deps.repos.operations.create(op)
        if not allowed:
            held = self._hold(actor, batch, plan, op.id) if ask_admin else None
            return plan, ApplyResult(op.id, batch, (), held=held)
        try:
            states = deps.provider.stop(allowed)
        except ProviderError as exc:
            deps.repos.operations.transition(
                op.id, "executing", "failed", at=deps.clock.now(), error=str(exc)
            )
            self._audit.event(
                actor.user_id, "cleanup", "failed", operation_id=op.id, detail={"error": str(exc)}
            )
            return plan, ApplyResult(op.id, batch, (), str(exc))
        by_id = {i.instance.id: i.instance for i in plan.idle}
        changed = [replace(by_id[iid], state=s) for iid, s in states.items() if iid in by_id]
        deps.repos.resources.upsert_from_cloud(
            changed, deps.clock.now(), self._prices.hourly_by_instance(changed)
        )
        deps.repos.operations.transition(
            op.id, "executing", "succeeded", at=deps.clock.now(), result={"stopped": allowed}
        )
        for iid in allowed:
            self._audit.event(actor.user_id, "cleanup:stop", "succeeded", target=iid, operation_id=op.id)
        held = self._hold(actor, batch, plan, op.id) if ask_admin else None
        return plan, ApplyResult(op.id, batch, tuple(allowed), held=held)

    # --- what the breaker held: one stop an admin approves (DESIGN §3.7) ---------------------------

    def _hold(self, actor: Actor, batch: BatchResult, plan: CleanupPlan, cleanup_id: str) -> Outcome | None:
        """Record the stops the breaker held as one operation waiting for an admin's approval."""
        held = [v.instance_id for v in batch.held_by_breaker]
        if not held:
            return None
        now = self._deps.clock.now()
        op = self._deps.repos.operations.create(
            Operation(
                id=new_operation_id(),
                kind="stop",
                requester=actor.user_id,
                channel=None,
                status=OpStatus.AWAITING_APPROVAL,
                params={
                    "breaker_batch": True,
                    "breaker_source": BREAKER_SOURCE,
                    "cleanup": cleanup_id,
                    "held": held,
                },
                instance_ids=held,
                created_at=now,
                updated_at=now,
            )
        )
        by_id = {i.instance.id: i.instance for i in plan.idle}
        went = len(batch.allowed)
        return Outcome(
            op.id,
            "stop",
            OpStatus.AWAITING_APPROVAL,
            "needs an admin's approval",
            tuple(by_id[i] for i in held if i in by_id),
            reasons=(
                f"the circuit breaker (at most {batch.breaker_cap} stops at once) held {len(held)} of this "
                f"cleanup's idle machines after {went} went ahead; only an admin can approve these",
            ),
            details={"breaker_batch": True},
        )

    def judge_held(self, op: Operation) -> list[Verdict]:
        """Fresh stop verdicts for a held cleanup batch, with the requester's rights: every rule again,
        proof of idleness from fresh metrics included, except the breaker, which the admin lifted. A
        machine no longer running has no verdict, so the approval leaves it out."""
        deps = self._deps
        plan = self.plan()
        by_id = {i.instance.id: i for i in plan.items}
        wanted = [by_id[i] for i in op.instance_ids if i in by_id]
        jobs = {f.instance_id: f for f in self._facts([i.instance for i in wanted])}
        ctx = SafetyContext(
            now=deps.clock.now(),
            policy=deps.policy,
            actor=deps.roles.actor(op.requester),
            fleet_size=plan.fleet_size,
            breaker_approved=True,
        )
        verdicts = []
        for item in wanted:
            if item.in_plan:
                verdict = evaluate(Action.STOP, replace(jobs[item.instance.id], idle=item.idle), ctx)
            else:  # busy again, protected, kept…: the plan's own reason, as a refused stop
                verdict = replace(item.verdict, action=Action.STOP, allowed=False)
            self._audit.verdict(verdict, operation_id=op.id)
            verdicts.append(verdict)
        return verdicts

    def run_held(self, op: Operation, proceed: list[str], approved_by: str | None) -> Outcome:
        """Stop what the re-check still allows of an approved batch; the operation ends here."""
        deps = self._deps
        found = deps.provider.describe_many(proceed) if proceed else {}
        targets = [i for i in proceed if i in found]
        try:
            states = deps.provider.stop(targets) if targets else {}
        except ProviderError as exc:
            deps.repos.operations.transition(
                op.id, OpStatus.EXECUTING, OpStatus.FAILED, at=deps.clock.now(), error=str(exc)
            )
            self._audit.event(
                op.requester, "cleanup", "failed", operation_id=op.id, detail={"error": str(exc)}
            )
            return Outcome(op.id, "stop", OpStatus.FAILED, f"AWS refused the stop: {exc}")
        changed = [replace(found[iid], state=s) for iid, s in states.items() if iid in found]
        deps.repos.resources.upsert_from_cloud(
            changed, deps.clock.now(), self._prices.hourly_by_instance(changed)
        )
        stopped = [i.id for i in changed]
        missed = [i for i in proceed if i not in stopped]
        rechecked = [i for i in op.params.get("held", []) if i not in proceed]
        status = OpStatus.SUCCEEDED if stopped else OpStatus.FAILED
        summary = (
            f"stopped {len(stopped)} held idle machine(s)"
            + (f"; left running after the re-check: {', '.join(rechecked)}" if rechecked else "")
            + (f"; not stopped: {', '.join(missed)}" if missed else "")
        )
        deps.repos.operations.transition(
            op.id,
            OpStatus.EXECUTING,
            status,
            at=deps.clock.now(),
            result={"stopped": stopped, "not_stopped": missed, "approved_by": approved_by},
            error=None if stopped else summary,
        )
        for iid in stopped:
            self._audit.event(
                op.requester,
                "cleanup:stop",
                "succeeded",
                target=iid,
                operation_id=op.id,
                detail={"approved_by": approved_by},
            )
        return Outcome(
            op.id,
            "stop",
            status,
            summary,
            tuple(changed),
            details={"breaker_batch": True, "acted": stopped},
        )
