"""The grammar of `/runctl <verb> [arguments] [--flags]`.

One spec table (`VERBS`) drives everything: the parser's knowledge of each verb's arguments and flags, the
usage lines in error messages, the help text, and the metadata the authorisation middleware and the sandbox's
autocomplete read. `parse` turns Slack's command text into a frozen `Command` per verb, or a `ParseError` that
renders as a short ephemeral answer; it never acts and never raises on user input.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, cast
from zoneinfo import ZoneInfo

from bot.core import validation as v
from bot.core.durations import WHEN_FORMS, format_duration, looks_relative, parse_duration, parse_when
from bot.core.validation import S3Uri, ValidationError, Weekday

__all__ = [
    "KEEP_MAX",
    "MAX_INSTANCE_IDS",
    "VERBS",
    "CancelCommand",
    "CheckpointsCommand",
    "CleanupPlanCommand",
    "CleanupRunCommand",
    "Command",
    "ConfigCommand",
    "CostCommand",
    "CreateCommand",
    "Frequency",
    "HelpCommand",
    "JobsCommand",
    "KeepCommand",
    "ListCommand",
    "LogsCommand",
    "ParseError",
    "Period",
    "ProtectCommand",
    "ReportCommand",
    "ResumeCommand",
    "Role",
    "StartCommand",
    "StateFilter",
    "StatusCommand",
    "StopCommand",
    "SubscribeCommand",
    "TerminateCommand",
    "TrainCommand",
    "UnprotectCommand",
    "UnsubscribeCommand",
    "VerbSpec",
    "help_text",
    "parse",
    "resolve_verb",
]

T = TypeVar("T")

PREFIX = "/runctl"
MAX_INSTANCE_IDS = 20
KEEP_MAX = timedelta(days=366)
MAX_ENV = 50
MAX_SCRIPT_ARGS = 200
LOG_LINES_DEFAULT = 50
LOG_LINES_MAX = 500


class Role(StrEnum):
    """Who may run a verb; each role includes the ones before it (user < approver < admin)."""

    USER = "user"
    APPROVER = "approver"
    ADMIN = "admin"

    def allows(self, required: Role) -> bool:
        """Whether someone holding this role may run something that requires `required`."""
        order = (Role.USER, Role.APPROVER, Role.ADMIN)
        return order.index(self) >= order.index(required)


class StateFilter(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    ALL = "all"


class Period(StrEnum):
    TODAY = "today"
    WEEK = "week"
    MONTH = "month"


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


# --- commands ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A parsed, validated request. `verb` is the key of its entry in `VERBS`."""

    verb: ClassVar[str]

    @property
    def spec(self) -> VerbSpec:
        return VERBS[self.verb]

    @property
    def mutating(self) -> bool:
        return self.spec.mutating

    @property
    def required_role(self) -> Role:
        """The verb's role, raised by flags that need more (`keep … never`, `terminate --force`)."""
        return self.spec.role


@dataclass(frozen=True)
class HelpCommand(Command):
    verb: ClassVar[str] = "help"
    topic: str | None = None


@dataclass(frozen=True)
class CreateCommand(Command):
    verb: ClassVar[str] = "create"
    instance_type: str
    spot: bool = False
    max_price: Decimal | None = None
    fallback_to_on_demand: bool = True
    project: str | None = None
    ami: str | None = None
    disk_gb: int | None = None


@dataclass(frozen=True)
class ListCommand(Command):
    """Whose machines: everyone's (`all_users`), one person's (`user`), else the requester's; `project`
    narrows any of them."""

    verb: ClassVar[str] = "list"
    all_users: bool = False
    user: str | None = None
    project: str | None = None
    state: StateFilter = StateFilter.ALL


@dataclass(frozen=True)
class StatusCommand(Command):
    verb: ClassVar[str] = "status"
    instance_id: str


@dataclass(frozen=True)
class StartCommand(Command):
    verb: ClassVar[str] = "start"
    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class StopCommand(Command):
    verb: ClassVar[str] = "stop"
    instance_ids: tuple[str, ...]
    force: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class TerminateCommand(Command):
    verb: ClassVar[str] = "terminate"
    instance_ids: tuple[str, ...]
    force: bool = False
    reason: str | None = None

    @property
    def required_role(self) -> Role:
        return Role.ADMIN if self.force else self.spec.role


@dataclass(frozen=True)
class ProtectCommand(Command):
    verb: ClassVar[str] = "protect"
    instance_ids: tuple[str, ...]
    reason: str | None = None


@dataclass(frozen=True)
class UnprotectCommand(Command):
    verb: ClassVar[str] = "unprotect"
    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class KeepCommand(Command):
    """Exactly one of `duration` (relative), `until` (a date, UTC) or `forever` is set."""

    verb: ClassVar[str] = "keep"
    instance_id: str
    duration: timedelta | None = None
    until: datetime | None = None
    forever: bool = False

    @property
    def required_role(self) -> Role:
        return Role.ADMIN if self.forever else self.spec.role

    def deadline(self, now: datetime) -> datetime | None:
        """When the keep ends, in UTC; None for `never`. Relative keeps count from `now` (the apply time)."""
        if self.forever:
            return None
        if self.until is not None:
            return self.until
        if self.duration is None:  # pragma: no cover - the parser always sets one of the three
            raise ValueError("keep has neither a duration, a date nor never")
        return (now + self.duration).astimezone(UTC)


@dataclass(frozen=True)
class CostCommand(Command):
    """At most one scope: everyone, one person, or one project (all its users); none = the requester."""

    verb: ClassVar[str] = "cost"
    all_users: bool = False
    user: str | None = None
    project: str | None = None
    period: Period = Period.MONTH


@dataclass(frozen=True)
class CleanupPlanCommand(Command):
    """None means "use the configured value" so help and behaviour cannot drift from the config."""

    verb: ClassVar[str] = "cleanup plan"
    window: timedelta | None = None
    min_age: timedelta | None = None
    cpu_threshold: float | None = None


@dataclass(frozen=True)
class CleanupRunCommand(Command):
    verb: ClassVar[str] = "cleanup run"
    yes: bool = False


