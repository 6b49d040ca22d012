"""The safety rules of DESIGN §3 as one pure function.

`evaluate(action, facts, context) -> Verdict` serves commands, buttons, cleanup plans and scheduled cycles,
and services call it again immediately before every provider call. A verdict is *allowed*, or *skipped*
with the most important rule that stopped it (`rule`), the other rules that also failed (`also`), a
sentence for people (`reason`) and the evidence for the audit log.

Rules, in the order a skipped verdict reports them:

1. `NEVER_AUTOMATIC` — the bot on its own only reminds (`IDLE_REMIND`) and stops (`IDLE_STOP`); it never
   starts, terminates, protects or keeps. An automatic `STOP` is judged as an `IDLE_STOP`: the bot never
   stops a machine it has not proven idle and warned the owner about.
2. `MANAGED_ONLY` — automatic actions never touch unmanaged machines. A command on an unmanaged machine is
   refused too (it is somebody else's), unless an admin uses `--force`.
3. `PROTECTED` — `runctl:protected|important|persistent=true` blocks every automatic action and every
   stop/terminate command without an admin's `--force`. Start, protect, unprotect and keep are not blocked:
   they cannot lose anyone's work, and unprotect must work on protected machines.
4. `STATE` — the action must make sense for the machine's state (no stopping a stopped machine, nothing on
   a terminated one, nothing while the state is unknown). Never forceable.
5. `TRAINING_JOB` — a running training job blocks automatic actions and stop/terminate without `--force`.
   When the job status could not be read, automatic actions are blocked (fail safe); commands are not.
6. `KEEP_UNTIL` — `runctl:keep-until` (ISO-8601 UTC or `never`) and a keep from the reminder buttons block
   automatic actions until then. An unreadable tag value counts as kept, and the reason says so.
7. `MIN_AGE` — from the cloud's launch time: idle rules wait `min_age_idle` (2 h); stop/terminate commands
   need `min_age_command` (5 min) unless an admin forces.
8. `NOT_IDLE` — idle actions need a fresh idle verdict that proves idle; missing or partial data is not idle.
9. `GRACE` — an idle stop waits `grace` from when the owner was *notified* (not marked).
10. `QUIET_HOURS` — automatic actions only inside the owner's working hours, in their own time zone. When
    the owner's zone is unknown (no Slack time zone, or a name that is not IANA) a reminder is timed in the
    default zone, but an automatic stop is refused: it is never taken on a guessed time zone.
11. `CIRCUIT_BREAKER` — automatic stops per cycle are capped by count and by share of the managed fleet;
    `evaluate_batch` lets the first machines up to the cap through and holds the rest as one batch for an
    admin, for every stop/terminate batch (cleanup included).
12. `DRY_RUN` — when enforcement is off, a change that every other rule allows is reported, not made.
    Reminders are not changes and are not held by dry-run.

`--force` is honoured only from an admin and never for automatic actions; it can override `MANAGED_ONLY`,
`PROTECTED`, `TRAINING_JOB` and `MIN_AGE` on commands, and the verdict lists what it overrode. A non-admin's
`--force` is ignored, and the reason says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from bot.core.clock import as_utc, require_utc
from bot.core.idle import EvidenceValue, IdleVerdict
from bot.core.policy import DEFAULT_POLICY, SafetyPolicy
from bot.core.quiet_hours import check_working_time, describe_hours
from providers import tags as tagschema
from providers.base import Instance, InstanceState

__all__ = [
    "SYSTEM_ACTOR",
    "Action",
    "Actor",
    "BatchError",
    "BatchResult",
    "EvidenceValue",
    "KeepUntil",
    "ResourceFacts",
    "Role",
    "Rule",
    "SafetyContext",
    "Verdict",
    "evaluate",
    "evaluate_batch",
    "format_duration",
    "format_time",
    "parse_keep_until",
]


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    TERMINATE = "terminate"
    PROTECT = "protect"
    UNPROTECT = "unprotect"
    KEEP = "keep"
    IDLE_REMIND = "idle_remind"  # mark and notify the owner (always automatic)
    IDLE_STOP = "idle_stop"  # stop after the grace period (always automatic)


class Rule(StrEnum):
    NEVER_AUTOMATIC = "never_automatic"
    MANAGED_ONLY = "managed_only"
    PROTECTED = "protected"
    STATE = "state"
    TRAINING_JOB = "training_job"
    KEEP_UNTIL = "keep_until"
    MIN_AGE = "min_age"
    NOT_IDLE = "not_idle"
    GRACE = "grace"
    QUIET_HOURS = "quiet_hours"
    CIRCUIT_BREAKER = "circuit_breaker"
    DRY_RUN = "dry_run"


class Role(StrEnum):
    USER = "user"
    APPROVER = "approver"
    ADMIN = "admin"


_IDLE_ACTIONS = frozenset({Action.IDLE_REMIND, Action.IDLE_STOP})
_DESTRUCTIVE = frozenset({Action.STOP, Action.TERMINATE, Action.IDLE_STOP})
_AUTOMATIC_ALLOWED = frozenset({Action.STOP, Action.IDLE_REMIND, Action.IDLE_STOP})
_FORCEABLE = frozenset({Rule.MANAGED_ONLY, Rule.PROTECTED, Rule.TRAINING_JOB, Rule.MIN_AGE})
_GONE = frozenset({InstanceState.TERMINATING, InstanceState.TERMINATED})

_VERBS = {
    Action.START: "start",
    Action.STOP: "stop",
    Action.TERMINATE: "terminate",
    Action.PROTECT: "protect",
    Action.UNPROTECT: "unprotect",
    Action.KEEP: "keep",
    Action.IDLE_REMIND: "send an idle reminder for",
    Action.IDLE_STOP: "stop (idle)",
}


@dataclass(frozen=True)
class Actor:
    """Who asks. Roles come from configuration (`RUNCTL_ADMINS`, `RUNCTL_APPROVERS`, `RUNCTL_USERS`)."""

    user_id: str
    roles: frozenset[Role] = frozenset()

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def mention(self) -> str:
        return f"<@{self.user_id}>"


SYSTEM_ACTOR = Actor("runctl-bot")


@dataclass(frozen=True)
class ResourceFacts:
    """One machine as the rules see it: the cloud's view plus what the database and metrics add."""

    instance: Instance
    running_job: str | None = None  # id of a training job running on it
    jobs_known: bool = True  # False when the job status could not be read
    idle: IdleVerdict | None = None
    owner_timezone: str | None = None  # IANA name from the owner's Slack profile (or the team's, see note)
    timezone_note: str | None = None  # how `owner_timezone` was chosen when not from Slack (evidence)
    notified_at: datetime | None = None  # when the owner was told it is idle (starts the grace clock)
    kept_until: datetime | None = None  # a keep taken with the reminder buttons

    @property
    def instance_id(self) -> str:
        return self.instance.id


