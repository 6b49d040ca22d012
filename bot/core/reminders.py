"""The idle-reminder lifecycle (DESIGN §3 rule 5) as pure transitions.

```
(no mark) ──idle, working hours──▶ NOTIFY ──grace passed + fresh check──▶ ACT (stop; mark closes)
    │ idle, quiet hours: MARK          │ Keep button: KEEP until … (grace restarts after a new notice)
    ▼                                  │ busy again / protected / job / stopped / gone: UNMARK
 marked ──working hours──▶ NOTIFY      │ missing data, quiet hours, breaker: WAIT
```

`next_step(mark, observation, context)` says what the idle cycle should do next for one machine and returns
the mark to store afterwards (`Step.mark`; None closes it). Services apply the step (post the reminder,
stop the machine) and only then persist the new mark, so a failed notification is retried next cycle.

- A machine found idle inside the owner's working hours is marked and notified in one step (`NOTIFY`);
  outside them it is only marked (`MARK`) and the notice waits.
- The grace clock starts at the notice, never at the mark. `ACT` needs the grace period to have passed
  *and* a fresh `evaluate(IDLE_STOP)` to allow it (managed, unprotected, old enough, not kept, proven
  idle on fresh evidence, no job, working hours, breaker). When only dry-run holds it back the step is
  `WOULD_ACT`, which reports and keeps the mark.
- A machine that is busy again (conclusive evidence), protected, running a job, no longer running,
  unmanaged, restarted (younger than the idle age) or gone is unmarked. Missing or partial data is not
  proof of either, so the mark waits.
- A Keep (`take_keep`) clears the notice and sets `keep_until`; after it the machine, if still idle, is
  notified again and gets a new grace period. `runctl:keep-until` on the machine unmarks it: the admin's
  tag owns the decision until it runs out, then the lifecycle starts from scratch.
- The breaker is per cycle: collect the `ACT` steps, run `evaluate_batch(IDLE_STOP, …)` over them, and stop
  only what the batch allows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bot.core.clock import as_utc, require_utc
from bot.core.policy import SafetyPolicy
from bot.core.quiet_hours import check_working_time
from bot.core.safety import (
    Action,
    Actor,
    ResourceFacts,
    Rule,
    SafetyContext,
    Verdict,
    evaluate,
    format_duration,
    format_time,
    parse_keep_until,
)
from providers import tags as tagschema


class MarkPhase(StrEnum):
    # The same words as storage's open mark states.
    MARKED = "marked"
    NOTIFIED = "notified"
    KEPT = "kept"


@dataclass(frozen=True)
class Mark:
    instance_id: str
    marked_at: datetime
    notified_at: datetime | None = None  # the grace clock starts here
    keep_until: datetime | None = None  # from the Keep buttons
    keep_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "marked_at", as_utc(self.marked_at))
        if self.notified_at is not None:
            object.__setattr__(self, "notified_at", as_utc(self.notified_at))
        if self.keep_until is not None:
            object.__setattr__(self, "keep_until", as_utc(self.keep_until))

    @property
    def phase(self) -> MarkPhase:
        if self.notified_at is not None:
            return MarkPhase.NOTIFIED
        return MarkPhase.KEPT if self.keep_until is not None else MarkPhase.MARKED


@dataclass(frozen=True)
class Observation:
    """What this cycle saw of one machine; `facts` is None when the cloud no longer has it."""

    instance_id: str
    facts: ResourceFacts | None


class StepKind(StrEnum):
    NOTHING = "nothing"
    MARK = "mark"
    NOTIFY = "notify"
    WAIT = "wait"
    KEEP = "keep"
    UNMARK = "unmark"
    ACT = "act"
    WOULD_ACT = "would_act"  # dry-run: every rule passes, enforcement is off


@dataclass(frozen=True)
class Step:
    kind: StepKind
    reason: str
    mark: Mark | None  # the mark to store after the step; None: no open mark
    verdict: Verdict | None = None  # the safety verdict the step rests on
    until: datetime | None = None  # WAIT / KEEP: the earliest time anything can change


_UNMARKING_RULES = frozenset({Rule.MANAGED_ONLY, Rule.PROTECTED, Rule.STATE, Rule.TRAINING_JOB})


def _close(mark: Mark | None, reason: str, verdict: Verdict | None = None) -> Step:
    if mark is None:
        return Step(StepKind.NOTHING, reason, None, verdict)
    return Step(StepKind.UNMARK, reason, None, verdict)


def _hold(mark: Mark | None, reason: str, verdict: Verdict | None, until: datetime | None = None) -> Step:
    if mark is None:
        return Step(StepKind.NOTHING, reason, None, verdict)
    return Step(StepKind.WAIT, reason, mark, verdict, until)


def next_step(mark: Mark | None, observation: Observation, context: SafetyContext) -> Step:
    """The next move for one machine in the idle cycle (see the module docstring)."""
    if mark is not None and mark.instance_id != observation.instance_id:
        raise ValueError(
            f"mark for {mark.instance_id} given with an observation of {observation.instance_id}"
        )
    ctx = replace(context, automatic=True, force=False)
    now = ctx.now
    if observation.facts is None:
        return _close(mark, f"{observation.instance_id} no longer exists")
    facts = observation.facts
    if mark is not None:
        kept = [k for k in (facts.kept_until, mark.keep_until) if k is not None]
        facts = replace(facts, notified_at=mark.notified_at, kept_until=max(kept) if kept else None)

    remind = evaluate(Action.IDLE_REMIND, facts, ctx)
    rules = set(remind.rules)
    if remind.rule in _UNMARKING_RULES:
        return _close(mark, remind.reason, remind)
    if facts.idle is not None and facts.idle.busy and Rule.NOT_IDLE in rules:
        return _close(mark, f"{facts.instance_id} is busy again: {facts.idle.reason}", remind)
    if Rule.KEEP_UNTIL in rules:
        tag = parse_keep_until(facts.instance.tags.get(tagschema.KEEP_UNTIL))
        if tag is not None and tag.keeps_at(now):
            return _close(mark, remind.reason, remind)
        if mark is not None and mark.keep_until is not None and now < mark.keep_until:
            return Step(StepKind.KEEP, remind.reason, mark, remind, mark.keep_until)
        return _hold(mark, remind.reason, remind, as_utc(facts.kept_until) if facts.kept_until else None)
    if Rule.MIN_AGE in rules:
        # Launch time resets when a machine starts, so a marked machine that is young again was restarted.
        return _close(mark, remind.reason, remind)
    if Rule.NOT_IDLE in rules:
        return _hold(mark, remind.reason, remind)
    if remind.rule is Rule.QUIET_HOURS:
        hours = check_working_time(now, facts.owner_timezone, ctx.policy.working_hours)
        if mark is None:
            reason = f"{facts.instance_id} is idle; the notice waits for working hours ({remind.reason})"
            return Step(StepKind.MARK, reason, Mark(facts.instance_id, now), remind, hours.next_start)
        return Step(StepKind.WAIT, remind.reason, mark, remind, hours.next_start)
    if not remind.allowed:
        return _hold(mark, remind.reason, remind)

    if mark is None or mark.notified_at is None:
        base = mark or Mark(facts.instance_id, now)
        notified = replace(base, notified_at=now)
        grace = format_duration(ctx.policy.grace)
        reason = f"{facts.instance_id} is idle; tell the owner (the bot stops it in {grace} unless kept)"
        return Step(StepKind.NOTIFY, reason, notified, remind, now + ctx.policy.grace)

    grace_ends = mark.notified_at + ctx.policy.grace
    if now < grace_ends:
        told, ends = format_time(mark.notified_at), format_time(grace_ends)
        reason = f"the owner was told at {told}; grace runs until {ends}"
        return Step(StepKind.WAIT, reason, mark, remind, grace_ends)

    stop = evaluate(Action.IDLE_STOP, facts, ctx)
    if stop.allowed:
        return Step(StepKind.ACT, f"stop {facts.instance_id}: idle past the grace period", None, stop)
    if stop.would_allow:
        return Step(StepKind.WOULD_ACT, stop.reason, mark, stop)
    until = None
    if stop.rule is Rule.QUIET_HOURS:
        until = check_working_time(now, facts.owner_timezone, ctx.policy.working_hours).next_start
    return Step(StepKind.WAIT, stop.reason, mark, stop, until)


@dataclass(frozen=True)
class KeepRefusal:
    instance_id: str
    message: str


def take_keep(
    mark: Mark, duration: timedelta, actor: Actor, now: datetime, policy: SafetyPolicy
) -> Mark | KeepRefusal:
    """A Keep button: no stop before `now + duration`; the owner is told again afterwards.

    An owner may keep one machine `max_keeps_per_machine` times in a row; after that an admin must extend
    (admins are not capped), so an idle machine cannot be kept alive forever by habit.
    """
    now = require_utc(now)
    if duration <= timedelta():
        return KeepRefusal(mark.instance_id, "A keep must last some time.")
    if mark.keep_count >= policy.max_keeps_per_machine and not actor.is_admin:
        return KeepRefusal(
            mark.instance_id,
            f"{mark.instance_id} has been kept {mark.keep_count} times already "
            f"(limit {policy.max_keeps_per_machine}); ask an admin to keep it longer, or protect it.",
        )
    until = now + duration
    if mark.keep_until is not None and mark.keep_until > until:
        until = mark.keep_until  # a shorter keep never cuts a longer one short
    return replace(mark, notified_at=None, keep_until=until, keep_count=mark.keep_count + 1)
