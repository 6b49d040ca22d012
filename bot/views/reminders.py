"""Idle reminders: the evidence, the money, and Keep 4 h / Keep 1 day / Stop now per machine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.core.safety import format_duration, format_time
from bot.views import blocks as bk
from bot.views.common import mention, money

KEEP_SHORT = "idle_keep_short"
KEEP_LONG = "idle_keep_long"
STOP_NOW = "idle_stop_now"
# Action ids carry the mark id (`idle_keep_short:42`): a digest shows several machines, and action ids
# must be unique within a message.


@dataclass(frozen=True)
class ReminderLine:
    mark_id: int
    instance_id: str
    instance_type: str
    owner: str | None
    state: str  # the mark's state: notified, kept, acted, unmarked, …
    evidence: dict[str, Any]
    hourly_usd: float | None
    idle_cost_usd: Decimal | None
    grace_ends: datetime | None
    note: str = ""


def evidence_sentence(evidence: dict[str, Any]) -> str:
    """ "CPU max 1.2 % over 60 min, 12/12 datapoints; GPU max 0.0 %"."""
    window = evidence.get("idle_window_minutes")
    parts = []
    for metric in ("cpu", "gpu"):
        if f"{metric}_max" not in evidence:
            continue
        top = evidence.get(f"{metric}_max")
        got, expected = evidence.get(f"{metric}_datapoints"), evidence.get(f"{metric}_expected")
        shown = f"{float(top):.1f} %" if top is not None else "no data"
        text = f"{metric.upper()} max {shown}"
        if metric == "cpu" and window:
            text += f" over {int(float(window))} min"
        text += f", {got}/{expected} datapoints"
        parts.append(text)
    return "; ".join(parts) or "no evidence recorded"


def _stopped_by(evidence: dict[str, Any]) -> str:
    """How a closed reminder ended, kept on the line when a later re-render carries another line's note."""
    who, admin = evidence.get("stopped_by"), evidence.get("approved_by")
    if who == "runctl-bot":
        approved = f" ({mention(str(admin))} approved the held batch)" if admin else ""
        return f":octagonal_sign: Stopped by the bot after the grace period{approved}."
    return f":octagonal_sign: {mention(str(who))} stopped it."


def _line(line: ReminderLine, now: datetime, *, buttons: bool) -> list[bk.Block]:
    head = f"*`{line.instance_id}`* · {line.instance_type} · owner {mention(line.owner)}"
    money_text = f"{money(line.hourly_usd, per_hour=True)}"
    if line.idle_cost_usd is not None:
        money_text += f", {money(line.idle_cost_usd)} so far idle"
    body = f"{head}\n{evidence_sentence(line.evidence)}; {money_text}"
    if line.state == "notified" and line.grace_ends is not None:
        left = format_duration(line.grace_ends - now)
        body += (
            f"\nI will stop it at {format_time(line.grace_ends)} (in {left}) unless it is kept or busy again."
        )
    if line.state == "notified" and line.evidence.get("timezone_problem"):
        # The stop waits for a time zone it can trust; the owner should know why nothing happens.
        body += f"\n:warning: {line.evidence['timezone_problem']}."
    elif line.evidence.get("timezone_note"):
        body += f"\n:globe_with_meridians: {line.evidence['timezone_note']}."
    if line.note:
        body += f"\n{line.note}"
    elif line.state == "acted" and line.evidence.get("stopped_by"):
        body += f"\n{_stopped_by(line.evidence)}"
    blocks: list[bk.Block] = [bk.section(body)]
    if buttons and line.state == "notified":
        value = str(line.mark_id)
        blocks.append(
            bk.actions(
                f"mark:{line.mark_id}",
                bk.button("Keep 4 h", f"{KEEP_SHORT}:{value}", value),
                bk.button("Keep 1 day", f"{KEEP_LONG}:{value}", value, style="primary"),
                bk.button("Stop now", f"{STOP_NOW}:{value}", value, style="danger"),
            )
        )
    return blocks


def reminder_digest(
    lines: Sequence[ReminderLine], now: datetime, *, dry_run: bool, for_owner: str | None
) -> tuple[str, list[bk.Block]]:
    open_lines = [line for line in lines if line.state == "notified"]
    who = f"{mention(for_owner)}, " if for_owner else ""
    title = f"Idle machines: {len(open_lines)} waiting" if open_lines else "Idle machines: all handled"
    text = f"{who}{len(lines)} idle machine(s) found"
    blocks: list[bk.Block] = [bk.header(title)]
    if for_owner:
        blocks.append(
            bk.section(f"{who}these machines of yours have been idle. Keep them, or let me stop them.")
        )
    for line in lines:
        blocks += _line(line, now, buttons=True)
    mode = (
        "Dry run: idle rules only report until an admin sets RUNCTL_IDLE_ENFORCE=true."
        if dry_run
        else "Stopped machines keep their disks; *Start it back* restarts them."
    )
    blocks.append(bk.context(mode))
    return text, bk.fit(blocks, what="machines")