@dataclass(frozen=True)
class SafetyContext:
    """The request around a verdict: when, under which policy, by whom, and how much this cycle did.

    `fleet_size` is the managed fleet the cycle looked at (managed machines not terminated);
    `actions_this_cycle` counts automatic actions already taken in the cycle. `breaker_approved` is set
    only after an admin approved a batch the breaker held (see `bot.core.approvals`).
    """

    now: datetime
    policy: SafetyPolicy = DEFAULT_POLICY
    actor: Actor = SYSTEM_ACTOR
    automatic: bool = False
    force: bool = False
    dry_run: bool = False
    fleet_size: int = 0
    actions_this_cycle: int = 0
    breaker_approved: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", require_utc(self.now))
        if self.fleet_size < 0 or self.actions_this_cycle < 0:
            raise ValueError("fleet_size and actions_this_cycle must not be negative")

    def is_automatic(self, action: Action) -> bool:
        return self.automatic or action in _IDLE_ACTIONS

    def force_honoured(self, action: Action) -> bool:
        return self.force and self.actor.is_admin and not self.is_automatic(action)


@dataclass(frozen=True)
class Verdict:
    instance_id: str
    action: Action
    allowed: bool
    rule: Rule | None  # the most important rule that failed; None when allowed
    reason: str
    at: datetime
    automatic: bool
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict, hash=False)
    also: tuple[Rule, ...] = ()  # further rules that failed, in order of importance
    overridden: tuple[Rule, ...] = ()  # rules an admin's --force bypassed

    @property
    def skipped(self) -> bool:
        return not self.allowed

    @property
    def rules(self) -> tuple[Rule, ...]:
        return ((self.rule,) if self.rule else ()) + self.also

    @property
    def would_allow(self) -> bool:
        """True when only dry-run held it back: what a report says the rule *would* do."""
        return self.allowed or (self.rule is Rule.DRY_RUN and not self.also)


