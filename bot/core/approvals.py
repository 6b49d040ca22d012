"""The approval state machine (DESIGN §3 rule 9): two people for irreversible or costly actions.

```
pending ──approve──▶ approved ──begin_execution──▶ executing ──finish──▶ succeeded | failed
   │ deny / requester withdraws / expiry / cancel       │ expiry, or the re-check skips everything
   ▼                                                    ▼
denied | cancelled | expired                      expired | cancelled
```

Every function is pure: it returns a `Transition` (the state before and after, which the repository applies
with compare-and-set on `before.status`, so a double click changes the row once) or a `Refusal` that says
why nothing changed, in a sentence fit for an ephemeral Slack reply.

- Fail closed: with no approvers configured nothing can be approved, and the refusal says how to configure
  them. Only someone in the configured set may approve or deny, never the requester, who may instead
  withdraw (deny) or cancel their own request.
- Requests expire (`ApprovalPolicy.expiry`, 30 min); a click after that moves the request to *expired*.
- `begin_execution` runs once per approval: it needs *approved*, an unexpired request, and safety verdicts
  evaluated after the decision. Machines the re-check now skips are dropped; if none is left the request
  is cancelled with the rule's reason.
- Circuit-breaker batches reuse the machine with the admins as the approver set
  (`approver_setting="RUNCTL_ADMINS"`); the bot is then the requester.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from bot.core.clock import require_utc
from bot.core.cost import round_usd, usd
from bot.core.policy import DEFAULT_POLICY, ApprovalPolicy
from bot.core.safety import Action, Actor, Verdict, format_time

LAUNCH = "launch"  # not a safety `Action`: a launch has no machine yet


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TRANSITIONS: dict[ApprovalStatus, frozenset[ApprovalStatus]] = {
    ApprovalStatus.PENDING: frozenset(
        {ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.EXPIRED, ApprovalStatus.CANCELLED}
    ),
    ApprovalStatus.APPROVED: frozenset(
        {ApprovalStatus.EXECUTING, ApprovalStatus.EXPIRED, ApprovalStatus.CANCELLED}
    ),
    ApprovalStatus.EXECUTING: frozenset({ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED}),
    ApprovalStatus.DENIED: frozenset(),
    ApprovalStatus.EXPIRED: frozenset(),
    ApprovalStatus.CANCELLED: frozenset(),
    ApprovalStatus.SUCCEEDED: frozenset(),
    ApprovalStatus.FAILED: frozenset(),
}
TERMINAL: frozenset[ApprovalStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
_RAN = frozenset({ApprovalStatus.EXECUTING, ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED})


class Decision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class RefusalCode(StrEnum):
    NO_APPROVERS = "no_approvers"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"
    ALREADY_DECIDED = "already_decided"
    NOT_APPROVED = "not_approved"
    ALREADY_EXECUTED = "already_executed"
    NOT_EXECUTING = "not_executing"
    STALE_CHECK = "stale_check"
    NOT_PERMITTED = "not_permitted"


@dataclass(frozen=True)
class ApprovalState:
    id: str
    requester: str  # Slack user id
    status: ApprovalStatus
    created_at: datetime
    expires_at: datetime
    action: str = ""  # `Action` value, or `LAUNCH`
    instance_ids: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ApprovalStatus(self.status))
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        object.__setattr__(self, "expires_at", require_utc(self.expires_at, "expires_at"))
        if self.decided_at is not None:
            object.__setattr__(self, "decided_at", require_utc(self.decided_at, "decided_at"))

    def expired_at(self, now: datetime) -> bool:
        return require_utc(now) >= self.expires_at


@dataclass(frozen=True)
class Transition:
    before: ApprovalState
    after: ApprovalState
    message: str
    proceed: tuple[str, ...] = ()  # begin_execution: the machines still allowed
    dropped: tuple[Verdict, ...] = ()  # begin_execution: the machines the re-check now skips

    @property
    def from_status(self) -> ApprovalStatus:
        """The status the repository must still find (compare-and-set)."""
        return self.before.status

    @property
    def to_status(self) -> ApprovalStatus:
        return self.after.status


@dataclass(frozen=True)
class Refusal:
    approval_id: str
    code: RefusalCode
    message: str


def _holders(approver_setting: str) -> str:
    """`admins` for a circuit-breaker batch (RUNCTL_ADMINS), `approvers` otherwise."""
    return "admins" if approver_setting == "RUNCTL_ADMINS" else "approvers"


def _mention(user: str | None) -> str:
    return f"<@{user}>" if user else "someone"


def _move(
    state: ApprovalState,
    to: ApprovalStatus,
    message: str,
    *,
    decided_by: str | None = None,
    decided_at: datetime | None = None,
    reason: str | None = None,
) -> Transition:
    """The one place a status changes, so no function can produce a move the graph does not have."""
    if to not in TRANSITIONS[state.status]:
        raise ValueError(f"approval {state.id}: {state.status.value} -> {to.value} is not a transition")
    after = replace(
        state,
        status=to,
        decided_by=decided_by if decided_by is not None else state.decided_by,
        decided_at=decided_at if decided_at is not None else state.decided_at,
        reason=reason if reason is not None else state.reason,
    )
    return Transition(state, after, message)


def new_approval(
    approval_id: str,
    requester: str,
    now: datetime,
    *,
    action: str,
    instance_ids: Sequence[str] = (),
    policy: ApprovalPolicy = DEFAULT_POLICY.approvals,
) -> ApprovalState:
    now = require_utc(now)
    return ApprovalState(
        approval_id,
        requester,
        ApprovalStatus.PENDING,
        now,
        now + policy.expiry,
        action=action,
        instance_ids=tuple(dict.fromkeys(instance_ids)),
    )


def _status_sentence(approval: ApprovalState) -> str:
    status, who = approval.status, _mention(approval.decided_by)
    if status in {ApprovalStatus.APPROVED, *_RAN}:
        return f"already approved by {who}" + ("" if status is ApprovalStatus.APPROVED else f" ({status})")
    if status is ApprovalStatus.DENIED:
        return f"already denied by {who}"
    if status is ApprovalStatus.EXPIRED:
        return f"this request expired at {format_time(approval.expires_at)}; ask again if it is still needed"
    return "this request was cancelled" + (f": {approval.reason}" if approval.reason else "")


def _sentence(approval: ApprovalState) -> str:
    text = _status_sentence(approval)
    return text[:1].upper() + text[1:] + "."


def expire(approval: ApprovalState, now: datetime) -> Transition | None:
    """For the sweeper: a pending or approved (not yet running) request past its expiry expires."""
    if approval.status in {ApprovalStatus.PENDING, ApprovalStatus.APPROVED} and approval.expired_at(now):
        return _move(
            approval,
            ApprovalStatus.EXPIRED,
            f"this request expired at {format_time(approval.expires_at)}; nothing was done",
            reason="expired",
        )
    return None


def decide(
    approval: ApprovalState,
    decision: Decision,
    actor: Actor,
    now: datetime,
    approvers: frozenset[str],
    *,
    approver_setting: str = "RUNCTL_APPROVERS",
) -> Transition | Refusal:
    """An Approve or Deny click.

    Whoever clicks after expiry expires the request. The requester's Deny withdraws it (cancelled); their
    Approve is refused. Anyone else must be in `approvers` (the configured approver role).
    """
    now = require_utc(now)
    if approval.status is not ApprovalStatus.PENDING:
        return Refusal(approval.id, RefusalCode.ALREADY_DECIDED, _sentence(approval))
    if (expired := expire(approval, now)) is not None:
        return expired
    if actor.user_id == approval.requester:
        if decision is Decision.DENY:
            return _move(
                approval,
                ApprovalStatus.CANCELLED,
                f"withdrawn by {actor.mention}, who asked for it",
                decided_by=actor.user_id,
                decided_at=now,
                reason="withdrawn by the requester",
            )
        return Refusal(
            approval.id,
            RefusalCode.SELF_APPROVAL,
            "You asked for this, so someone else must approve it: two people are needed for this action.",
        )
    if not approvers:
        return Refusal(
            approval.id,
            RefusalCode.NO_APPROVERS,
            f"No approvers are configured, so nothing can be approved. An admin can set {approver_setting} "
            "to a comma-separated list of Slack user IDs (e.g. U023BCDEFG,U034CDEFGH) and restart the bot.",
        )
    if actor.user_id not in approvers:
        return Refusal(
            approval.id,
            RefusalCode.NOT_APPROVER,
            f"Only {_holders(approver_setting)} ({approver_setting}) can approve or deny this, and "
            f"{actor.mention} is not one.",
        )
    if decision is Decision.APPROVE:
        return _move(
            approval,
            ApprovalStatus.APPROVED,
            f"approved by {actor.mention}",
            decided_by=actor.user_id,
            decided_at=now,
        )
    return _move(
        approval,
        ApprovalStatus.DENIED,
        f"denied by {actor.mention}",
        decided_by=actor.user_id,
        decided_at=now,
        reason=f"denied by {actor.mention}",
    )


def cancel(
    approval: ApprovalState,
    actor: Actor,
    now: datetime,
    *,
    reason: str = "",
) -> Transition | Refusal:
    """The requester or an admin calls a pending or approved request off before it runs."""
    require_utc(now)
    if approval.status not in {ApprovalStatus.PENDING, ApprovalStatus.APPROVED}:
        return Refusal(approval.id, RefusalCode.ALREADY_DECIDED, _sentence(approval))
    if actor.user_id != approval.requester and not actor.is_admin:
        return Refusal(
            approval.id,
            RefusalCode.NOT_PERMITTED,
            "Only the person who asked, or an admin, can cancel this request.",
        )
    why = reason or f"cancelled by {actor.mention}"
    return _move(approval, ApprovalStatus.CANCELLED, why, reason=why)


def begin_execution(
    approval: ApprovalState, verdicts: Sequence[Verdict], now: datetime
) -> Transition | Refusal:
    """Claim the approved request for execution, once, on a fresh safety re-check.

    `verdicts` must be evaluated after the decision (their `at` not before `decided_at`), one per machine of
    the request, for the request's action. A refusal leaves the row unchanged so the caller can re-check and
    retry; a transition is applied with compare-and-set, so only one worker ever gets *executing*.
    """
    now = require_utc(now)
    if approval.status in _RAN:
        return Refusal(
            approval.id, RefusalCode.ALREADY_EXECUTED, f"This request has already run ({approval.status})."
        )
    if approval.status is not ApprovalStatus.APPROVED:
        return Refusal(approval.id, RefusalCode.NOT_APPROVED, _sentence(approval))
    if (expired := expire(approval, now)) is not None:
        return expired
    decided_at = approval.decided_at or approval.created_at
    by_id: dict[str, Verdict] = {}
    for verdict in verdicts:
        if approval.action and verdict.action.value != approval.action:
            return Refusal(
                approval.id,
                RefusalCode.STALE_CHECK,
                f"The safety check was for {verdict.action}, but the request is to {approval.action}.",
            )
        if verdict.at < decided_at:
            return Refusal(
                approval.id,
                RefusalCode.STALE_CHECK,
                f"The safety check of {verdict.instance_id} predates the decision; the rules must be checked "
                "again at click time.",
            )
        by_id[verdict.instance_id] = verdict
    missing = [iid for iid in approval.instance_ids if iid not in by_id]
    if missing:
        return Refusal(
            approval.id,
            RefusalCode.STALE_CHECK,
            f"No fresh safety check for {', '.join(missing)}; nothing runs unchecked.",
        )
    checked = [by_id[iid] for iid in approval.instance_ids]
    proceed = tuple(v.instance_id for v in checked if v.allowed)
    dropped = tuple(v for v in checked if not v.allowed)
    if approval.instance_ids and not proceed:
        first = dropped[0]
        why = f"the rules no longer allow it: {first.reason}"
        transition = _move(approval, ApprovalStatus.CANCELLED, why, reason=why)
        return replace(transition, dropped=dropped)
    message = "running"
    if dropped:
        message += "; skipped now: " + "; ".join(v.reason for v in dropped)
    transition = _move(approval, ApprovalStatus.EXECUTING, message)
    return replace(transition, proceed=proceed, dropped=dropped)


def finish(
    approval: ApprovalState, now: datetime, *, succeeded: bool, detail: str = ""
) -> Transition | Refusal:
    """Record how the execution ended."""
    require_utc(now)
    if approval.status is not ApprovalStatus.EXECUTING:
        return Refusal(
            approval.id, RefusalCode.NOT_EXECUTING, f"This request is not running (it is {approval.status})."
        )
    to = ApprovalStatus.SUCCEEDED if succeeded else ApprovalStatus.FAILED
    return _move(approval, to, detail or to.value, reason=detail or approval.reason)


def approval_reasons(
    action: str,
    *,
    hourly_usd: Decimal | float | None = None,
    user_running: int = 0,
    user_hourly_usd: Decimal | float = 0,
    policy: ApprovalPolicy = DEFAULT_POLICY.approvals,
) -> tuple[str, ...]:
    """Why `action` needs an approver; empty when it does not.

    Terminate always does (it cannot be undone). A launch or a start (anything that starts billing) does
    when its price is above `cost_per_hour`, or when it would take the requester past their limits on
    running machines or $/h (`user_running` and `user_hourly_usd` are what they run now).
    """
    reasons: list[str] = []
    if action == Action.TERMINATE:
        reasons.append("terminating cannot be undone")
    if action in {LAUNCH, Action.START}:
        price = usd(hourly_usd) if hourly_usd is not None else None
        if price is None:
            # Fail closed: a machine whose price nobody knows could be the most expensive one.
            reasons.append("its price is unknown, so nobody can tell whether it is within the limits")
        if price is not None and price > policy.cost_per_hour:
            reasons.append(
                f"${round_usd(price)}/h is above the ${round_usd(policy.cost_per_hour)}/h approval threshold"
            )
        if user_running + 1 > policy.user_max_instances:
            reasons.append(
                f"it would be machine number {user_running + 1} for the requester "
                f"(limit {policy.user_max_instances} without approval)"
            )
        if price is not None:
            after = usd(user_hourly_usd) + price
            if after > policy.user_max_cost_per_hour:
                reasons.append(
                    f"the requester's machines would cost ${round_usd(after)}/h "
                    f"(limit ${round_usd(policy.user_max_cost_per_hour)}/h without approval)"
                )
    return tuple(reasons)