@dataclass(frozen=True)
class ConfigCommand(Command):
    verb: ClassVar[str] = "config"


@dataclass(frozen=True)
class ReportCommand(Command):
    verb: ClassVar[str] = "report"


@dataclass(frozen=True)
class SubscribeCommand(Command):
    """`channel` None means the channel the command was typed in; `timezone` None means the user's own."""

    verb: ClassVar[str] = "subscribe"
    frequency: Frequency
    at: time
    channel: str | None = None
    weekday: Weekday | None = None
    timezone: ZoneInfo | None = None


@dataclass(frozen=True)
class UnsubscribeCommand(Command):
    """`frequency` None removes both the daily and the weekly report of the channel."""

    verb: ClassVar[str] = "unsubscribe"
    channel: str | None = None
    frequency: Frequency | None = None


@dataclass(frozen=True)
class TrainCommand(Command):
    """`requirements` None means "requirements.txt when the code has one"; a given path must exist."""

    verb: ClassVar[str] = "train"
    instance_id: str
    code: S3Uri
    entry: str = "train.py"
    requirements: str | None = None
    data: S3Uri | None = None
    output: S3Uri | None = None
    env: tuple[tuple[str, str], ...] = ()
    auto_resume: bool = False
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogsCommand(Command):
    """Exactly one of `job_id` and `instance_id` is set."""

    verb: ClassVar[str] = "logs"
    job_id: str | None = None
    instance_id: str | None = None
    lines: int = LOG_LINES_DEFAULT


@dataclass(frozen=True)
class JobsCommand(Command):
    verb: ClassVar[str] = "jobs"
    all_users: bool = False


@dataclass(frozen=True)
class CancelCommand(Command):
    verb: ClassVar[str] = "cancel"
    job_id: str


@dataclass(frozen=True)
class CheckpointsCommand(Command):
    """Exactly one of `job_id` and `prefix` is set."""

    verb: ClassVar[str] = "checkpoints"
    job_id: str | None = None
    prefix: S3Uri | None = None


@dataclass(frozen=True)
class ResumeCommand(Command):
    """Neither `on_instance` nor `spot_type`: the service picks a new instance like the original."""

    verb: ClassVar[str] = "resume"
    job_id: str
    on_instance: str | None = None
    spot_type: str | None = None


# --- parse errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseError:
    """What was wrong, the verb's usage and an example; `verb` is None when the verb itself was unknown."""

    verb: str | None
    message: str
    usage: str
    example: str

    def render(self) -> str:
        """Slack mrkdwn. `message` is already safe for it; usage and example are plain text, escaped here."""
        return f"{self.message}\nUsage: `{_escape(self.usage)}`\nExample: `{_escape(self.example)}`"


def _escape(text: str) -> str:
    """Slack reads `<…>` as links and mentions, so plain text that shows `<instance-id>` must escape it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Problem(Exception):
    """Raised inside the parser; becomes a ParseError carrying the verb's usage."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- spec table --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """A flag without a value, e.g. `--spot`."""

    name: str
    help: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Option(Generic[T]):
    """A flag with a value, `--name value` or `--name=value`; `default` is only what help shows."""

    name: str
    metavar: str
    help: str
    convert: Callable[[str], T]
    default: str | None = None
    repeatable: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Arg(Generic[T]):
    """A positional argument; `many` takes one or more. Verbs with optional positionals use `synopsis`."""

    name: str
    help: str
    convert: Callable[[str], T]
    many: bool = False

    @property
    def synopsis(self) -> str:
        return f"<{self.name}>" + ("…" if self.many else "")


Flag: TypeAlias = Switch | Option[Any]


class _Bound:
    """Converted arguments handed to a verb's builder, read back through the same spec objects."""

    def __init__(
        self,
        positionals: dict[str, list[Any]],
        options: dict[str, list[Any]],
        switches: set[str],
        raw: tuple[str, ...],
        script: tuple[str, ...],
        now: datetime | None,
        tz: tzinfo,
    ) -> None:
        self._positionals = positionals
        self._options = options
        self._switches = switches
        self.raw = raw
        self.script = script
        self.now = now
        self.tz = tz

    def arg(self, arg: Arg[T]) -> T:
        return cast(T, self._positionals[arg.name][0])

    def many(self, arg: Arg[T]) -> tuple[T, ...]:
        return tuple(cast(list[T], self._positionals.get(arg.name, [])))

    def value(self, option: Option[T]) -> T | None:
        values = self._options.get(option.name)
        return cast(T, values[0]) if values else None

    def values(self, option: Option[T]) -> tuple[T, ...]:
        return tuple(cast(list[T], self._options.get(option.name, [])))

    def switch(self, switch: Switch) -> bool:
        return switch.name in self._switches


@dataclass(frozen=True)
class VerbSpec:
    """One verb: its grammar, its help, and what authorisation needs to know about it."""

    name: str
    summary: str
    group: str
    role: Role
    mutating: bool
    build: Callable[[_Bound], Command] = field(repr=False, compare=False)
    args: tuple[Arg[Any], ...] = ()
    flags: tuple[Flag, ...] = ()
    exclusive: tuple[tuple[str, ...], ...] = ()
    examples: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    synopsis: str | None = None
    script_args: bool = False
    notes: tuple[str, ...] = ()

    @property
    def raw_args(self) -> bool:
        """Verbs with an irregular positional grammar bind their arguments themselves."""
        return self.synopsis is not None

    def flag(self, name: str) -> Flag | None:
        for flag in self.flags:
            if flag.name == name or name in flag.aliases:
                return flag
        return None

    @property
    def usage(self) -> str:
        parts = [PREFIX, self.name]
        if self.synopsis is not None:
            parts.append(self.synopsis)
        parts.extend(arg.synopsis for arg in self.args)
        grouped: set[str] = set()
        for flag in self.flags:
            if flag.name in grouped:
                continue
            group = next((g for g in self.exclusive if flag.name in g), None)
            if group is None:
                parts.append(f"[{_flag_synopsis(flag)}]")
                continue
            grouped.update(group)
            members = [f for f in self.flags if f.name in group]
            parts.append("[" + " | ".join(_flag_synopsis(f) for f in members) + "]")
        if self.script_args:
            parts.append("[-- <script args>…]")
        return " ".join(parts)


