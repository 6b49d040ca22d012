"""Two people for irreversible or costly actions: request, decide once, re-check, execute, expire.

Every state change is a compare-and-set on the approval row (and then the operation row), so fifty
clicks on one Approve button execute once; the losers are told who got there first. The message is
updated in place after each change. The rules run again at click time with the requester's rights.

A batch the circuit breaker held (`params.breaker_batch`) is approved by an admin only (`RUNCTL_ADMINS`),
and on approval it is judged and run by the service that held it (`BreakerBatchRunner`, chosen by
`params.breaker_source`): the idle cycle stops its machines as idle stops (every idle rule re-checked,
reminders closed as stopped by the bot, **Start it back** posted for each); a command-started cleanup
re-checks its machines as the person who ran it and stops what is still idle.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from typing import Protocol

from bot.core import approvals as rules
from bot.core.safety import Action, Verdict, evaluate
from bot.metrics import APPROVALS
from bot.services.audit import Auditor
from bot.services.costs import CostService
from bot.services.deps import ServiceDeps
from bot.services.operations import OperationService, OpStatus, Outcome
from bot.services.ports import MessageRef
from bot.views import operations as views
from storage.models import Approval, Operation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClickResult:
    """What a click came to. `ephemeral` is a private answer to the clicker; None when the message says it."""

    applied: bool
    ephemeral: str | None = None
    outcome: Outcome | None = None


class BreakerBatchRunner(Protocol):
    """Who judges and runs an approved breaker batch: the service whose run the breaker held."""

    def judge_held(self, op: Operation) -> list[Verdict]: ...

    def run_held(self, op: Operation, proceed: list[str], approved_by: str | None) -> Outcome: ...


#: The held batches of the idle cycle, which came first, carry no `breaker_source`.
IDLE_CYCLE_SOURCE = "idle_cycle"


def is_breaker_batch(op: Operation) -> bool:
    return bool(op.params.get("breaker_batch"))


def breaker_source(op: Operation) -> str:
    return str(op.params.get("breaker_source") or IDLE_CYCLE_SOURCE)


def _action(op: Operation) -> str:
    if op.kind == "launch":
        return rules.LAUNCH
    if is_breaker_batch(op) and breaker_source(op) == IDLE_CYCLE_SOURCE:
        return Action.IDLE_STOP.value
    return op.kind


def _state(row: Approval, op: Operation) -> rules.ApprovalState:
    return rules.ApprovalState(
        id=row.id,
        requester=row.requester,
        status=rules.ApprovalStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        action=_action(op),
        instance_ids=tuple(op.instance_ids),
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason=row.reason or "",
    )


class ApprovalService:
    def __init__(
        self, deps: ServiceDeps, operations: OperationService, costs: CostService, auditor: Auditor
    ) -> None:
        self._deps = deps
        self._ops = operations
        self._costs = costs
        self._audit = auditor
        self._breaker_runners: dict[str, BreakerBatchRunner] = {}

    def set_breaker_runner(self, runner: BreakerBatchRunner, *, source: str = IDLE_CYCLE_SOURCE) -> None:
        self._breaker_runners[source] = runner

    def _approvers(self, op: Operation | None) -> tuple[frozenset[str], str]:
        """Who may decide, and the setting that names them: admins alone for a breaker batch."""
        if op is not None and is_breaker_batch(op):
            return self._deps.roles.admins, "RUNCTL_ADMINS"
        return self._deps.roles.approver_ids, "RUNCTL_APPROVERS"

    def open(
        self, outcome: Outcome, *, requester: str, channel: str, message: MessageRef | None = None
    ) -> Approval:
        """Record the request and show it with Approve / Deny in the requester's channel.

        `message` is the request's own message (e.g. a launch's "working…"), which becomes the approval
        request in place, so one request is one message whose state is always current.
        """
        now = self._deps.clock.now()
        state = rules.new_approval(
            uuid.uuid4().hex,
            requester,
            now,
            action=outcome.kind,
            instance_ids=[i.id for i in outcome.instances],
            policy=self._deps.policy.approvals,
        )
        row = self._deps.repos.approvals.create(
            Approval(
                id=state.id,
                operation_id=outcome.operation_id,
                requester=requester,
                status=state.status.value,
                created_at=now,
                expires_at=state.expires_at,
                reason="; ".join(outcome.reasons),
            )
        )
        ids = [i.id for i in outcome.instances]
        jobs = {j.instance_id: j.id for j in self._deps.repos.jobs.list_active(ids)} if ids else {}
        text, blocks = views.approval_request(
            approval_id=row.id,
            outcome=outcome,
            requester=requester,
            expires_at=row.expires_at,
            now=now,
            costs_so_far=self._costs.so_far(ids) if ids else None,
            running_jobs=jobs,
        )
        if message is not None:
            self._deps.notifier.update(message, text, blocks)
            ref = message
        else:
            ref = self._deps.notifier.post(channel, text, blocks)
        self._deps.repos.approvals.set_slack_message(row.id, ref.channel, ref.ts)
        self._deps.repos.operations.set_slack_message(outcome.operation_id, ref.channel, ref.ts)
        self._audit.event(
            requester,
            "approval:requested",
            "pending",
            target=",".join(ids) or None,
            operation_id=outcome.operation_id,
            detail={"approval_id": row.id, "reasons": list(outcome.reasons)},
        )
        op = self._deps.repos.operations.get(outcome.operation_id)
        approvers = sorted(self._approvers(op)[0] - {requester})
        for approver in approvers[:5]:
            self._deps.notifier.dm(approver, f"{text}. Approve or deny it in <#{ref.channel}>.", None)
        return row

    def decide(self, approval_id: str, user: str, decision: rules.Decision) -> ClickResult:
        repos = self._deps.repos
        row = repos.approvals.get(approval_id)
        if row is None:
            return ClickResult(False, "That request no longer exists.")
        op = repos.operations.get(row.operation_id)
        if op is None:
            return ClickResult(False, "That request has no operation behind it any more.")
        now = self._deps.clock.now()
        actor = self._deps.roles.actor(user)
        approvers, setting = self._approvers(op)
        move = rules.decide(_state(row, op), decision, actor, now, approvers, approver_setting=setting)
        if isinstance(move, rules.Refusal):
            self._audit.event(
                user,
                f"approval:{decision.value}",
                "refused",
                operation_id=op.id,
                rule=move.code.value,
                detail={"approval_id": row.id, "message": move.message},
            )
            return ClickResult(False, move.message)
        won = repos.approvals.decide(
            row.id, move.from_status.value, move.to_status.value, user, now, reason=move.after.reason or None
        )
        APPROVALS.labels(move.to_status.value if won else "lost_race").inc()
        if not won:
            # Someone else's click got there first: say what it did, in the same words as a late click.
            fresh = repos.approvals.get(row.id)
            if fresh is None:
                return ClickResult(False, "That request no longer exists.")
            late = rules.decide(_state(fresh, op), decision, actor, now, approvers, approver_setting=setting)
            said = late.message if isinstance(late, rules.Refusal) else "Someone else decided first."
            return ClickResult(False, f"{said} Your click changed nothing.")
        self._audit.event(
            user,
            f"approval:{decision.value}",
            move.to_status.value,
            operation_id=op.id,
            detail={"approval_id": row.id},
        )
        if move.to_status is not rules.ApprovalStatus.APPROVED:
            repos.operations.transition(
                op.id, OpStatus.AWAITING_APPROVAL, OpStatus.CANCELLED, at=now, error=move.message
            )
            sentence = f"{move.message[:1].upper()}{move.message[1:]}."
            if move.to_status is rules.ApprovalStatus.EXPIRED:
                # The click came too late: the clicker is told so, and the message says it for everyone.
                self._close_message(row, op, f":hourglass: {sentence}", None)
                return ClickResult(True, f"Too late: {move.message}.")
            self._close_message(row, op, f":no_entry: {sentence}", None)
            return ClickResult(True)
        outcome = self._execute(row.id, op)
        return ClickResult(True, outcome=outcome)

    def _execute(self, approval_id: str, op: Operation) -> Outcome:
        """Re-check with the requester's rights, claim execution once, run, record how it ended."""
        repos = self._deps.repos
        row = repos.approvals.get(approval_id)
        assert row is not None
        requester = self._deps.roles.actor(op.requester)
        force = bool(op.params.get("force"))
        verdicts: list[Verdict] = []
        runner = self._breaker_runners.get(breaker_source(op)) if is_breaker_batch(op) else None
        if is_breaker_batch(op) and runner is None:
            # Never fall back to a plain stop: the held machines must be re-checked as what held them.
            held_by = breaker_source(op).replace("_", " ")
            return Outcome(op.id, op.kind, OpStatus.REFUSED, f"the {held_by} does not run in this process")
        if runner is not None:
            verdicts = runner.judge_held(op)
        elif op.kind != "launch":
            found = self._ops.describe_many(op.instance_ids)
            ctx = self._ops.context(requester, force=force)
            by_id = {
                f.instance.id: evaluate(Action(op.kind), f, ctx)
                for f in self._ops.facts_for(list(found.values()))
            }
            for iid in op.instance_ids:
                if iid in by_id:
                    verdicts.append(by_id[iid])
        state = _state(row, op)
        missing = [iid for iid in state.instance_ids if iid not in {v.instance_id for v in verdicts}]
        if missing:
            state = replace(state, instance_ids=tuple(v.instance_id for v in verdicts))
        now = self._deps.clock.now()
        move = rules.begin_execution(state, verdicts, now)
        if isinstance(move, rules.Refusal):
            return Outcome(op.id, op.kind, OpStatus.REFUSED, move.message)
        if not repos.approvals.transition(
            row.id, move.from_status.value, move.to_status.value, reason=move.after.reason or None
        ):
            return Outcome(op.id, op.kind, OpStatus.REFUSED, "another click is already running it")
        if move.to_status is not rules.ApprovalStatus.EXECUTING:
            repos.operations.transition(
                op.id, OpStatus.AWAITING_APPROVAL, OpStatus.CANCELLED, at=now, error=move.message
            )
            outcome = Outcome(op.id, op.kind, OpStatus.CANCELLED, move.message)
            self._close_message(
                row, op, f":no_entry: Approved by <@{row.decided_by}>, but {move.message}.", outcome
            )
            return outcome
        if not repos.operations.transition(
            op.id,
            OpStatus.AWAITING_APPROVAL,
            OpStatus.EXECUTING,
            at=now,
            instance_ids=list(move.proceed) or op.instance_ids,
        ):
            return Outcome(
                op.id, op.kind, OpStatus.REFUSED, "the operation is no longer waiting for approval"
            )
        fresh_op = repos.operations.get(op.id)
        assert fresh_op is not None
        if runner is not None:
            outcome = runner.run_held(fresh_op, list(move.proceed), row.decided_by)
        elif op.kind == "launch":
            outcome = self._ops.execute_launch(fresh_op)
        else:
            outcome = self._ops.execute_power(fresh_op, requester, force=force, earlier=list(move.dropped))
        done = rules.finish(
            move.after,
            self._deps.clock.now(),
            succeeded=outcome.status == OpStatus.SUCCEEDED,
            detail=outcome.summary,
        )
        if isinstance(done, rules.Transition):
            repos.approvals.transition(
                row.id, done.from_status.value, done.to_status.value, reason=done.after.reason or None
            )
        icon = ":white_check_mark:" if outcome.status == OpStatus.SUCCEEDED else ":x:"
        self._close_message(row, op, f"{icon} Approved by <@{row.decided_by}>.", outcome)
        return outcome

    def expire_due(self) -> list[str]:
        """Pending requests whose time ran out become *expired*; their messages say so."""
        repos = self._deps.repos
        now = self._deps.clock.now()
        expired: list[str] = []
        for row in repos.approvals.list_pending_expired(now):
            op = repos.operations.get(row.operation_id)
            if op is None:
                continue
            move = rules.expire(_state(row, op), now)
            if move is None:
                continue
            if repos.approvals.decide(
                row.id, move.from_status.value, move.to_status.value, "runctl-bot", now, reason="expired"
            ):
                repos.operations.transition(
                    op.id, OpStatus.AWAITING_APPROVAL, OpStatus.CANCELLED, at=now, error="approval expired"
                )
                self._audit.event(
                    "runctl-bot",
                    "approval:expire",
                    "expired",
                    operation_id=op.id,
                    detail={"approval_id": row.id},
                )
                self._close_message(
                    row, op, f":hourglass: {move.message[:1].upper()}{move.message[1:]}.", None
                )
                expired.append(row.id)
        return expired

    def _close_message(self, row: Approval, op: Operation, headline: str, outcome: Outcome | None) -> None:
        fresh = self._deps.repos.approvals.get(row.id) or row
        if not (fresh.slack_channel and fresh.slack_ts):
            return
        text, blocks = views.approval_closed(
            kind=op.kind,
            targets=op.instance_ids or ([outcome.instances[0].id] if outcome and outcome.instances else []),
            requester=op.requester,
            headline=headline,
            outcome=outcome,
            operation_id=op.id,
            new_type=str(op.params["instance_type"]) if op.kind == "launch" else None,
        )
        try:
            self._deps.notifier.update(MessageRef(fresh.slack_channel, fresh.slack_ts), text, blocks)
        except Exception:
            log.exception("could not update approval message %s", row.id)
