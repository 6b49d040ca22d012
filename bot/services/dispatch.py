"""From a parsed `/runctl` command to a use case and an answer, with no Slack types in sight.

Read-only verbs answer privately (`Reply.public` false). Changes to the fleet are posted in the channel
so the team sees them: a launch posts "launching…" first and updates that message in place when the
cloud answers; requests that need a second person become an approval message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.core import commands as cmds
from bot.core.safety import Action, format_duration
from bot.services.cleanup import PlanOptions
from bot.services.container import BotServices
from bot.services.operations import LaunchRequest, OpStatus, Outcome
from bot.services.ports import MessageRef
from bot.views import blocks as bk
from bot.views import fleet as fleet_views
from bot.views import operations as op_views
from providers.base import InstanceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    user: str
    channel: str | None
    operation_id: str | None = None  # a stable id from the delivery, so a redelivery cannot run twice


@dataclass(frozen=True)
class Reply:
    text: str
    blocks: list[bk.Block] = field(default_factory=list)
    public: bool = False


NOTHING = Reply("")


DEFAULT_PROJECT = "default"


class CommandDispatcher:
    def __init__(self, services: BotServices, config_rows: list[tuple[str, str]]) -> None:
        self._s = services
        self._config_rows = config_rows
        self._extra: dict[str, Callable[[Any, Origin], Reply]] = {}

    def register(self, verb: str, handler: Callable[[Any, Origin], Reply]) -> None:
        """Verbs served by other services (reports, training), added by the composition root."""
        self._extra[verb] = handler

    @property
    def _now(self) -> datetime:
        return self._s.deps.clock.now()

    def run(self, command: cmds.Command, origin: Origin) -> Reply:
        handler = self._extra.get(command.verb) or getattr(self, "_" + command.verb.replace(" ", "_"), None)
        if handler is None:
            return Reply(
                f"`/runctl {command.verb}` is not available in this version yet. See `/runctl help`."
            )
        reply: Reply = handler(command, origin)
        return reply

    # --- read-only ---------------------------------------------------------------------------

    def _list(self, c: cmds.ListCommand, o: Origin) -> Reply:
        provider = self._s.deps.provider
        instances = provider.list_managed()
        owner = None if c.all_users else (c.user or o.user)
        if owner:
            instances = [i for i in instances if i.owner == owner]
        if c.project:
            instances = [i for i in instances if i.project == c.project]
        if c.state is cmds.StateFilter.RUNNING:
            instances = [i for i in instances if i.state in (InstanceState.RUNNING, InstanceState.STARTING)]
        elif c.state is cmds.StateFilter.STOPPED:
            instances = [i for i in instances if i.state in (InstanceState.STOPPED, InstanceState.STOPPING)]
        else:
            instances = [i for i in instances if i.state is not InstanceState.TERMINATED]
        instances.sort(key=lambda i: (i.state.value != "running", i.launch_time), reverse=False)
        hourly = self._s.prices.hourly_by_instance(instances)
        whose = (
            "Everyone's machines"
            if owner is None
            else ("Your machines" if owner == o.user else f"<@{owner}>'s machines")
        )
        if c.project:
            whose += f" in {c.project}"
        text, blocks = fleet_views.instance_list(
            whose, instances, self._now, hourly, empty="No machines. Try `/runctl list --all`."
        )
        return Reply(text, blocks)

    def _status(self, c: cmds.StatusCommand, o: Origin) -> Reply:
        inst = self._s.deps.provider.describe(c.instance_id)
        if inst is None:
            return Reply(f"`{c.instance_id}` was not found in {self._s.deps.provider.region}.")
        hourly = self._s.prices.hourly_by_instance([inst]).get(inst.id)
        so_far = self._s.costs.so_far([inst.id]).get(inst.id)
        jobs = self._s.deps.repos.jobs.list_active([inst.id])
        text, blocks = fleet_views.instance_status(inst, hourly, so_far, jobs[0].id if jobs else None)
        return Reply(text, blocks)

    def _cost(self, c: cmds.CostCommand, o: Origin) -> Reply:
        now = self._now
        start = {
            cmds.Period.TODAY: now.replace(hour=0, minute=0, second=0, microsecond=0),
            cmds.Period.WEEK: (now - timedelta(days=now.weekday())).replace(
                hour=0, minute=0, second=0, microsecond=0
            ),
            cmds.Period.MONTH: now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        }[c.period]
        owner = None if c.all_users or c.project else (c.user or o.user)
        summary = self._s.costs.summary(since=start, owner=owner, project=c.project)
        who = "Team" if owner is None else ("Your" if owner == o.user else f"<@{owner}>'s")
        title = (
            f"{who} cost this {c.period.value}" if c.period is not cmds.Period.TODAY else f"{who} cost today"
        )
        if c.project:
            title += f" · {c.project}"
        text, blocks = fleet_views.cost_summary(title, summary)
        return Reply(text, blocks)

    def _cleanup_plan(self, c: cmds.CleanupPlanCommand, o: Origin) -> Reply:
        plan = self._s.cleanup.plan(
            PlanOptions(window=c.window, min_age=c.min_age, cpu_threshold=c.cpu_threshold)
        )
        text, blocks = fleet_views.cleanup_plan(plan, self._now, enforce=self._s.deps.enforce)
        return Reply(text, blocks)

    def _cleanup_run(self, c: cmds.CleanupRunCommand, o: Origin) -> Reply:
        if not c.yes:
            plan = self._s.cleanup.plan()
            text, blocks = fleet_views.cleanup_plan(plan, self._now, enforce=self._s.deps.enforce)
            blocks.append(
                bk.context("Nothing was stopped. Run `/runctl cleanup run --yes` to stop these machines.")
            )
            return Reply(text, blocks)
        actor = self._s.deps.roles.actor(o.user)
        plan, result = self._s.cleanup.apply(actor, ask_admin=True)
        # What the circuit breaker held waits for an admin as one request, below the result.
        ask_in = o.channel or self._s.deps.team_channel
        held = [i.id for i in result.held.instances] if result.held and ask_in else []
        text, blocks = op_views.cleanup_result(
            result.stopped,
            [(v.instance_id, v.reason) for v in result.batch.skipped],
            result.error,
            result.operation_id,
            held=held,
        )
        if o.channel is None:
            reply = Reply(text, blocks, public=True)
        else:
            # A channel message rather than a response-URL answer: Start it back updates it in place later.
            reply = self._show_in_channel(result.operation_id, o.channel, text, blocks)
        if result.held is not None:
            if ask_in:
                self._s.approvals.open(result.held, requester=o.user, channel=ask_in)
            else:
                self._s.deps.repos.operations.transition(
                    result.held.operation_id,
                    OpStatus.AWAITING_APPROVAL,
                    OpStatus.CANCELLED,
                    at=self._now,
                    error="no channel to ask an admin in",
                )
        return reply

    def _config(self, c: cmds.ConfigCommand, o: Origin) -> Reply:
        text, blocks = fleet_views.config_summary(self._config_rows)
        return Reply(text, blocks)

    # --- changes ---------------------------------------------------------------------------------

    def _post_outcome(self, outcome: Outcome, o: Origin, ref: MessageRef | None = None) -> Reply:
        if outcome.status == OpStatus.AWAITING_APPROVAL:
            if o.channel is None:
                return Reply("This needs an approval; ask in a channel.")
            self._s.approvals.open(outcome, requester=o.user, channel=o.channel, message=ref)
            return NOTHING
        text, blocks = op_views.outcome_message(outcome, self._now, requester=o.user)
        if outcome.status == OpStatus.REFUSED:
            return Reply(text, blocks)
        if o.channel is None:
            return Reply(text, blocks)
        return self._show_in_channel(outcome.operation_id, o.channel, text, blocks, ref)

    def _show_in_channel(
        self,
        operation_id: str,
        channel: str,
        text: str,
        blocks: list[bk.Block],
        ref: MessageRef | None = None,
    ) -> Reply:
        """Post (or update `ref`) in the channel and remember the message on the operation. The cloud has
        already acted: if Slack will not take the message, the result still reaches the channel through
        the command's response URL rather than turning into an error."""
        notifier = self._s.deps.notifier
        try:
            if ref is not None:
                notifier.update(ref, text, blocks)
                return NOTHING
            posted = notifier.post(channel, text, blocks)
        except Exception:
            log.exception(
                "could not show operation %s in %s; answering through the response URL", operation_id, channel
            )
            return Reply(text, blocks, public=True)
        self._s.deps.repos.operations.set_slack_message(operation_id, posted.channel, posted.ts)
        return NOTHING

    def _create(self, c: cmds.CreateCommand, o: Origin) -> Reply:
        actor = self._s.deps.roles.actor(o.user)
        request = LaunchRequest(
            instance_type=c.instance_type,
            project=c.project or DEFAULT_PROJECT,
            spot=c.spot,
            max_price=float(c.max_price) if c.max_price is not None else None,
            fallback_to_on_demand=c.fallback_to_on_demand,
            ami=c.ami,
            disk_gb=c.disk_gb,
        )
        price, basis = self._s.prices.estimate(c.instance_type, spot=c.spot)
        estimate = op_views.estimate(price, basis)
        ref: MessageRef | None = None
        if o.channel is not None:
            ref = self._s.deps.notifier.post(
                o.channel,
                f"Launching {c.instance_type} for <@{o.user}>…",
                [
                    bk.section(
                        f":rocket: <@{o.user}> asked for a *{c.instance_type}*{' spot' if c.spot else ''} "
                        f"in `{request.project}` · estimate {estimate}. Working…"
                    )
                ],
            )
        outcome = self._s.operations.request_launch(
            actor, request, channel=o.channel, operation_id=o.operation_id
        )
        if ref is not None:
            self._s.deps.repos.operations.set_slack_message(outcome.operation_id, ref.channel, ref.ts)
        return self._post_outcome(outcome, o, ref)

    def _power(
        self,
        action: Action,
        ids: tuple[str, ...],
        o: Origin,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> Reply:
        actor = self._s.deps.roles.actor(o.user)
        outcome = self._s.operations.request_power(
            action, actor, ids, channel=o.channel, force=force, reason=reason, operation_id=o.operation_id
        )
        return self._post_outcome(outcome, o)

    def _start(self, c: cmds.StartCommand, o: Origin) -> Reply:
        return self._power(Action.START, c.instance_ids, o)

    def _stop(self, c: cmds.StopCommand, o: Origin) -> Reply:
        return self._power(Action.STOP, c.instance_ids, o, force=c.force, reason=c.reason)

    def _terminate(self, c: cmds.TerminateCommand, o: Origin) -> Reply:
        return self._power(Action.TERMINATE, c.instance_ids, o, force=c.force, reason=c.reason)

    def _protect(self, c: cmds.ProtectCommand, o: Origin) -> Reply:
        actor = self._s.deps.roles.actor(o.user)
        outcome = self._s.operations.protect(
            actor, c.instance_ids, channel=o.channel, protect=True, reason=c.reason
        )
        return self._post_outcome(outcome, o)

    def _unprotect(self, c: cmds.UnprotectCommand, o: Origin) -> Reply:
        actor = self._s.deps.roles.actor(o.user)
        outcome = self._s.operations.protect(actor, c.instance_ids, channel=o.channel, protect=False)
        return self._post_outcome(outcome, o)

    def _keep(self, c: cmds.KeepCommand, o: Origin) -> Reply:
        actor = self._s.deps.roles.actor(o.user)
        until = c.deadline(self._now)
        outcome = self._s.operations.keep(actor, c.instance_id, until=until, channel=o.channel)
        return self._post_outcome(outcome, o)

    # --- buttons -----------------------------------------------------------------------------

    def start_back(
        self,
        instance_ids: list[str],
        o: Origin,
        *,
        stop_message: MessageRef | None = None,
        stop_text: str = "",
        stop_blocks: list[bk.Block] | None = None,
        spent_action: str | None = None,
    ) -> Reply:
        """**Start it back** on a stop message: the start is told in that message, whose button goes away,
        so the channel keeps one message per machine and nobody clicks a spent button.

        `spent_action` is the clicked button's action id: where a message has a button per machine, only
        that one goes and the others stay. A start AWS refuses leaves the message as it was, button
        included, and tells the clicker privately with the operation id (also in the log)."""
        actor = self._s.deps.roles.actor(o.user)
        outcome = self._s.operations.request_power(
            Action.START, actor, tuple(instance_ids), channel=o.channel, operation_id=o.operation_id
        )
        if outcome.status == OpStatus.FAILED:
            log.warning(
                "start it back of %s by %s failed (operation %s): %s",
                ", ".join(instance_ids),
                o.user,
                outcome.operation_id,
                outcome.summary,
            )
            return Reply(
                f":x: *Start it back* failed (operation `{outcome.operation_id}`): "
                f"{bk.clip(outcome.summary, 500)}. Nothing was started; the button is still there to try "
                "again."
            )
        if outcome.status != OpStatus.SUCCEEDED or stop_message is None:
            return self._post_outcome(outcome, o)
        kept = _without_button(stop_blocks or [], spent_action)
        kept.append(
            bk.context(
                f":arrow_forward: Started back by <@{o.user}>: {outcome.summary} · "
                f"operation `{outcome.operation_id}`"
            )
        )
        text = f"{stop_text} · started back by <@{o.user}>" if stop_text else outcome.summary
        self._s.deps.notifier.update(stop_message, text, bk.fit(kept))
        self._s.deps.repos.operations.set_slack_message(
            outcome.operation_id, stop_message.channel, stop_message.ts
        )
        return NOTHING


def _without_button(blocks: list[bk.Block], action_id: str | None) -> list[bk.Block]:
    """The stop message's blocks without the spent Start it back button (every one when not told which);
    a row of buttons left empty goes too."""
    kept: list[bk.Block] = []
    for block in blocks:
        if block.get("type") != "actions" or not str(block.get("block_id", "")).startswith("startback:"):
            kept.append(block)
            continue
        elements = block.get("elements", []) if action_id is not None else []
        left = [e for e in elements if e.get("action_id") != action_id]
        if left:
            kept.append({**block, "elements": left})
    return kept


def config_rows(settings: Any) -> list[tuple[str, str]]:
    """What `/runctl config` shows: behaviour-relevant settings, never secrets."""
    keys = [
        "aws_region",
        "team_channel",
        "min_age_command",
        "min_age_idle",
        "idle_cpu_threshold",
        "idle_window",
        "idle_min_coverage",
        "idle_statistic",
        "grace_period",
        "breaker_max_actions",
        "breaker_max_share",
        "idle_enforce",
        "approval_expiry",
        "keep_max_per_machine",
        "work_start",
        "work_end",
        "work_days",
        "default_timezone",
        "approval_cost_per_hour",
        "user_max_instances",
        "user_max_cost_per_hour",
    ]
    rows = [(k, _shown(getattr(settings, k))) for k in keys]
    rows.append(("roles", ", ".join(f"{k}={v}" for k, v in settings.role_summary().items())))
    return rows


def _shown(value: Any) -> str:
    """A setting as a person reads it: `5 min`, not `0:05:00`; `mon, tue`, not `['mon', 'tue']`."""
    if value is None:
        return "—"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