def _flag_synopsis(flag: Flag) -> str:
    if isinstance(flag, Switch):
        return flag.name
    text = f"{flag.name} <{flag.metavar}>"
    return text + "…" if flag.repeatable else text


# --- converters --------------------------------------------------------------------------------------------

E = TypeVar("E", bound=StrEnum)


def _choice(enum: type[E], field_name: str) -> Callable[[str], E]:
    def convert(text: str) -> E:
        try:
            return enum(text.strip().lower())
        except ValueError:
            accepted = ", ".join(member.value for member in enum)
            raise ValidationError(
                field_name, text, "is not one of the choices", f"expected {accepted}"
            ) from None

    return convert


def _reason(text: str) -> str:
    return v.free_text(text, field="reason")


def _price(text: str) -> Decimal:
    return v.money(text, field="max price", maximum=Decimal(1000))


def _disk(text: str) -> int:
    return v.bounded_int(text, field="disk size", minimum=8, maximum=16384)


def _lines(text: str) -> int:
    return v.bounded_int(text, field="lines", minimum=1, maximum=LOG_LINES_MAX)


def _percent(text: str) -> float:
    value = text.strip().removesuffix("%")
    if not re.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{1,3})?", value) or not 0 < float(value) <= 100:
        raise ValidationError("cpu threshold", text, "is not a percentage", "expected more than 0, up to 100")
    return float(value)


def _window(text: str) -> timedelta:
    return parse_duration(text, field="window", minimum=timedelta(minutes=10), maximum=timedelta(hours=24))


def _min_age(text: str) -> timedelta:
    return parse_duration(text, field="minimum age", maximum=timedelta(days=30))


def _entry(text: str) -> str:
    return v.relative_path(text, field="entry")


def _requirements(text: str) -> str:
    return v.relative_path(text, field="requirements")


def _data(text: str) -> S3Uri:
    return v.s3_uri(text, field="data")


def _output(text: str) -> S3Uri:
    return v.s3_uri(text, field="output")


def _code(text: str) -> S3Uri:
    return v.s3_uri(text, field="code")


def _job_or_instance(text: str) -> str:
    value = text.strip().lower()
    if value.startswith(v.JOB_ID_PREFIX):
        return v.job_id(value)
    if value.startswith("i-"):
        return v.instance_id(value)
    raise ValidationError(
        "target",
        text,
        "is neither a job id nor an instance id",
        "e.g. job-3f9a1c2b7d4e or i-0123456789abcdef0",
    )


def _job_or_prefix(text: str) -> str | S3Uri:
    if text.strip().startswith("s3://"):
        return v.s3_uri(text, field="checkpoint prefix")
    if text.strip().lower().startswith(v.JOB_ID_PREFIX):
        return v.job_id(text)
    raise ValidationError(
        "target",
        text,
        "is neither a job id nor an S3 prefix",
        "e.g. job-3f9a1c2b7d4e or s3://bucket/checkpoints/",
    )


def _when(text: str) -> str:
    """Keep's deadline is resolved by the builder, which knows the clock; here it is only taken as text."""
    return text


# --- shared flag and argument objects ----------------------------------------------------------------------

_INSTANCE = Arg("instance-id", "the machine, e.g. i-0123456789abcdef0", v.instance_id)
_INSTANCES = Arg("instance-id", f"one or more machines (up to {MAX_INSTANCE_IDS})", v.instance_id, many=True)
_JOB = Arg("job-id", "the training job, e.g. job-3f9a1c2b7d4e", v.job_id)

_FORCE = Switch("--force", "skip the protection and minimum-age checks", aliases=("-f",))
_REASON = Option("--reason", "text", "why; shown to the owner and kept in the audit log", _reason)
_ALL = Switch("--all", "everyone's, not only yours", aliases=("-a",))
_USER = Option("--user", "@user", "only this person's", v.slack_user)
_PROJECT_FILTER = Option("--project", "name", "only this project", v.project)

# create
_TYPE = Arg("instance-type", "EC2 instance type, e.g. g5.xlarge", v.instance_type)
_SPOT = Switch("--spot", "ask for a spot instance: much cheaper, but AWS may reclaim it")
_MAX_PRICE = Option(
    "--max-price", "$/h", "highest spot price per hour; needs --spot", _price, default="the on-demand price"
)
_NO_FALLBACK = Switch("--no-fallback", "if there is no spot capacity, fail instead of launching on-demand")
_PROJECT = Option("--project", "name", "project tag for costs and reports", v.project, default="your default")
_AMI = Option("--ami", "ami-id", "machine image", v.ami_id, default="Deep Learning AMI for GPU types")
_DISK = Option("--disk", "GB", "root volume size (8-16384)", _disk, default="30, or 50 for g and p types")

# list, cost
_STATE = Option(
    "--state", "running|stopped|all", "which machines", _choice(StateFilter, "state"), default="all"
)
_PERIOD = Option("--period", "today|week|month", "time span", _choice(Period, "period"), default="month")

# cleanup
_WINDOW = Option(
    "--window", "duration", "how long a machine must have been idle (10m-24h)", _window, default="60m"
)
_MIN_AGE = Option("--min-age", "duration", "ignore machines younger than this", _min_age, default="2h")
_CPU = Option("--cpu-threshold", "percent", "CPU (and GPU) below this counts as idle", _percent, default="5")
_YES = Switch("--yes", "act without asking for a confirmation click", aliases=("-y",))

# keep
_WHEN = Arg("duration|date|never", "4h, 2d, +1h30m, 2026-12-01, 2026-12-01T18:00+02:00, or never", _when)

