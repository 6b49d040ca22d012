"""Messages for operations: results, approval requests and their outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from bot.core.safety import format_time
from bot.services.operations import OpStatus, Outcome
from bot.views import blocks as bk
from bot.views.common import instance_line, mention, money

APPROVE = "approval_approve"
DENY = "approval_deny"
START_BACK = "start_it_back"

_ICON = {
    OpStatus.SUCCEEDED: ":white_check_mark:",
    OpStatus.FAILED: ":x:",
    OpStatus.REFUSED: ":no_entry:",
    OpStatus.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    OpStatus.CANCELLED: ":heavy_multiplication_x:",
    OpStatus.EXECUTING: ":gear:",
}

Message = tuple[str, list[bk.Block]]


def estimate(hourly: float | None, basis: str | None = None, *, sep: str = ", ") -> str:
    """A launch estimate: $/h and $/day, or just "price unknown" (never a made-up $0.00/day)."""
    if hourly is None:
        return money(None)
    shown = money(hourly, per_hour=True) + (f" ({basis})" if basis else "")
    return f"{shown}{sep}{money(hourly * 24)}/day"


def outcome_message(outcome: Outcome, now: datetime, *, requester: str | None = None) -> Message:
    icon = _ICON.get(outcome.status, "")
    who = f"{mention(requester)} · " if requester else ""
    text = f"{icon} {outcome.kind}: {outcome.summary}"
    body: list[bk.Block] = [bk.section(f"{icon} *{outcome.kind}* — {outcome.summary}")]
    hourly = outcome.details.get("hourly_usd") if outcome.details else None
    lines = [
        instance_line(i, now, hourly=hourly if len(outcome.instances) == 1 else None)
        for i in outcome.instances
    ]
    body += bk.lines_section(lines)
    for warning in outcome.details.get("warnings", []) if outcome.details else []:
        body.append(bk.context(f":warning: {warning}"))
    if outcome.kind == "stop" and outcome.status == OpStatus.SUCCEEDED:
        acted = outcome.details.get("acted", [])
        if acted:
            body.append(
                bk.actions(
                    f"startback:{outcome.operation_id}",
                    bk.button("Start it back", START_BACK, ",".join(acted)[:2000]),
                )
            )
    body.append(bk.context(f"{who}operation `{outcome.operation_id}`"))
    return text, bk.fit(body)


# A cleanup may stop many machines: one Start it back button each up to this many (one actions row, far
# inside Slack's 25 elements), then a line naming how many more there are.
MAX_START_BACK_BUTTONS = 10


def start_back_buttons(operation_id: str, instance_ids: Sequence[str]) -> list[bk.Block]:
    """One **Start it back** button per machine (action ids `start_it_back:<n>`, unique in the message)
    up to `MAX_START_BACK_BUTTONS`, and how many more were stopped without one."""
    shown = list(instance_ids[:MAX_START_BACK_BUTTONS])
    if not shown:
        return []
    out: list[bk.Block] = [
        bk.actions(
            f"startback:{operation_id}",
            *(
                bk.button(f"Start {iid} back", f"{START_BACK}:{n}", iid)
                for n, iid in enumerate(shown, start=1)
            ),
        )
    ]
    rest = len(instance_ids) - len(shown)
    if rest:
        out.append(
            bk.context(
                f"…and {rest} more stopped machine(s) without a button here: "
                "`/runctl start <id>` starts any of them."
            )
        )
    return out


def cleanup_result(
    stopped: Sequence[str],
    skipped: Sequence[tuple[str, str]],
    error: str | None,
    operation_id: str,
    *,
    held: Sequence[str] = (),
) -> Message:
    """What `cleanup run --yes` did, with a way back for each machine it stopped, and what the circuit
    breaker held for an admin's approval (the request follows as its own message)."""
    lines = [f"Stopped {len(stopped)} idle machine(s): " + (", ".join(f"`{i}`" for i in stopped) or "none")]
    lines += [f"• skipped `{iid}`: {reason}" for iid, reason in skipped]
    if error:
        lines.append(f":x: {error}")
    notes = (
        [
            bk.context(
                f":pause_button: The circuit breaker held {len(held)} machine(s); an admin's approval "
                "was requested below. An admin other than the one who ran the cleanup must approve it."
            )
        ]
        if held
        else []
    )
    tail = [*start_back_buttons(operation_id, stopped), *notes, bk.context(f"operation `{operation_id}`")]
    head = bk.lines_section(lines)
    if len(head) + len(tail) > bk.MAX_BLOCKS:
        head = [*head[: bk.MAX_BLOCKS - len(tail) - 1], bk.context("…the rest of the list is not shown")]
    return lines[0], [*head, *tail]


