"""The idle cycle (DESIGN §3 rules 4–8): mark → notify → grace → re-check → stop, never terminate.

One cycle costs one paginated listing and one batched metrics fetch for the machines the metric-free
rules leave as candidates. Owners get at most one DM per cycle (a digest, re-rendered in place when a
machine in it changes); the team channel gets the same digest. Dry-run (enforcement off) reports what
would be stopped and stops nothing.

- Breaker: the first stops up to the cap go ahead; the rest are held as one batch that only an admin can
  approve. Held marks stay held while the request waits (later cycles neither stop nor re-ask for them);
  once approved, the bot stops what a fresh check still allows, closes those reminders as stopped by the
  bot and posts **Start it back** for each. A denied or expired batch closes its marks, so the lifecycle
  starts over (new notice, new grace) instead of asking an admin every cycle.
- Time zones: an owner whose Slack time zone cannot be read is never stopped automatically (the stop waits
  and the lookup is retried each cycle; the reminder and the log say so), unless a team default zone was
  configured (`team_timezone`), which is then used as the owner's with a note in the evidence.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.core.idle import idle_verdict
from bot.core.quiet_hours import is_known_timezone
from bot.core.reminders import KeepRefusal, Mark, Observation, StepKind, next_step, take_keep
from bot.core.safety import (
    Action,
    ResourceFacts,
    Rule,
    SafetyContext,
    Verdict,
    evaluate,
    evaluate_batch,
)
from bot.services.approvals import ApprovalService
from bot.services.audit import Auditor
from bot.services.costs import BOT_STOP_REASON
from bot.services.deps import ServiceDeps, new_operation_id
from bot.services.operations import OperationService, OpStatus, Outcome
from bot.services.ports import MessageRef
from bot.services.pricing import Prices
from bot.views import blocks as bk
from bot.views import operations as op_views
from bot.views import reminders as views
from providers import tags as tagschema
from providers.base import Instance, InstanceState, UtilisationSeries
from providers.errors import ProviderError
from storage.models import CleanupMark, MarkState, Operation

log = logging.getLogger(__name__)

RULE = "idle"
BREAKER_OPERATION = "breaker_operation"  # mark evidence: the batch approval holding this mark
TIMEZONE_PROBLEM = "timezone_problem"  # mark evidence: why the owner's time zone is unknown
_CANDIDATE_RULES = frozenset({Rule.NOT_IDLE, Rule.QUIET_HOURS})


@dataclass
class CycleReport:
    at: datetime
    fleet_size: int = 0
    candidates: int = 0
    steps: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stopped: list[str] = field(default_factory=list)
    held_by_breaker: list[str] = field(default_factory=list)
    would_stop: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Notice:
    """A mark waiting for its owner's digest: what `_notify` needs, not the whole ORM row.

    A 10,000-machine fleet can put thousands of marks in one cycle's digests; ORM rows cost ~5 KB each.
    """

    mark_id: int
    instance_id: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class ButtonResult:
    ephemeral: str | None = None


def _who(owner: str | None) -> str:
    return f"<@{owner}>" if owner and owner.startswith(("U", "W")) else "the owner"


def _mark_state(row: CleanupMark) -> Mark:
    return Mark(
        instance_id=row.instance_id,
        marked_at=row.marked_at,
        notified_at=row.notified_at,
        keep_until=row.keep_until,
        keep_count=row.keep_count,
    )


class IdleCycleService:
    def __init__(
        self,
        deps: ServiceDeps,
        prices: Prices,
        operations: OperationService,
        approvals: ApprovalService,
        auditor: Auditor,
        *,
        team_timezone: str | None = None,
    ) -> None:
        """`team_timezone`: the zone to assume for owners whose Slack time zone is unknown, only when a
        team configured one; None (the default) means such owners' machines are never stopped on a guess."""
        if team_timezone is not None and not is_known_timezone(team_timezone):
            raise ValueError(f"unknown team time zone {team_timezone!r}")
        self._deps = deps
        self._prices = prices
        self._ops = operations
        self._approvals = approvals
        self._audit = auditor
        self._team_timezone = team_timezone
        self._tz_unknown_since: dict[str, datetime] = {}
        approvals.set_breaker_runner(self)

    # --- the cycle -------------------------------------------------------------------------------

    def run(self) -> CycleReport:
        deps = self._deps
        now = deps.clock.now()
        report = CycleReport(now)
        fleet = [i for i in deps.provider.list_managed() if i.state is not InstanceState.TERMINATED]
        by_id = {i.id: i for i in fleet}
        report.fleet_size = len(fleet)
        marks = {m.instance_id: m for m in deps.repos.cleanup_marks.list_open(rule=RULE)}
        running = [i for i in fleet if i.state is InstanceState.RUNNING]
        jobs = {j.instance_id: j.id for j in deps.repos.jobs.list_active([i.id for i in running])}
        ctx = SafetyContext(
            now=now, policy=deps.policy, automatic=True, dry_run=not deps.enforce, fleet_size=len(fleet)
        )
        facts: dict[str, ResourceFacts] = {}
        zones: dict[str | None, tuple[str | None, str | None]] = {}
        for inst in running:
            mark = marks.get(inst.id)
            if inst.owner not in zones:
                zones[inst.owner] = self._timezone(inst.owner, now)
            zone, note = zones[inst.owner]
            facts[inst.id] = ResourceFacts(
                instance=inst,
                running_job=jobs.get(inst.id),
                owner_timezone=zone,
                timezone_note=note,
                notified_at=mark.notified_at if mark else None,
                kept_until=mark.keep_until if mark else None,
            )
        candidates = [
            iid
            for iid, f in facts.items()
            if set(evaluate(Action.IDLE_REMIND, f, ctx).rules) <= _CANDIDATE_RULES
        ]
        report.candidates = len(candidates)
        series = self._utilisation([by_id[iid] for iid in candidates], now)
        for iid in candidates:
            verdict = idle_verdict(series.get(iid, {}), deps.policy.idle, now, instance_id=iid)
            facts[iid] = replace(facts[iid], idle=verdict)
        del series  # the verdicts keep what they need; the raw series of a large fleet are megabytes

        hourly = self._prices.hourly_by_instance(running)
        acts: list[tuple[CleanupMark, ResourceFacts]] = []
        notify: dict[str | None, list[_Notice]] = defaultdict(list)
        ids = set(facts) | set(marks)
        for iid in sorted(ids):
            row = marks.get(iid)
            observed = facts.get(iid)
            if observed is None and iid in by_id:
                observed = ResourceFacts(instance=by_id[iid])  # stopped or stopping: the rules unmark it
            step = next_step(_mark_state(row) if row else None, Observation(iid, observed), ctx)
            report.steps[step.kind.value].append(iid)
            if step.kind is StepKind.MARK:
                self._open_mark(iid, observed, now)
            elif step.kind is StepKind.NOTIFY:
                mark_row = row or self._open_mark(iid, observed, now)
                if mark_row is not None and observed is not None:
                    evidence = dict(observed.idle.evidence()) if observed.idle else {}
                    evidence["instance_type"] = observed.instance.instance_type
                    if observed.instance.id in hourly:
                        evidence["hourly_usd"] = hourly[observed.instance.id]
                    if not is_known_timezone(observed.owner_timezone):
                        evidence[TIMEZONE_PROBLEM] = self._tz_problem(observed.instance.owner)
                    elif observed.timezone_note:
                        evidence["timezone_note"] = observed.timezone_note
                    mark_row.evidence = evidence
                    notify[observed.instance.owner].append(
                        _Notice(mark_row.id or 0, mark_row.instance_id, evidence)
                    )
            elif step.kind is StepKind.UNMARK and row is not None:
                self._close(row, MarkState.UNMARKED, step.reason)
            elif step.kind is StepKind.ACT and row is not None and observed is not None:
                acts.append((row, observed))
            elif (
                step.kind is StepKind.WAIT
                and row is not None
                and step.verdict is not None
                and step.verdict.evidence.get("timezone_unknown")
            ):
                self._wait_for_timezone(row, step.verdict)
            elif step.kind is StepKind.WOULD_ACT and row is not None:
                report.would_stop.append(iid)
                self._note_once(
                    row, f"would-stop:{row.id}", f":information_source: Dry run: I would stop `{iid}` now."
                )
        for owner, items in notify.items():
            self._notify(owner, items, hourly, now)
        if acts:
            self._act(acts, ctx, report, hourly)
        return report

    def _utilisation(
        self, instances: list[Instance], now: datetime
    ) -> dict[str, dict[str, UtilisationSeries]]:
        """One batched metric fetch over the idle window, with the types (so CPU-only machines skip GPU)."""
        if not instances:
            return {}
        idle = self._deps.policy.idle
        return self._deps.provider.utilisation(
            [i.id for i in instances],
            end=now,
            window=idle.window,
            period_seconds=idle.period_seconds,
            instance_types={i.id: i.instance_type for i in instances},
        )

    def _timezone(self, owner: str | None, now: datetime) -> tuple[str | None, str | None]:
        """The owner's zone and, when it is the team default standing in, a note saying so.

        Asked every cycle (the notifier caches answers, not failures), so a failed lookup is retried next
        cycle. Unknown and no team default: the name as Slack gave it (None or not IANA), which the safety
        rules never stop on.
        """
        zone: str | None = None
        if owner and owner.startswith(("U", "W")):
            try:
                zone = self._deps.notifier.user_timezone(owner)
            except Exception as exc:
                log.warning("Slack time zone lookup for %s failed: %s", owner, exc)
        key = owner or "?"
        if is_known_timezone(zone):
            self._tz_unknown_since.pop(key, None)
            return zone, None
        since = self._tz_unknown_since.setdefault(key, now)
        if self._team_timezone is not None:
            note = (
                f"the Slack time zone of {_who(owner)} is unknown, so the team default {self._team_timezone} "
                "was used"
            )
            return self._team_timezone, note
        log.warning(
            "the Slack time zone of %s is unknown (%s, since %s); automatic stops of their machines wait "
            "until it can be read",
            owner or "an unowned machine's owner",
            "not an IANA zone: " + repr(zone) if zone else "no answer",
            since.isoformat(timespec="minutes"),
        )
        return zone, None

    def _tz_problem(self, owner: str | None) -> str:
        since = self._tz_unknown_since.get(owner or "?")
        when = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
        return (
            f"the Slack time zone of {_who(owner)} could not be read{when}, so I will not stop it on my own "
            "until it can be (Keep and Stop now still work)"
        )

    def _wait_for_timezone(self, row: CleanupMark, verdict: Verdict) -> None:
        """A stop that only waits for the owner's time zone: say so on the reminder once, and in the log."""
        log.warning("idle stop of %s waits: %s", row.instance_id, verdict.reason)
        if self._deps.repos.notices.first_time(f"tz-unknown:{row.id}", self._deps.clock.now()):
            self._audit.verdict(verdict)
            self._rerender(
                row, f":warning: Not stopped: {self._tz_problem(row.owner)}. I will retry every cycle."
            )

    def _open_mark(self, iid: str, facts: ResourceFacts | None, now: datetime) -> CleanupMark | None:
        evidence = dict(facts.idle.evidence()) if facts and facts.idle else {}
        owner = facts.instance.owner if facts else None
        result = self._deps.repos.cleanup_marks.mark(
            iid, RULE, at=now, owner=owner, evidence=evidence, dry_run=not self._deps.enforce
        )
        if result.created:
            self._audit.event("runctl-bot", "idle:mark", "marked", target=iid, detail=evidence)
        return result.mark

    # --- notices ---------------------------------------------------------------------------------

    def _notify(
        self,
        owner: str | None,
        items: list[_Notice],
        hourly: dict[str, float],
        now: datetime,
    ) -> None:
        repos, notifier = self._deps.repos, self._deps.notifier
        claimed: list[CleanupMark] = []
        for item in items:
            if repos.cleanup_marks.transition(
                item.mark_id,
                [MarkState.MARKED.value, MarkState.KEPT.value],
                MarkState.NOTIFIED.value,
                notified_at=now,
                evidence=item.evidence,
            ):
                self._audit.event(
                    "runctl-bot", "idle:notify", "notified", target=item.instance_id, detail=item.evidence
                )
                fresh = repos.cleanup_marks.get(item.mark_id)
                if fresh is not None:  # marks are never deleted; the claim above just wrote this one
                    claimed.append(fresh)
        if not claimed:
            return
        lines = [self._line(row, hourly, now) for row in claimed]
        text, blocks = views.reminder_digest(lines, now, dry_run=not self._deps.enforce, for_owner=owner)
        dm_ref: MessageRef | None = None
        if owner and owner.startswith(("U", "W")):
            try:
                dm_ref = notifier.dm(owner, text, blocks)
            except Exception:
                log.exception("idle reminder DM to %s failed", owner)
        channel_ref: MessageRef | None = None
        if self._deps.team_channel:
            try:
                channel_ref = notifier.post(self._deps.team_channel, text, blocks)
            except Exception:
                log.exception("idle reminder in the team channel failed")
        if dm_ref is None and channel_ref is None:
            # Nobody heard it: the grace clock must not run. Back to marked; the next cycle retries.
            for row in claimed:
                repos.cleanup_marks.transition(
                    row.id or 0, MarkState.NOTIFIED.value, MarkState.MARKED.value, notified_at=None
                )
            return
        for row in claimed:
            if dm_ref:
                repos.cleanup_marks.set_dm_message(row.id or 0, dm_ref.channel, dm_ref.ts)
            if channel_ref:
                repos.cleanup_marks.set_slack_message(row.id or 0, channel_ref.channel, channel_ref.ts)

    def _line(
        self, row: CleanupMark, hourly: dict[str, float], now: datetime, note: str = ""
    ) -> views.ReminderLine:
        recorded = row.evidence.get("hourly_usd")
        price = hourly.get(row.instance_id, float(recorded) if recorded is not None else None)
        idle_since = row.marked_at - timedelta(minutes=float(row.evidence.get("idle_window_minutes", 0) or 0))
        cost = (
            (Decimal(str(price)) * Decimal((now - idle_since).total_seconds()) / Decimal(3600))
            if price
            else None
        )
        grace_ends = row.notified_at + self._deps.policy.grace if row.notified_at else None
        return views.ReminderLine(
            mark_id=row.id or 0,
            instance_id=row.instance_id,
            instance_type=str(row.evidence.get("instance_type", "?")),
            owner=row.owner,
            state=row.state,
            evidence=dict(row.evidence),
            hourly_usd=price,
            idle_cost_usd=cost,
            grace_ends=grace_ends,
            note=note,
        )

    def _rerender(self, row: CleanupMark, note: str) -> None:
        """Re-render every digest that shows this mark, so the buttons and states stay true. Through the
        outbox: during a Slack outage the newest rendering is sent once Slack is back."""
        repos, outbox = self._deps.repos, self._deps.outbox
        now = self._deps.clock.now()
        for channel, ts, owner in (
            (row.dm_channel, row.dm_ts, row.owner),
            (row.slack_channel, row.slack_ts, None),
        ):
            if not (channel and ts):
                continue
            rows = repos.cleanup_marks.list_by_message(channel, ts)
            hourly: dict[str, float] = {}
            lines = [self._line(r, hourly, now, note if r.id == row.id else "") for r in rows]
            text, blocks = views.reminder_digest(lines, now, dry_run=not self._deps.enforce, for_owner=owner)
            try:
                outbox.update(MessageRef(channel, ts), text, blocks)
            except Exception:
                log.exception("could not update idle reminder %s/%s", channel, ts)

    def _note_once(self, row: CleanupMark, key: str, text: str) -> None:
        if not self._deps.repos.notices.first_time(key, self._deps.clock.now()):
            return
        self._rerender(row, text)

    def _close(self, row: CleanupMark, state: MarkState, reason: str) -> None:
        if self._deps.repos.cleanup_marks.transition(row.id or 0, row.state, state.value):
            self._audit.event(
                "runctl-bot",
                f"idle:{state.value}",
                state.value,
                target=row.instance_id,
                detail={"reason": reason},
            )
            fresh = self._deps.repos.cleanup_marks.get(row.id or 0) or row
            self._rerender(fresh, f":white_check_mark: {reason}")

    # --- acting ----------------------------------------------------------------------------------

    def _act(
        self,
        acts: list[tuple[CleanupMark, ResourceFacts]],
        ctx: SafetyContext,
        report: CycleReport,
        hourly: dict[str, float],
    ) -> None:
        deps = self._deps
        acts = self._without_held(acts, report)
        if not acts:
            return
        # Re-check on fresh cloud state right before acting.
        fresh = deps.provider.describe_many([r.instance_id for r, _ in acts])
        checked = [replace(f, instance=fresh[r.instance_id]) for r, f in acts if r.instance_id in fresh]
        rows = {r.instance_id: r for r, _ in acts}
        batch = evaluate_batch(Action.IDLE_STOP, checked, ctx)
        for verdict in batch.verdicts:
            self._audit.verdict(verdict)
        held = [v.instance_id for v in batch.held_by_breaker]
        if held:
            report.held_by_breaker.extend(held)
            self._ask_for_batch([rows[i] for i in held], [fresh[i] for i in held], ctx.now)
        allowed = [v.instance_id for v in batch.allowed]
        if allowed:
            stopped = self._stop(allowed, rows, fresh, by=None)
            report.stopped.extend(stopped)

    def _without_held(
        self, acts: list[tuple[CleanupMark, ResourceFacts]], report: CycleReport
    ) -> list[tuple[CleanupMark, ResourceFacts]]:
        """Drop marks a breaker batch holds: waiting for an admin, or already being stopped by one.

        A batch that was denied, expired or cancelled closes its marks, so the machine starts over with a
        new notice and grace period rather than going back to the admin every cycle.
        """
        repos = self._deps.repos
        ready: list[tuple[CleanupMark, ResourceFacts]] = []
        for row, facts in acts:
            op_id = row.evidence.get(BREAKER_OPERATION)
            op = repos.operations.get(str(op_id)) if op_id else None
            if op is None:
                ready.append((row, facts))
            elif op.status == OpStatus.AWAITING_APPROVAL:
                report.held_by_breaker.append(row.instance_id)
            elif op.status != OpStatus.EXECUTING:  # executing: an admin's approval is stopping it now
                # Denied, expired, or approved but skipped by the re-check: not stopped, so start over.
                why = op.error or f"the batch {op.status}"
                self._close(
                    row,
                    MarkState.UNMARKED,
                    f"the held batch stop of `{row.instance_id}` did not go ahead ({why}); the reminder "
                    "starts over",
                )
        return ready

    def _stop(
        self, allowed: list[str], rows: dict[str, CleanupMark], fresh: dict[str, Instance], *, by: str | None
    ) -> list[str]:
        """Stop `allowed`, close their reminders as stopped by the bot, post **Start it back** for each.

        `by` is the admin who approved a held batch (None: within the breaker's cap). Returns what stopped.
        """
        deps = self._deps
        try:
            states = deps.provider.stop(allowed)
        except ProviderError as exc:
            log.error("idle stop of %s failed: %s", ", ".join(allowed), exc)
            self._audit.event(
                "runctl-bot", "idle:stop", "failed", target=",".join(allowed), detail={"error": str(exc)}
            )
            return []
        changed: list[Instance] = [
            replace(
                fresh[i],
                state=s,
                state_reason_code=BOT_STOP_REASON,
                state_reason_message="stopped by runctl-bot: idle past the grace period",
            )
            for i, s in states.items()
            if i in fresh
        ]
        deps.repos.resources.upsert_from_cloud(
            changed, deps.clock.now(), self._prices.hourly_by_instance(changed)
        )
        approved = f" (<@{by}> approved the held batch)" if by else ""
        stopped: list[str] = []
        for iid in allowed:
            if iid not in states:
                continue
            row = rows[iid]
            stopped.append(iid)
            closed = {**row.evidence, "stopped_by": "runctl-bot"} | ({"approved_by": by} if by else {})
            deps.repos.cleanup_marks.transition(
                row.id or 0, row.state, MarkState.ACTED.value, acted_at=deps.clock.now(), evidence=closed
            )
            detail: dict[str, Any] = {"evidence": dict(row.evidence)}
            if by:
                detail["approved_by"] = by
            self._audit.event("runctl-bot", "idle:stop", "succeeded", target=iid, detail=detail)
            fresh_row = deps.repos.cleanup_marks.get(row.id or 0) or row
            self._rerender(
                fresh_row,
                f":octagonal_sign: Stopped by the bot: `{iid}` stayed idle past the grace period{approved}.",
            )
            self._post_start_back(fresh_row, iid)
        return stopped

    def _post_start_back(self, row: CleanupMark, iid: str) -> None:
        """The result with **Start it back**, in the thread of the owner's reminder; through the outbox, so
        an owner whose machine the bot stopped during a Slack outage still hears of it."""
        outbox = self._deps.outbox
        blocks = [
            bk.section(
                f":octagonal_sign: I stopped `{iid}`: it stayed idle past the grace period. Its disk is kept."
            ),
            bk.actions(
                f"startback:{row.id}", bk.button("Start it back", op_views.START_BACK, iid, style="primary")
            ),
        ]
        for channel, ts in ((row.dm_channel, row.dm_ts), (row.slack_channel, row.slack_ts)):
            if channel and ts:
                try:
                    key = f"startback:{row.id}:{channel}:{ts}"
                    outbox.post(key, channel, f"Stopped {iid} (idle)", blocks, thread_ts=ts)
                except Exception:
                    log.exception("could not post the stop result for %s", iid)

    def _ask_for_batch(self, rows: list[CleanupMark], instances: list[Instance], now: datetime) -> None:
        """The breaker held these stops: one request for the whole batch, which only an admin can approve.

        Its marks remember the request, so later cycles neither stop them nor ask again while it waits.
        """
        channel = self._deps.team_channel
        if channel is None:
            log.warning("circuit breaker held %d idle stops and no RUNCTL_TEAM_CHANNEL is set", len(rows))
            return
        held = [r.instance_id for r in rows]
        op = self._deps.repos.operations.create(
            Operation(
                id=new_operation_id(),
                kind="stop",
                requester="runctl-bot",
                channel=channel,
                status=OpStatus.AWAITING_APPROVAL,
                params={"breaker_batch": True},
                instance_ids=held,
                created_at=now,
                updated_at=now,
            )
        )
        for row in rows:
            self._deps.repos.cleanup_marks.transition(
                row.id or 0, row.state, row.state, evidence={**row.evidence, BREAKER_OPERATION: op.id}
            )
        outcome = Outcome(
            op.id,
            "stop",
            OpStatus.AWAITING_APPROVAL,
            "needs an admin's approval",
            tuple(instances),
            reasons=(
                f"the circuit breaker held {len(held)} idle stops in one cycle; the ones within its cap went "
                "ahead, and only an admin can approve these",
            ),
            details={"breaker_batch": True},
        )
        self._approvals.open(outcome, requester="runctl-bot", channel=channel)

    # --- a held batch, once an admin approved it (called by ApprovalService) ---------------------

    def judge_held(self, op: Operation) -> list[Verdict]:
        """Fresh `IDLE_STOP` verdicts for a held batch: every rule again (fresh metrics, grace, keeps, jobs,
        the owner's working hours in a known zone, dry-run) except the breaker, which the admin lifted."""
        deps = self._deps
        instance_ids = list(op.instance_ids)
        now = deps.clock.now()
        found = deps.provider.describe_many(instance_ids)
        marks = {m.instance_id: m for m in deps.repos.cleanup_marks.list_open(instance_ids, rule=RULE)}
        running = [
            found[i].id for i in instance_ids if i in found and found[i].state is InstanceState.RUNNING
        ]
        jobs = {j.instance_id: j.id for j in deps.repos.jobs.list_active(running)} if running else {}
        series = self._utilisation([found[i] for i in running], now)
        ctx = SafetyContext(
            now=now,
            policy=deps.policy,
            automatic=True,
            dry_run=not deps.enforce,
            fleet_size=len(found),
            breaker_approved=True,
        )
        verdicts: list[Verdict] = []
        for iid in instance_ids:
            inst = found.get(iid)
            if inst is None:
                continue
            mark = marks.get(iid)
            zone, note = self._timezone(inst.owner, now)
            facts = ResourceFacts(
                instance=inst,
                running_job=jobs.get(iid),
                idle=idle_verdict(series.get(iid, {}), deps.policy.idle, now, instance_id=iid),
                owner_timezone=zone,
                timezone_note=note,
                notified_at=mark.notified_at if mark else None,
                kept_until=mark.keep_until if mark else None,
            )
            verdict = evaluate(Action.IDLE_STOP, facts, ctx)
            self._audit.verdict(verdict)
            verdicts.append(verdict)
        return verdicts

    def run_held(self, op: Operation, proceed: list[str], approved_by: str | None) -> Outcome:
        """Stop what the re-check still allows of an approved batch; the operation ends here."""
        deps = self._deps
        rows = {m.instance_id: m for m in deps.repos.cleanup_marks.list_open(proceed, rule=RULE)}
        fresh = deps.provider.describe_many(proceed)
        targets = [i for i in proceed if i in rows and i in fresh]
        stopped = self._stop(targets, rows, fresh, by=approved_by) if targets else []
        now = deps.clock.now()
        # Succeeded when anything stopped (the rest are named in the summary); failed when nothing did.
        status = OpStatus.SUCCEEDED if stopped else OpStatus.FAILED
        missed = [i for i in proceed if i not in stopped]
        summary = f"stopped {len(stopped)} held idle machine(s)" + (
            f"; not stopped: {', '.join(missed)}" if missed else ""
        )
        deps.repos.operations.transition(
            op.id,
            OpStatus.EXECUTING,
            status,
            at=now,
            result={"stopped": stopped, "not_stopped": missed},
            error=None if stopped else summary,
        )
        return Outcome(
            op.id,
            "stop",
            status,
            summary,
            tuple(replace(fresh[i], state=InstanceState.STOPPING) for i in stopped),
            details={"breaker_batch": True},
        )

    # --- buttons ---------------------------------------------------------------------------------

    def keep(self, mark_id: int, user: str, duration: timedelta) -> ButtonResult:
        deps = self._deps
        row = deps.repos.cleanup_marks.get(mark_id)
        if row is None or row.state not in (
            MarkState.NOTIFIED.value,
            MarkState.KEPT.value,
            MarkState.MARKED.value,
        ):
            return ButtonResult("This reminder is no longer open.")
        actor = deps.roles.actor(user)
        if user != row.owner and not actor.is_admin:
            return ButtonResult(f"Only the owner (<@{row.owner}>) or an admin can keep `{row.instance_id}`.")
        now = deps.clock.now()
        recent = [
            e
            for e in deps.repos.audit.list(target=row.instance_id, since=now - timedelta(days=7), limit=500)
            if e.action == "idle:keep" and e.result == "kept"
        ]
        mark = replace(_mark_state(row), keep_count=max(row.keep_count, len(recent)))
        kept = take_keep(mark, duration, actor, now, deps.policy)
        if isinstance(kept, KeepRefusal):
            return ButtonResult(kept.message)
        until = kept.keep_until or now + duration
        try:
            deps.provider.set_tags(
                [row.instance_id], {tagschema.KEEP_UNTIL: until.strftime("%Y-%m-%dT%H:%M:%SZ")}
            )
        except ProviderError as exc:
            return ButtonResult(f"Could not keep `{row.instance_id}`: {exc}")
        deps.repos.cleanup_marks.keep(mark_id, until)
        deps.repos.cleanup_marks.transition(
            mark_id, MarkState.KEPT.value, MarkState.KEPT.value, notified_at=None
        )
        self._audit.event(
            user, "idle:keep", "kept", target=row.instance_id, detail={"until": until.isoformat()}
        )
        fresh = deps.repos.cleanup_marks.get(mark_id) or row
        self._rerender(fresh, f":pushpin: <@{user}> kept it until {until:%Y-%m-%d %H:%M} UTC.")
        return ButtonResult()

    def stop_now(self, mark_id: int, user: str) -> ButtonResult:
        deps = self._deps
        row = deps.repos.cleanup_marks.get(mark_id)
        if row is None:
            return ButtonResult("This reminder no longer exists.")
        actor = deps.roles.actor(user)
        if user != row.owner and not actor.is_admin:
            return ButtonResult(
                f"Only the owner (<@{row.owner}>) or an admin can stop `{row.instance_id}` here."
            )
        outcome = self._ops.request_power(Action.STOP, actor, [row.instance_id], channel=None)
        if outcome.status != OpStatus.SUCCEEDED:
            return ButtonResult(f"Not stopped: {outcome.summary}")
        deps.repos.cleanup_marks.transition(
            mark_id,
            row.state,
            MarkState.ACTED.value,
            acted_at=deps.clock.now(),
            evidence={**row.evidence, "stopped_by": user},
        )
        fresh = deps.repos.cleanup_marks.get(mark_id) or row
        self._rerender(fresh, f":octagonal_sign: <@{user}> stopped it.")
        return ButtonResult()