# training
_CODE = Arg("code-s3-uri", "the code: a .tar.gz object or a prefix, e.g. s3://bucket/code/v3.tar.gz", _code)
_ENTRY = Option("--entry", "path", "script to run, relative to the code", _entry, default="train.py")
_REQUIREMENTS = Option(
    "--requirements",
    "path",
    "pip requirements file, relative to the code",
    _requirements,
    default="requirements.txt when present",
)
_DATA = Option("--data", "s3-uri", "data to download before the job starts", _data)
_OUTPUT = Option("--output", "s3-uri", "where the output directory is synced when the job exits", _output)
_ENV = Option(
    "--env",
    "KEY=VALUE",
    "environment variable for the job; repeat for more",
    v.env_assignment,
    repeatable=True,
)
_AUTO_RESUME = Switch("--auto-resume", "after a spot interruption, resume on a new spot instance unasked")
_LOG_TARGET = Arg("job-id|instance-id", "a job, or the latest job on a machine", _job_or_instance)
_LINES = Option(
    "--lines",
    "n",
    f"how many lines (1-{LOG_LINES_MAX})",
    _lines,
    default=str(LOG_LINES_DEFAULT),
    aliases=("-n",),
)
_CKPT_TARGET = Arg("job-id|s3-prefix", "a job, or an S3 prefix holding checkpoints", _job_or_prefix)
_ON = Option("--on", "instance-id", "resume on this existing machine", v.instance_id)
_RESUME_SPOT = Option(
    "--spot", "instance-type", "resume on a new spot instance of this type", v.instance_type
)


# --- builders ----------------------------------------------------------------------------------------------


def _ids(b: _Bound) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(b.many(_INSTANCES)))
    if len(ids) > MAX_INSTANCE_IDS:
        raise _Problem(f"That is {len(ids)} machines; one command takes at most {MAX_INSTANCE_IDS}.")
    return ids


def _build_create(b: _Bound) -> Command:
    spot = b.switch(_SPOT)
    if not spot and b.value(_MAX_PRICE) is not None:
        raise _Problem("`--max-price` only applies to spot instances; add `--spot`.")
    if not spot and b.switch(_NO_FALLBACK):
        raise _Problem("`--no-fallback` only applies to spot instances; add `--spot`.")
    return CreateCommand(
        instance_type=b.arg(_TYPE),
        spot=spot,
        max_price=b.value(_MAX_PRICE),
        fallback_to_on_demand=not b.switch(_NO_FALLBACK),
        project=b.value(_PROJECT),
        ami=b.value(_AMI),
        disk_gb=b.value(_DISK),
    )


def _build_list(b: _Bound) -> Command:
    return ListCommand(
        all_users=b.switch(_ALL),
        user=b.value(_USER),
        project=b.value(_PROJECT_FILTER),
        state=b.value(_STATE) or StateFilter.ALL,
    )


def _build_keep(b: _Bound) -> Command:
    instance = b.arg(_INSTANCE)
    text = b.arg(_WHEN).strip()
    if text.lower() == "never":
        return KeepCommand(instance_id=instance, forever=True)
    if looks_relative(text):
        duration = parse_duration(text.removeprefix("+"), field="keep", maximum=KEEP_MAX)
        return KeepCommand(instance_id=instance, duration=duration)
    # Without a clock the date is still checked for shape; whether it is in the future needs `now`.
    reference = b.now if b.now is not None else datetime(1970, 1, 1, tzinfo=UTC)
    until = parse_when(text, reference, b.tz, field="keep", maximum=KEEP_MAX if b.now is not None else None)
    return KeepCommand(instance_id=instance, until=until)


def _build_cost(b: _Bound) -> Command:
    return CostCommand(
        all_users=b.switch(_ALL),
        user=b.value(_USER),
        project=b.value(_PROJECT_FILTER),
        period=b.value(_PERIOD) or Period.MONTH,
    )


def _looks_like_channel(token: str) -> bool:
    return token.startswith(("<#", "#")) or bool(re.fullmatch(r"[CG][A-Z0-9]{6,20}", token))


def _channel(token: str) -> str:
    if token.startswith("#") and not token.startswith("<#"):
        raise ValidationError(
            "channel", token, "is a channel name, not a link", "type # and pick the channel from the list"
        )
    return v.slack_channel(token)


def _build_subscribe(b: _Bound) -> Command:
    rest = list(b.raw)
    channel = _channel(rest.pop(0)) if rest and _looks_like_channel(rest[0]) else None
    if not rest:
        raise _Problem("Say how often: `daily` or `weekly`.")
    frequency = _choice(Frequency, "schedule")(rest.pop(0))
    day: Weekday | None = None
    if frequency is Frequency.WEEKLY:
        if not rest:
            raise _Problem("A weekly report needs a day and a time, e.g. `weekly mon 09:00`.")
        day = v.weekday(rest.pop(0))
    if not rest:
        raise _Problem("Say when: a time like `09:00`.")
    at = v.time_of_day(rest.pop(0))
    zone = v.timezone(rest.pop(0)) if rest else None
    if rest:
        raise _Problem(f"Unexpected {v.quote_value(rest[0])} after the time zone.")
    return SubscribeCommand(channel=channel, frequency=frequency, weekday=day, at=at, timezone=zone)


def _build_unsubscribe(b: _Bound) -> Command:
    rest = list(b.raw)
    channel = _channel(rest.pop(0)) if rest and _looks_like_channel(rest[0]) else None
    frequency = _choice(Frequency, "schedule")(rest.pop(0)) if rest else None
    if rest:
        raise _Problem(f"Unexpected {v.quote_value(rest[0])}.")
    return UnsubscribeCommand(channel=channel, frequency=frequency)


def _build_train(b: _Bound) -> Command:
    env = b.values(_ENV)
    if len(env) > MAX_ENV:
        raise _Problem(f"That is {len(env)} `--env` values; a job takes at most {MAX_ENV}.")
    seen: set[str] = set()
    for key, _ in env:
        if key in seen:
            raise _Problem(f"`--env {key}` is given twice.")
        seen.add(key)
    if len(b.script) > MAX_SCRIPT_ARGS:
        raise _Problem(f"That is {len(b.script)} script arguments; a job takes at most {MAX_SCRIPT_ARGS}.")
    return TrainCommand(
        instance_id=b.arg(_INSTANCE),
        code=b.arg(_CODE),
        entry=b.value(_ENTRY) or "train.py",
        requirements=b.value(_REQUIREMENTS),
        data=b.value(_DATA),
        output=b.value(_OUTPUT),
        env=env,
        auto_resume=b.switch(_AUTO_RESUME),
        script_args=tuple(v.script_arg(arg) for arg in b.script),
    )


