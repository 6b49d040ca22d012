"""Answers to the read-only verbs: list, status, cost, cleanup plan, config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from bot.services.cleanup import CleanupPlan
from bot.services.costs import CostSummary
from bot.views import blocks as bk
from bot.views.common import instance_line, mention, money
from providers import tags as tagschema
from providers.base import Instance, InstanceState

Message = tuple[str, list[bk.Block]]

# A list is read, not scrolled: past this many rows the answer names how many more there are and how to
# narrow it. Forty rows keep the message to a few sections, far inside Slack's limits.
MAX_LIST_ROWS = 40
# A cost breakdown names the biggest spenders and sums up the rest in one line; names are clipped so the
# column stays far inside a field's 2000 characters.
MAX_COST_ROWS = 8
MAX_COST_NAME = 80


def instance_list(
    title: str,
    instances: Sequence[Instance],
    now: datetime,
    hourly: Mapping[str, float],
    *,
    empty: str = "No machines.",
) -> Message:
    running = [i for i in instances if i.state in (InstanceState.RUNNING, InstanceState.STARTING)]
    total = sum(hourly.get(i.id, 0.0) for i in running)
    text = f"{title}: {len(instances)} machine(s), {len(running)} running, {money(total, per_hour=True)}"
    if not instances:
        return text, [bk.header(title), bk.section(empty)]
    shown = instances[:MAX_LIST_ROWS]
    lines = [instance_line(i, now, hourly=hourly.get(i.id)) for i in shown]
    body = [bk.header(title), *bk.lines_section(lines)]
    if len(instances) > len(shown):
        body.append(
            bk.context(
                f"…and {len(instances) - len(shown)} more machine(s) not shown; narrow the list with "
                "`--project`, `--state` or `--user`."
            )
        )
    body.append(
        bk.context(
            f"{len(instances)} machine(s) · {len(running)} running · {money(total, per_hour=True)} now "
            f"· {money(total * 24)}/day"
        )
    )
    return text, bk.fit(body, what="machines")


def instance_status(
    inst: Instance, hourly: float | None, cost_so_far: Decimal | None, running_job: str | None
) -> Message:
    protection = tagschema.protection_tag(inst.tags)
    fields = [
        f"*State*\n{inst.state.value}",
        f"*Type*\n{inst.instance_type} ({inst.lifecycle.value})",
        f"*Owner*\n{mention(inst.owner)}",
        f"*Project*\n{inst.project or '—'}",
        f"*Launched*\n{inst.launch_time:%Y-%m-%d %H:%M} UTC",
        f"*Price*\n{money(hourly, per_hour=True)}",
        f"*Cost so far*\n{money(cost_so_far) if cost_so_far is not None else '—'}",
        f"*Protected*\n{protection + '=true' if protection else 'no'}",
        f"*Keep until*\n{inst.tags.get(tagschema.KEEP_UNTIL, '—')}",
        f"*Training job*\n{running_job or 'none'}",
    ]
    body = [bk.header(f"{inst.id} · {inst.name or inst.instance_type}"), bk.fields_section(fields)]
    if inst.state_reason_message:
        body.append(bk.context(f"State reason: {inst.state_reason_message}"))
    if not inst.managed:
        body.append(bk.context(":information_source: not managed by runctl (no runctl tags): listed only"))
    return f"{inst.id}: {inst.state.value}", body


def _top(values: Mapping[str | None, Decimal], label: str, *, owners: bool) -> str:
    """The biggest spenders, then one line for the rest, so the column adds up to the total shown."""
    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
    if not ranked:
        return f"*{label}*\n—"
    shown, rest = ranked[:MAX_COST_ROWS], ranked[MAX_COST_ROWS:]
    rows = [f"{mention(k) if owners else bk.clip(k or '—', MAX_COST_NAME)}: {money(v)}" for k, v in shown]
    if rest:
        noun = "owner(s)" if owners else "project(s)"
        rows.append(f"_…and {len(rest)} more {noun}: {money(sum((v for _, v in rest), Decimal(0)))}_")
    return f"*{label}*\n" + "\n".join(rows)


def cost_summary(title: str, summary: CostSummary) -> Message:

    fields = [
        f"*Spent*\n{money(summary.total)}",
        f"*Running now*\n{money(summary.hourly_now, per_hour=True)}",
        f"*Month projection*\n{money(summary.projected_month)}",
        f"*Since*\n{summary.since:%Y-%m-%d %H:%M} UTC",
    ]
    body = [bk.header(title), bk.fields_section(fields)]
    body.append(
        bk.fields_section(
            [
                _top(summary.by_owner, "By owner", owners=True),
                _top(summary.by_project, "By project", owners=False),
            ]
        )
    )
    if summary.unpriced_hours > 0:
        body.append(bk.context(f":warning: {summary.unpriced_hours:.1f} running hours have no known price"))
    text = f"{title}: {money(summary.total)} spent, {money(summary.hourly_now, per_hour=True)} now"
    return text, body


def cleanup_plan(plan: CleanupPlan, now: datetime, *, enforce: bool) -> Message:
    idle = plan.idle
    title = f"Cleanup plan: {len(idle)} idle machine(s)"
    lines = []
    for item in idle:
        evidence = item.idle.reason if item.idle else "no evidence"
        lines.append(f"{instance_line(item.instance, now, hourly=item.hourly_usd)}\n    _{evidence}_")
    body = [bk.header(title)]
    body += bk.lines_section(lines) if lines else [bk.section("Nothing is proven idle right now.")]
    mode = "enforcing" if enforce else "dry-run (RUNCTL_IDLE_ENFORCE=false): the bot only reports"
    body.append(
        bk.context(
            f"{plan.fleet_size} managed machine(s) · {plan.candidates} checked for idleness · "
            f"{money(plan.idle_hourly_usd, per_hour=True)} idle · {mode}"
        )
    )
    return title, bk.fit(body, what="machines")


def config_summary(rows: Sequence[tuple[str, str]]) -> Message:
    lines = [f"`{k}` = {v}" for k, v in rows]
    return "runctl-bot configuration", [bk.header("Configuration"), *bk.lines_section(lines)]