def approval_request(
    *,
    approval_id: str,
    outcome: Outcome,
    requester: str,
    expires_at: datetime,
    now: datetime,
    costs_so_far: Mapping[str, Decimal] | None = None,
    running_jobs: Mapping[str, str] | None = None,
) -> Message:
    verb = outcome.kind
    targets = (
        ", ".join(f"`{i.id}`" for i in outcome.instances) or f"a new `{outcome.details.get('instance_type')}`"
    )
    text = f"Approval needed: {verb} {targets} for {mention(requester)}"
    body: list[bk.Block] = [bk.header(f"Approval needed: {verb}")]
    body.append(bk.section(f"{mention(requester)} asks to *{verb}* {targets}."))
    facts: list[str] = []
    if outcome.kind == "launch":
        d = outcome.details
        facts.append(f"*Type*\n{d.get('instance_type')}{' spot' if d.get('spot') else ''}")
        facts.append(f"*Project*\n{d.get('project')}")
        est = d.get("estimate_usd_per_hour")
        facts.append(f"*Estimate*\n{estimate(est, sep=' · ')}")
    body += [bk.fields_section(facts)] if facts else []
    lines = []
    for inst in outcome.instances:
        extra = []
        if costs_so_far and inst.id in costs_so_far:
            extra.append(f"cost so far {money(costs_so_far[inst.id])}")
        if running_jobs and inst.id in running_jobs:
            extra.append(f":warning: job `{running_jobs[inst.id]}` running")
        lines.append(instance_line(inst, now) + (" · " + " · ".join(extra) if extra else ""))
    body += bk.lines_section(lines)
    if outcome.reasons:
        body.append(bk.section("*Why an approval:* " + "; ".join(outcome.reasons)))
    force = outcome.details.get("force") if outcome.details else False
    if force:
        body.append(
            bk.context(":rotating_light: requested with `--force` (an admin's force still needs approval)")
        )
    body.append(
        bk.actions(
            f"approval:{approval_id}",
            bk.button("Approve", APPROVE, approval_id, style="primary"),
            bk.button("Deny", DENY, approval_id, style="danger"),
        )
    )
    body.append(
        bk.context(
            f"Expires {format_time(expires_at)} · approver must not be the requester · "
            f"operation `{outcome.operation_id}`"
        )
    )
    return text, bk.fit(body)


def approval_closed(
    *,
    kind: str,
    targets: Sequence[str],
    requester: str,
    headline: str,
    outcome: Outcome | None,
    operation_id: str,
    new_type: str | None = None,
) -> Message:
    """The approval message after a decision: no buttons, who decided, and what happened."""
    shown = f"a new `{new_type}`" if new_type else (", ".join(f"`{t}`" for t in targets) or "a new machine")
    body: list[bk.Block] = [
        bk.header(f"Approval: {kind}"),
        bk.section(f"{mention(requester)} asked to *{kind}* {shown}."),
        bk.section(headline),
    ]
    if outcome is not None:
        body.append(bk.section(f"{_ICON.get(outcome.status, '')} *Result:* {outcome.summary}"))
        if outcome.kind == "stop" and outcome.status == OpStatus.SUCCEEDED:
            body += start_back_buttons(operation_id, list(outcome.details.get("acted", [])))
    body.append(bk.context(f"operation `{operation_id}`"))
    return f"{kind} {shown}: {headline}", body