def _build_logs(b: _Bound) -> Command:
    target = b.arg(_LOG_TARGET)
    lines = b.value(_LINES) or LOG_LINES_DEFAULT
    if target.startswith(v.JOB_ID_PREFIX):
        return LogsCommand(job_id=target, lines=lines)
    return LogsCommand(instance_id=target, lines=lines)


def _build_checkpoints(b: _Bound) -> Command:
    target = b.arg(_CKPT_TARGET)
    if isinstance(target, S3Uri):
        return CheckpointsCommand(prefix=target)
    return CheckpointsCommand(job_id=target)


def _build_help(b: _Bound) -> Command:
    if not b.raw:
        return HelpCommand()
    words = [word.lower() for word in b.raw]
    name = resolve_verb(words[0])
    if name is None:
        raise _Problem(_unknown_verb_message(b.raw[0]))
    if name in _GROUPS and len(words) > 1:
        sub = f"{name} {words[1]}"
        if sub not in VERBS:
            raise _Problem(
                f"{v.quote_value(b.raw[1])} is not part of `{name}`; try `{name} {_GROUPS[name][0]}`."
            )
        if len(words) > 2:
            raise _Problem(f"Unexpected {v.quote_value(b.raw[2])}.")
        return HelpCommand(topic=sub)
    if len(words) > 1:
        raise _Problem(f"Unexpected {v.quote_value(b.raw[1])}.")
    return HelpCommand(topic=name)


_INSTANCE_EXAMPLE = "i-0123456789abcdef0"