@dataclass(frozen=True)
class BatchError:
    instance_id: str
    message: str


@dataclass(frozen=True)
class BatchResult:
    """runctl's `CleanupResult`, made real: per machine, allowed or skipped with why, plus errors."""

    action: Action
    verdicts: tuple[Verdict, ...]
    errors: tuple[BatchError, ...]
    breaker_cap: int | None  # None when the breaker does not apply to this batch
    breaker_tripped: bool

    @property
    def allowed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.allowed)

    @property
    def skipped(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if not v.allowed)

    @property
    def held_by_breaker(self) -> tuple[Verdict, ...]:
        """What an admin is asked to approve as one batch when the breaker tripped (the rest went ahead)."""
        return tuple(v for v in self.verdicts if v.rule is Rule.CIRCUIT_BREAKER)


@dataclass(frozen=True)
class KeepUntil:
    until: datetime | None  # UTC
    forever: bool = False
    malformed: bool = False
    raw: str = ""

    def keeps_at(self, now: datetime) -> bool:
        return self.forever or self.malformed or (self.until is not None and now < self.until)


def parse_keep_until(value: str | None) -> KeepUntil | None:
    """The `runctl:keep-until` tag: ISO-8601 (UTC assumed without an offset) or `never`.

    A value that cannot be read is *malformed*, which the rules treat as kept: a typo must not let the bot
    stop a machine someone meant to keep.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.lower() == tagschema.KEEP_FOREVER:
        return KeepUntil(None, forever=True, raw=text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return KeepUntil(None, malformed=True, raw=text)
    return KeepUntil(as_utc(parsed), raw=text)


def format_duration(delta: timedelta) -> str:
    """`5 min`, `2 h`, `1 h 30 min`, `1 day`, for sentences; `40 s` under a minute (not `0 min`)."""
    seconds = max(0, int(delta.total_seconds()))
    if 0 < seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" + ("s" if days > 1 else ""))
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts)


def format_time(when: datetime) -> str:
    return f"{as_utc(when):%Y-%m-%d %H:%M} UTC"


_Notes = dict[str, EvidenceValue]


@dataclass(frozen=True)
class _Failure:
    rule: Rule
    reason: str
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)


def _check_never_automatic(action: Action, auto: bool, iid: str) -> _Failure | None:
    if auto and action not in _AUTOMATIC_ALLOWED:
        return _Failure(
            Rule.NEVER_AUTOMATIC, f"the bot will never {_VERBS[action]} {iid} on its own; a person must ask"
        )
    return None


def _check_managed(action: Action, inst: Instance, auto: bool) -> _Failure | None:
    if inst.managed:
        return None
    evidence = {"managed": False}
    if auto:
        return _Failure(
            Rule.MANAGED_ONLY,
            f"{inst.id} is not managed by runctl (no {tagschema.MANAGED}=true tag); rules and cleanup only "
            "list it",
            evidence,
        )
    return _Failure(
        Rule.MANAGED_ONLY,
        f"{inst.id} is not managed by runctl (no {tagschema.MANAGED}=true tag); only an admin with --force "
        f"may {_VERBS[action]} it",
        evidence,
    )


def _check_protected(action: Action, inst: Instance, auto: bool) -> _Failure | None:
    tag = tagschema.protection_tag(inst.tags)
    if tag is None or not (auto or action in _DESTRUCTIVE):
        return None
    tail = "rules never touch it" if auto else "unprotect it first, or an admin can use --force"
    return _Failure(
        Rule.PROTECTED,
        f"{inst.id} is protected by tag {tag}={inst.tags.get(tag, '')}; {tail}",
        {"protection_tag": tag},
    )


def _check_state(action: Action, inst: Instance) -> _Failure | None:
    state, iid = inst.state, inst.id
    problem: str | None = None
    if state in _GONE:
        problem = f"{iid} is {state.value}; there is nothing left to {_VERBS[action]}"
    elif state is InstanceState.UNKNOWN and action in _DESTRUCTIVE | {Action.START, Action.IDLE_REMIND}:
        problem = f"the state of {iid} is unknown; refresh it and try again"
    elif action is Action.START and state is not InstanceState.STOPPED:
        problem = {
            InstanceState.RUNNING: f"{iid} is already running",
            InstanceState.STARTING: f"{iid} is already starting",
            InstanceState.STOPPING: f"{iid} is still stopping; start it once it has stopped",
        }.get(state, f"{iid} cannot be started while {state.value}")
    elif action in {Action.STOP, Action.IDLE_STOP, Action.IDLE_REMIND} and state is not InstanceState.RUNNING:
        problem = {
            InstanceState.STOPPED: f"{iid} is already stopped",
            InstanceState.STOPPING: f"{iid} is already stopping",
            InstanceState.STARTING: f"{iid} is still starting; it can be stopped once it runs",
        }.get(state, f"{iid} is not running ({state.value})")
    elif action is Action.PROTECT and (tag := tagschema.protection_tag(inst.tags)):
        problem = f"{iid} is already protected ({tag}=true)"
    elif action is Action.UNPROTECT and tagschema.protection_tag(inst.tags) is None:
        problem = f"{iid} is not protected"
    if problem is None:
        return None
    return _Failure(Rule.STATE, problem)


def _check_training_job(action: Action, facts: ResourceFacts, auto: bool) -> _Failure | None:
    if not (auto or action in _DESTRUCTIVE):
        return None
    iid = facts.instance_id
    if facts.running_job:
        tail = "" if auto else "; stop the job first, or an admin can use --force"
        return _Failure(
            Rule.TRAINING_JOB,
            f"training job {facts.running_job} is running on {iid}{tail}",
            {"running_job": facts.running_job},
        )
    if auto and not facts.jobs_known:
        return _Failure(
            Rule.TRAINING_JOB,
            f"whether a training job runs on {iid} could not be checked; the bot does not act blind",
            {"running_job": "unknown"},
        )
    return None


def _check_keep(facts: ResourceFacts, now: datetime) -> _Failure | None:
    inst = facts.instance
    tag = parse_keep_until(inst.tags.get(tagschema.KEEP_UNTIL))
    if tag is not None and tag.keeps_at(now):
        if tag.malformed:
            reason = (
                f"{inst.id} has an unreadable {tagschema.KEEP_UNTIL} value {tag.raw!r}; it is treated as "
                "kept until the tag is fixed (ISO-8601 UTC or 'never') or removed"
            )
        elif tag.forever:
            reason = f"{inst.id} is kept indefinitely ({tagschema.KEEP_UNTIL}=never)"
        else:
            assert tag.until is not None
            reason = f"{inst.id} is kept until {format_time(tag.until)} ({tagschema.KEEP_UNTIL})"
        return _Failure(
            Rule.KEEP_UNTIL, reason, {"keep_until": tag.raw, "keep_until_malformed": tag.malformed}
        )
    if facts.kept_until is not None and now < as_utc(facts.kept_until):
        until = as_utc(facts.kept_until)
        return _Failure(
            Rule.KEEP_UNTIL,
            f"{inst.id} is kept until {format_time(until)} (its owner chose Keep)",
            {"keep_until": until.isoformat()},
        )
    return None


def _check_age(
    action: Action, inst: Instance, ctx: SafetyContext, auto: bool, notes: _Notes
) -> _Failure | None:
    if auto:
        minimum, why = ctx.policy.min_age_idle, "idle rules wait until a machine is {min} old"
    elif action in _DESTRUCTIVE:
        minimum, why = ctx.policy.min_age_command, "nothing younger than {min} is {verb}ed without --force"
    else:
        return None
    age = ctx.now - as_utc(inst.launch_time)
    notes["age_minutes"] = round(age.total_seconds() / 60, 2)
    notes["min_age_minutes"] = minimum.total_seconds() / 60
    if age >= minimum:
        return None
    verb = "stopp" if action is not Action.TERMINATE else "terminat"
    return _Failure(
        Rule.MIN_AGE,
        f"{inst.id} is {format_duration(age)} old (launched {format_time(inst.launch_time)}); "
        + why.format(min=format_duration(minimum), verb=verb),
    )


def _check_idle(facts: ResourceFacts, ctx: SafetyContext, notes: _Notes) -> _Failure | None:
    verdict, iid = facts.idle, facts.instance_id
    if verdict is None or verdict.instance_id not in (iid, ""):
        return _Failure(Rule.NOT_IDLE, f"there is no idle evidence for {iid}; missing data is not idle")
    notes.update(verdict.evidence())
    age = ctx.now - verdict.as_of
    if age > ctx.policy.idle.max_evidence_age or age < -timedelta(minutes=1):
        return _Failure(
            Rule.NOT_IDLE,
            f"the idle evidence for {iid} is from {format_time(verdict.as_of)}, too old to act on; "
            "it must be checked again",
        )
    if not verdict.idle:
        return _Failure(Rule.NOT_IDLE, f"{iid} is not proven idle: {verdict.reason}")
    return None


def _check_grace(facts: ResourceFacts, ctx: SafetyContext, notes: _Notes) -> _Failure | None:
    iid = facts.instance_id
    if facts.notified_at is None:
        return _Failure(Rule.GRACE, f"the owner of {iid} has not been told it is idle yet")
    notified = as_utc(facts.notified_at)
    ends = notified + ctx.policy.grace
    notes["notified_at"] = notified.isoformat()
    notes["grace_ends"] = ends.isoformat()
    if ctx.now < ends:
        return _Failure(
            Rule.GRACE,
            f"the owner of {iid} was told at {format_time(notified)}; the grace period runs until "
            f"{format_time(ends)}",
        )
    return None


def _check_quiet_hours(
    action: Action, facts: ResourceFacts, ctx: SafetyContext, notes: _Notes
) -> _Failure | None:
    hours = ctx.policy.working_hours
    check = check_working_time(ctx.now, facts.owner_timezone, hours)
    notes["owner_timezone"] = check.zone
    notes["owner_local_time"] = check.local.isoformat()
    if check.problem:
        notes["timezone_problem"] = check.problem
    if facts.timezone_note:
        notes["timezone_note"] = facts.timezone_note
    if check.guessed and action is not Action.IDLE_REMIND:
        notes["timezone_unknown"] = True
        return _Failure(
            Rule.QUIET_HOURS,
            f"{check.cause or check.problem} for {facts.instance_id}; the bot never stops a machine on a "
            "guessed time zone, so this waits until the owner's Slack time zone can be read (or a team "
            "default time zone is configured)",
        )
    if check.within:
        return None
    next_local = check.next_start.astimezone(check.local.tzinfo)
    notes["working_hours_resume"] = check.next_start.isoformat()
    note = f" ({check.problem})" if check.problem else ""
    return _Failure(
        Rule.QUIET_HOURS,
        f"it is {check.local_label} for the owner of {facts.instance_id}{note}, outside working hours "
        f"({describe_hours(hours)}); this waits until {next_local:%a %H:%M}",
    )


def _breaker_failure(
    ctx: SafetyContext, iid: str, wanted: int, allowed: int | None = None
) -> _Failure | None:
    """`wanted` actions asked for this cycle; `allowed` of them (when given) go ahead, the rest wait."""
    breaker = ctx.policy.breaker
    cap = breaker.cap(ctx.fleet_size)
    if ctx.actions_this_cycle + wanted <= cap:
        return None
    evidence: dict[str, EvidenceValue] = {
        "breaker_cap": cap,
        "fleet_size": ctx.fleet_size,
        "actions_this_cycle": ctx.actions_this_cycle,
        "actions_requested": wanted,
    }
    if allowed is not None:
        evidence["actions_allowed"] = allowed
        evidence["actions_held"] = wanted - allowed
        tail = (
            f"the first {allowed} go ahead and {iid} is one of the {wanted - allowed} held for an admin to "
            "approve as one batch"
        )
    else:
        tail = f"{iid} would make {ctx.actions_this_cycle + wanted}, so an admin must approve the batch"
    return _Failure(
        Rule.CIRCUIT_BREAKER,
        f"circuit breaker: this cycle may take {cap} automatic action(s) (at most {breaker.max_actions}, "
        f"and {breaker.max_fleet_share:.0%} of a managed fleet of {ctx.fleet_size}); it has taken "
        f"{ctx.actions_this_cycle} and {wanted} more are due; {tail}",
        evidence,
    )


def _failures(
    action: Action, facts: ResourceFacts, ctx: SafetyContext, notes: _Notes, *, with_breaker: bool
) -> list[_Failure]:
    """Every failing rule, most important first; `notes` collects the evidence of passing checks too."""
    inst, now = facts.instance, ctx.now
    auto = ctx.is_automatic(action)
    kind = Action.IDLE_STOP if auto and action is Action.STOP else action
    checks: list[_Failure | None] = [
        _check_never_automatic(action, auto, inst.id),
        _check_managed(action, inst, auto),
        _check_protected(kind, inst, auto),
        _check_state(kind, inst),
        _check_training_job(kind, facts, auto),
    ]
    if auto:
        checks.append(_check_keep(facts, now))
    checks.append(_check_age(kind, inst, ctx, auto, notes))
    if kind in _IDLE_ACTIONS:
        checks.append(_check_idle(facts, ctx, notes))
    if kind is Action.IDLE_STOP:
        checks.append(_check_grace(facts, ctx, notes))
    if auto:
        checks.append(_check_quiet_hours(kind, facts, ctx, notes))
    if with_breaker and auto and kind is Action.IDLE_STOP and not ctx.breaker_approved:
        checks.append(_breaker_failure(ctx, inst.id, 1))
    if ctx.dry_run and kind is not Action.IDLE_REMIND:
        verb = "stop" if kind is Action.IDLE_STOP else _VERBS[action]
        checks.append(_Failure(Rule.DRY_RUN, f"dry run: would {verb} {inst.id} (enforcement is off)"))
    return [c for c in checks if c is not None]


def _base_evidence(action: Action, facts: ResourceFacts, ctx: SafetyContext) -> dict[str, EvidenceValue]:
    inst = facts.instance
    return {
        "instance_id": inst.id,
        "action": action.value,
        "state": inst.state.value,
        "managed": inst.managed,
        "owner": inst.owner,
        "automatic": ctx.is_automatic(action),
        "actor": ctx.actor.user_id,
        "launch_time": as_utc(inst.launch_time).isoformat(),
        "dry_run": ctx.dry_run,
    }


def _verdict(
    action: Action,
    facts: ResourceFacts,
    ctx: SafetyContext,
    failures: Sequence[_Failure],
    notes: Mapping[str, EvidenceValue],
) -> Verdict:
    auto = ctx.is_automatic(action)
    evidence = {**_base_evidence(action, facts, ctx), **notes}
    overridden: tuple[Rule, ...] = ()
    if ctx.force_honoured(action):
        overridden = tuple(f.rule for f in failures if f.rule in _FORCEABLE)
        failures = [f for f in failures if f.rule not in _FORCEABLE]
        evidence["force"] = "honoured"
    elif ctx.force:
        evidence["force"] = "ignored: automatic action" if auto else "ignored: only admins may force"
    for failure in failures:
        for key, value in failure.evidence.items():
            evidence.setdefault(key, value)
    iid = facts.instance_id
    if not failures:
        if overridden:
            over = ", ".join(r.value for r in overridden)
            reason = f"{_VERBS[action]} {iid}: allowed by --force from {ctx.actor.mention} over {over}"
        else:
            reason = f"{_VERBS[action]} {iid}: every rule passed"
        return Verdict(
            iid, action, True, None, reason, ctx.now, auto, MappingProxyType(evidence), (), overridden
        )
    first = failures[0]
    reason = first.reason
    if ctx.force and not ctx.force_honoured(action) and first.rule in _FORCEABLE:
        reason += " (--force was ignored: only an admin's --force counts, and never for automatic actions)"
    return Verdict(
        iid,
        action,
        False,
        first.rule,
        reason,
        ctx.now,
        auto,
        MappingProxyType(evidence),
        tuple(f.rule for f in failures[1:]),
        overridden,
    )


def evaluate(action: Action, facts: ResourceFacts, context: SafetyContext) -> Verdict:
    """The verdict for one action on one machine, now."""
    notes: _Notes = {}
    failures = _failures(action, facts, context, notes, with_breaker=True)
    return _verdict(action, facts, context, failures, notes)


def _breaker_applies(action: Action, context: SafetyContext) -> bool:
    if context.breaker_approved:
        return False
    return action in _DESTRUCTIVE


def evaluate_batch(
    action: Action, facts_list: Iterable[ResourceFacts], context: SafetyContext
) -> BatchResult:
    """Verdicts for many machines, with the circuit breaker applied across the batch.

    When the machines that pass every other rule, plus what the cycle already did, exceed the cap, the first
    ones in the order given, up to the cap, keep their verdict and the rest are held (rule
    `CIRCUIT_BREAKER`) for an admin to approve as one batch: a batch that large more likely means broken
    metrics than a suddenly idle team, so the bot does no more than the cap on its own. It applies to every
    stop/terminate batch, command-started cleanups included. Dry-run batches report what it would hold.
    A machine listed twice, or whose facts cannot be judged, is an error, not a verdict.
    """
    verdicts: list[Verdict] = []
    failures_by_id: dict[str, list[_Failure]] = {}
    notes_by_id: dict[str, _Notes] = {}
    facts_by_id: dict[str, ResourceFacts] = {}
    errors: list[BatchError] = []
    for facts in facts_list:
        iid = facts.instance_id
        if iid in facts_by_id:
            errors.append(BatchError(iid, f"{iid} is listed twice in one batch; judged once"))
            continue
        try:
            notes: _Notes = {}
            failures = _failures(action, facts, context, notes, with_breaker=False)
            verdict = _verdict(action, facts, context, failures, notes)
        except (ValueError, TypeError, OverflowError) as exc:
            errors.append(BatchError(iid, f"{iid} could not be judged: {exc}"))
            continue
        facts_by_id[iid] = facts
        failures_by_id[iid] = failures
        notes_by_id[iid] = notes
        verdicts.append(verdict)

    if not _breaker_applies(action, context):
        return BatchResult(action, tuple(verdicts), tuple(errors), None, False)

    cap = context.policy.breaker.cap(context.fleet_size)
    candidates = [v for v in verdicts if v.would_allow]
    tripped = context.actions_this_cycle + len(candidates) > cap
    if tripped:
        room = max(0, cap - context.actions_this_cycle)
        held = {v.instance_id for v in candidates[room:]}
        result = []
        for verdict in verdicts:
            if verdict.instance_id not in held:
                result.append(verdict)
                continue
            iid = verdict.instance_id
            breaker = _breaker_failure(context, iid, len(candidates), room)
            assert breaker is not None
            failures = [f for f in failures_by_id[iid] if f.rule is Rule.DRY_RUN]
            held_verdict = _verdict(action, facts_by_id[iid], context, [breaker, *failures], notes_by_id[iid])
            result.append(replace(held_verdict, overridden=verdict.overridden))
        verdicts = result
    return BatchResult(action, tuple(verdicts), tuple(errors), cap, tripped)