_SPECS: tuple[VerbSpec, ...] = (
    VerbSpec(
        name="help",
        summary="what every verb does, or one verb in detail",
        group="Help",
        role=Role.USER,
        mutating=False,
        build=_build_help,
        synopsis="[<verb>]",
        examples=("/runctl help", "/runctl help train"),
        aliases=("?", "-h", "--help"),
    ),
    VerbSpec(
        name="create",
        summary="launch a machine (shows the price first; may need approval)",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=_build_create,
        args=(_TYPE,),
        flags=(_SPOT, _MAX_PRICE, _NO_FALLBACK, _PROJECT, _AMI, _DISK),
        examples=("/runctl create g5.xlarge --spot --project llama", "/runctl create c7i.2xlarge --disk 100"),
        aliases=("new", "launch"),
        notes=("Launches at once when within your limits; otherwise an approver is asked.",),
    ),
    VerbSpec(
        name="list",
        summary="your machines (or everyone's) with state, age and cost",
        group="Machines",
        role=Role.USER,
        mutating=False,
        build=_build_list,
        flags=(_ALL, _USER, _PROJECT_FILTER, _STATE),
        exclusive=(("--all", "--user"),),
        examples=("/runctl list", "/runctl list --all --state running"),
        aliases=("ls",),
    ),
    VerbSpec(
        name="status",
        summary="one machine in detail: state, age, cost, jobs, protection",
        group="Machines",
        role=Role.USER,
        mutating=False,
        build=lambda b: StatusCommand(instance_id=b.arg(_INSTANCE)),
        args=(_INSTANCE,),
        examples=(f"/runctl status {_INSTANCE_EXAMPLE}",),
        aliases=("show", "describe"),
    ),
    VerbSpec(
        name="start",
        summary="start stopped machines",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=lambda b: StartCommand(instance_ids=_ids(b)),
        args=(_INSTANCES,),
        examples=(f"/runctl start {_INSTANCE_EXAMPLE}",),
    ),
    VerbSpec(
        name="stop",
        summary="stop machines (disks are kept; start them again later)",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=lambda b: StopCommand(instance_ids=_ids(b), force=b.switch(_FORCE), reason=b.value(_REASON)),
        args=(_INSTANCES,),
        flags=(_FORCE, _REASON),
        examples=(f'/runctl stop {_INSTANCE_EXAMPLE} --reason "done for today"',),
        aliases=("pause",),
        notes=("Protected machines and machines younger than 5 minutes need `--force`.",),
    ),
    VerbSpec(
        name="terminate",
        summary="delete machines for good (always approved by someone else)",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=lambda b: TerminateCommand(
            instance_ids=_ids(b), force=b.switch(_FORCE), reason=b.value(_REASON)
        ),
        args=(_INSTANCES,),
        flags=(_FORCE, _REASON),
        examples=(f'/runctl terminate {_INSTANCE_EXAMPLE} --reason "experiment finished"',),
        aliases=("rm", "destroy", "delete"),
        notes=(
            "An approver who is not you must approve it (two-person rule).",
            "`--force` is for admins only and still needs the approval.",
        ),
    ),
    VerbSpec(
        name="protect",
        summary="protect machines from every automatic action and from stop/terminate",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=lambda b: ProtectCommand(instance_ids=_ids(b), reason=b.value(_REASON)),
        args=(_INSTANCES,),
        flags=(_REASON,),
        examples=(f'/runctl protect {_INSTANCE_EXAMPLE} --reason "long eval run"',),
    ),
    VerbSpec(
        name="unprotect",
        summary="remove the protection",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=lambda b: UnprotectCommand(instance_ids=_ids(b)),
        args=(_INSTANCES,),
        examples=(f"/runctl unprotect {_INSTANCE_EXAMPLE}",),
    ),
    VerbSpec(
        name="keep",
        summary="no idle reminders for a machine until then",
        group="Machines",
        role=Role.USER,
        mutating=True,
        build=_build_keep,
        args=(_INSTANCE, _WHEN),
        examples=(f"/runctl keep {_INSTANCE_EXAMPLE} 4h", f"/runctl keep {_INSTANCE_EXAMPLE} 2026-12-01"),
        notes=(
            f"Accepts {WHEN_FORMS}; at most {format_duration(KEEP_MAX)} ahead.",
            "`never` is for admins only.",
        ),
    ),
    VerbSpec(
        name="train",
        summary="run a training job on a machine from code in S3",
        group="Training",
        role=Role.USER,
        mutating=True,
        build=_build_train,
        args=(_INSTANCE, _CODE),
        flags=(_ENTRY, _REQUIREMENTS, _DATA, _OUTPUT, _ENV, _AUTO_RESUME),
        script_args=True,
        examples=(
            f"/runctl train {_INSTANCE_EXAMPLE} s3://ml-code/llama/v3.tar.gz --output s3://ml-out/llama/"
            " -- --epochs 3 --lr 3e-4",
        ),
        notes=("Everything after `--` goes to your script exactly as typed, as data.",),
    ),
    VerbSpec(
        name="logs",
        summary="the last lines of a job's log",
        group="Training",
        role=Role.USER,
        mutating=False,
        build=_build_logs,
        args=(_LOG_TARGET,),
        flags=(_LINES,),
        examples=("/runctl logs job-3f9a1c2b7d4e --lines 200",),
        aliases=("log", "tail"),
    ),
    VerbSpec(
        name="jobs",
        summary="training jobs: running and recent",
        group="Training",
        role=Role.USER,
        mutating=False,
        build=lambda b: JobsCommand(all_users=b.switch(_ALL)),
        flags=(_ALL,),
        examples=("/runctl jobs", "/runctl jobs --all"),
    ),
    VerbSpec(
        name="cancel",
        summary="stop a training job (SIGTERM, then SIGKILL after 30 s)",
        group="Training",
        role=Role.USER,
        mutating=True,
        build=lambda b: CancelCommand(job_id=b.arg(_JOB)),
        args=(_JOB,),
        examples=("/runctl cancel job-3f9a1c2b7d4e",),
        notes=("You can cancel your own jobs; anyone else's needs an approval.",),
    ),
    VerbSpec(
        name="checkpoints",
        summary="a job's checkpoints, newest first",
        group="Training",
        role=Role.USER,
        mutating=False,
        build=_build_checkpoints,
        args=(_CKPT_TARGET,),
        examples=(
            "/runctl checkpoints job-3f9a1c2b7d4e",
            "/runctl checkpoints s3://ml-out/llama/checkpoints/",
        ),
        aliases=("ckpt",),
    ),
    VerbSpec(
        name="resume",
        summary="restart a job from its latest checkpoint",
        group="Training",
        role=Role.USER,
        mutating=True,
        build=lambda b: ResumeCommand(
            job_id=b.arg(_JOB), on_instance=b.value(_ON), spot_type=b.value(_RESUME_SPOT)
        ),
        args=(_JOB,),
        flags=(_ON, _RESUME_SPOT),
        exclusive=(("--on", "--spot"),),
        examples=("/runctl resume job-3f9a1c2b7d4e --spot g5.xlarge",),
        notes=("Without `--on` or `--spot` it runs on a new machine like the original one.",),
    ),
    VerbSpec(
        name="cost",
        summary="what machines cost: yours, a person's, a project's or everyone's",
        group="Money and reports",
        role=Role.USER,
        mutating=False,
        build=_build_cost,
        flags=(_ALL, _USER, _PROJECT_FILTER, _PERIOD),
        exclusive=(("--all", "--user", "--project"),),
        examples=("/runctl cost", "/runctl cost --project llama --period week"),
    ),
    VerbSpec(
        name="report",
        summary="post the team report in this channel now",
        group="Money and reports",
        role=Role.USER,
        mutating=False,
        build=lambda b: ReportCommand(),
        examples=("/runctl report",),
    ),
    VerbSpec(
        name="subscribe",
        summary="post the report in a channel every day or week",
        group="Money and reports",
        role=Role.ADMIN,
        mutating=True,
        build=_build_subscribe,
        synopsis="[#channel] daily|weekly [<day>] <HH:MM> [<time zone>]",
        examples=(
            "/runctl subscribe daily 09:00 Europe/London",
            "/runctl subscribe #ml-team weekly mon 09:00",
        ),
        aliases=("sub",),
        notes=("The channel defaults to this one, the time zone to yours; days are mon … sun.",),
    ),
    VerbSpec(
        name="unsubscribe",
        summary="stop a channel's scheduled reports",
        group="Money and reports",
        role=Role.ADMIN,
        mutating=True,
        build=_build_unsubscribe,
        synopsis="[#channel] [daily|weekly]",
        examples=("/runctl unsubscribe", "/runctl unsubscribe #ml-team weekly"),
        aliases=("unsub",),
        notes=("Without daily or weekly, both are removed.",),
    ),
    VerbSpec(
        name="cleanup plan",
        summary="which idle machines a cleanup would stop, and why (changes nothing)",
        group="Cleanup and settings",
        role=Role.USER,
        mutating=False,
        build=lambda b: CleanupPlanCommand(
            window=b.value(_WINDOW), min_age=b.value(_MIN_AGE), cpu_threshold=b.value(_CPU)
        ),
        flags=(_WINDOW, _MIN_AGE, _CPU),
        examples=("/runctl cleanup plan", "/runctl cleanup plan --window 2h --cpu-threshold 3"),
        notes=("Defaults come from the bot's configuration.",),
    ),
    VerbSpec(
        name="cleanup run",
        summary="stop the idle machines of the plan (never terminates)",
        group="Cleanup and settings",
        role=Role.ADMIN,
        mutating=True,
        build=lambda b: CleanupRunCommand(yes=b.switch(_YES)),
        flags=(_YES,),
        examples=("/runctl cleanup run",),
        notes=("Every machine is checked against the safety rules again just before it is stopped.",),
    ),
    VerbSpec(
        name="config",
        summary="the bot's settings (no secrets)",
        group="Cleanup and settings",
        role=Role.USER,
        mutating=False,
        build=lambda b: ConfigCommand(),
        examples=("/runctl config",),
    ),
)

VERBS: Mapping[str, VerbSpec] = {spec.name: spec for spec in _SPECS}
"""Every verb by canonical name, in help order. Two-word names (`cleanup plan`) are verbs of their own."""

# Verbs with sub-verbs: the first word alone is a group.
_GROUPS: dict[str, tuple[str, ...]] = {}
for _name in VERBS:
    if " " in _name:
        _head, _sub = _name.split(" ", 1)
        _GROUPS.setdefault(_head, ())
        _GROUPS[_head] = (*_GROUPS[_head], _sub)

_ALIASES: dict[str, str] = {}
for _spec in _SPECS:
    for _word in (_spec.name, *_spec.aliases):
        _ALIASES[_word] = _spec.name
for _head in _GROUPS:
    _ALIASES[_head] = _head


def resolve_verb(word: str) -> str | None:
    """The canonical verb (or verb group, e.g. `cleanup`) for a word or an alias; None if unknown."""
    return _ALIASES.get(word.strip().lower())


def _unknown_verb_message(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), list(_ALIASES), n=1, cutoff=0.6)
    text = f"{v.quote_value(word)} is not a `{PREFIX}` command."
    if close:
        text += f" Did you mean `{_ALIASES[close[0]]}`?"
    return text + f" `{PREFIX} help` lists them all."


def _group_usage(head: str) -> str:
    subs = _GROUPS[head]
    return f"{PREFIX} {head} {'|'.join(subs)} [flags]"


# --- tokenising --------------------------------------------------------------------------------------------

# Slack wraps mentions and autolinks in angle brackets (`<@U123|alice>`, `<http://train.py|train.py>`) and
# escapes the &, < and > a person types as entities. The labels of mentions are dropped (ids are what count,
# and `<@U123>` still renders as a mention); a link becomes the text the person typed.
_MENTION_LABEL_RE = re.compile(r"<([@#][UWCG][A-Z0-9]+)\|[^<>]*>")
_LABELLED_LINK_RE = re.compile(r"<(?:https?|ftp|mailto|s3):[^<>|\s]*\|([^<>]*)>")
_BARE_LINK_RE = re.compile(r"<((?:https?|ftp|mailto|s3):[^<>|\s]*)>")
_ENTITY_RE = re.compile(r"&(lt|gt|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}
# Slack clients turn typed double quotes into typographic ones; without this, `--reason “a b”` splits in two.
_CURLY_DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})


def _tokenize(text: str) -> list[str]:
    """Shell-like words (POSIX quoting, no comments, no expansion) from a slash command's text."""
    prepared = _MENTION_LABEL_RE.sub(r"<\1>", text)
    prepared = _LABELLED_LINK_RE.sub(r"\1", prepared)
    prepared = _BARE_LINK_RE.sub(r"\1", prepared)
    prepared = prepared.translate(_CURLY_DOUBLE_QUOTES)
    lexer = shlex.shlex(prepared, posix=True)
    lexer.whitespace_split = True
    lexer.whitespace += "\u00a0"
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError as exc:
        if "quotation" in str(exc):
            raise _Problem("A quote is not closed: every `\"` or `'` needs a partner.") from None
        raise _Problem("The text ends with a lone backslash.") from None
    return [_ENTITY_RE.sub(lambda m: _ENTITIES[m.group(1)], word) for word in words]


# --- parsing -----------------------------------------------------------------------------------------------

_HELP_FLAGS = frozenset({"--help", "-h"})
_GENERIC_USAGE = f"{PREFIX} <verb> [arguments] [--flags]"


def parse(text: str, now: datetime | None = None, *, tz: tzinfo | None = None) -> Command | ParseError:
    """Parse the text after `/runctl`. Empty text is a request for help.

    `now` (timezone-aware) lets `keep` check that a date is in the future and within bounds; `tz` is the zone
    for dates typed without an offset (default: now's zone, else UTC).
    """
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ValueError("now must be timezone-aware")
    zone: tzinfo = tz if tz is not None else (now.tzinfo if now is not None and now.tzinfo else UTC)
    try:
        words = _tokenize(text)
    except _Problem as problem:
        first = text.split(maxsplit=1)[0] if text.split() else ""
        name = resolve_verb(first)
        return _error(name, problem.message)
    if not words:
        return HelpCommand()
    name = resolve_verb(words[0])
    if name is None:
        return ParseError(None, _unknown_verb_message(words[0]), _GENERIC_USAGE, f"{PREFIX} help")
    rest = words[1:]
    if name in _GROUPS:
        subs = _GROUPS[name]
        if not rest or rest[0] in _HELP_FLAGS:
            if rest:
                return HelpCommand(topic=name)
            return _error(name, f"Say which: {' or '.join(f'`{name} {s}`' for s in subs)}.")
        sub = f"{name} {rest[0].lower()}"
        if sub not in VERBS:
            close = difflib.get_close_matches(rest[0].lower(), subs, n=1)
            hint = f" Did you mean `{name} {close[0]}`?" if close else ""
            return _error(name, f"{v.quote_value(rest[0])} is not part of `{name}`.{hint}")
        name, rest = sub, rest[1:]
    spec = VERBS[name]
    try:
        return _parse_verb(spec, rest, now, zone)
    except _Problem as problem:
        return _error(name, problem.message)
    except ValidationError as error:
        return _error(name, error.message)


def _error(name: str | None, message: str) -> ParseError:
    if name is None:
        return ParseError(None, message, _GENERIC_USAGE, f"{PREFIX} help")
    if name in _GROUPS:
        first = VERBS[f"{name} {_GROUPS[name][0]}"]
        return ParseError(name, message, _group_usage(name), first.examples[0])
    spec = VERBS[name]
    return ParseError(name, message, spec.usage, spec.examples[0])


def _parse_verb(spec: VerbSpec, words: list[str], now: datetime | None, tz: tzinfo) -> Command:
    if "--" in words:
        cut = words.index("--")
        words, script = words[:cut], tuple(words[cut + 1 :])
        if not spec.script_args:
            raise _Problem(f"`--` starts script arguments, which only `train` takes; `{spec.name}` does not.")
    else:
        script = ()
    if spec.name != "help" and any(word in _HELP_FLAGS for word in words):
        return HelpCommand(topic=spec.name)

    positionals: list[str] = []
    options: dict[str, list[Any]] = {}
    switches: set[str] = set()
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or word == "-" or spec.name == "help":
            positionals.append(word)
            continue
        name, has_value, inline = word.partition("=")
        flag = spec.flag(name)
        if flag is None:
            raise _Problem(_unknown_flag_message(spec, name))
        if isinstance(flag, Switch):
            if has_value:
                raise _Problem(f"`{flag.name}` takes no value.")
            if flag.name in switches:
                raise _Problem(f"`{flag.name}` is given twice.")
            switches.add(flag.name)
            continue
        if has_value:
            raw = inline
        elif index < len(words) and not words[index].startswith("--"):
            raw = words[index]
            index += 1
        else:
            raise _Problem(
                f"`{flag.name}` needs a value ({flag.metavar}); "
                f'to pass one that starts with `--`, write `{flag.name}="…"`.'
            )
        if flag.name in options and not flag.repeatable:
            raise _Problem(f"`{flag.name}` is given twice.")
        options.setdefault(flag.name, []).append(flag.convert(raw))

    given = switches | set(options)
    for group in spec.exclusive:
        clash = [name for name in group if name in given]
        if len(clash) > 1:
            raise _Problem(f"{' and '.join(f'`{n}`' for n in clash)} can't be used together; choose one.")

    bound_positionals = {} if spec.raw_args else _bind(spec, positionals)
    bound = _Bound(
        bound_positionals,
        options,
        switches,
        tuple(positionals) if spec.raw_args else (),
        script,
        now,
        tz,
    )
    return spec.build(bound)


def _bind(spec: VerbSpec, words: list[str]) -> dict[str, list[Any]]:
    bound: dict[str, list[Any]] = {}
    remaining = list(words)
    for arg in spec.args:
        if not remaining:
            raise _Problem(f"Missing `{arg.name}`: {arg.help}.")
        taken, remaining = (remaining, []) if arg.many else (remaining[:1], remaining[1:])
        bound[arg.name] = [arg.convert(word) for word in taken]
    if remaining:
        what = v.quote_value(remaining[0])
        if spec.args:
            raise _Problem(f"Unexpected {what}: `{spec.name}` takes {_count_args(spec)}.")
        raise _Problem(f"Unexpected {what}: `{spec.name}` takes no arguments.")
    return bound


def _count_args(spec: VerbSpec) -> str:
    return " and ".join(f"`{_escape(arg.synopsis)}`" for arg in spec.args)


def _unknown_flag_message(spec: VerbSpec, name: str) -> str:
    known = [flag.name for flag in spec.flags] + [alias for flag in spec.flags for alias in flag.aliases]
    text = f"{v.quote_value(name)} is not a flag of `{spec.name}`."
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        canonical = spec.flag(close[0])
        text += f" Did you mean `{canonical.name if canonical else close[0]}`?"
    elif not spec.flags:
        text += f" `{spec.name}` takes no flags."
    return text


# --- help --------------------------------------------------------------------------------------------------

_ROLE_TEXT = {
    Role.USER: "any user",
    Role.APPROVER: "approvers and admins",
    Role.ADMIN: "admins only",
}


def _overview() -> str:
    lines = [
        f"*`{PREFIX}`* runs the team's training machines from Slack. "
        f"`{PREFIX} help <verb>` explains one verb in detail.",
    ]
    group = None
    for spec in _SPECS:
        if spec.name == "help":
            continue
        if spec.group != group:
            group = spec.group
            lines.append(f"\n*{group}*")
        head = " ".join(
            [spec.name, *([spec.synopsis] if spec.synopsis else []), *(a.synopsis for a in spec.args)]
        )
        admin = " _(admin)_" if spec.role is Role.ADMIN else ""
        lines.append(f"• `{head}` - {spec.summary}{admin}")
    lines.append(
        "\n*Who*: every user may run the read-only verbs and change their own machines and jobs; "
        "terminating waits for an approver's click; _(admin)_ verbs are for admins."
    )
    return "\n".join(lines)


def _verb_help(spec: VerbSpec) -> str:
    lines = [f"*{PREFIX} {spec.name}* - {spec.summary}", f"Usage: `{spec.usage}`"]
    if spec.aliases and spec.name != "help":
        lines.append("Also: " + ", ".join(f"`{alias}`" for alias in spec.aliases))
    for arg in spec.args:
        lines.append(f"• `{arg.synopsis}` - {arg.help}")
    for flag in spec.flags:
        names = ", ".join(f"`{n}`" for n in (_flag_synopsis(flag), *flag.aliases))
        default = f" (default: {flag.default})" if isinstance(flag, Option) and flag.default else ""
        lines.append(f"• {names} - {flag.help}{default}")
    if spec.script_args:
        lines.append("• `-- <script args>…` - passed to your script verbatim, as data")
    for group in spec.exclusive:
        lines.append(" or ".join(f"`{name}`" for name in group) + ": choose one.")
    lines.extend(spec.notes)
    kind = "changes things" if spec.mutating else "read-only"
    lines.append(f"Who: {_ROLE_TEXT[spec.role]} ({kind}).")
    lines.append("Examples: " + "  ".join(f"`{example}`" for example in spec.examples))
    return "\n".join(lines)


def help_text(verb: str | None = None) -> str:
    """The overview, or one verb's help (aliases and groups like `cleanup` accepted); Slack mrkdwn.

    Raises `KeyError` for a word that is not a verb: the parser reports unknown verbs before calling this.
    """
    if verb is None:
        return _escape(_overview())
    name = resolve_verb(verb)
    if name is None:
        raise KeyError(verb)
    if name in _GROUPS:
        return _escape("\n\n".join(_verb_help(VERBS[f"{name} {sub}"]) for sub in _GROUPS[name]))
    return _escape(_verb_help(VERBS[name]))
