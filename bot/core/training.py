"""Training jobs on a machine: the bash scripts the bot sends with SSM, and the reading of what they print.

Pure: the scripts are rendered from templates shipped in `bot/core/templates`, and their output is parsed
here; the training service sends them (`Provider.run_command`) and keeps the job rows.

What this fixes from runctl's `aws train` (reference §1.2, §8.2 item 8):
- Success is `exit_code == 0` and nothing else; a process that vanished without an exit code has failed.
- No user text is concatenated into shell: every value goes through `shlex.quote` into a bash assignment or
  array, and the scripts keep it as data from there on (NUL-separated files, `export -- "$item"`,
  `"${args[@]}"`), so it reaches the training script's argv and environment verbatim.
- `--data` is downloaded before the training starts, and `--output` uploaded (with the checkpoints) when
  it exits, whatever its exit code.
- Every path on the machine is absolute, under `/var/lib/runctl/jobs/<job id>/` (or `$RUNCTL_JOBS_DIR`).

The machine needs bash (4.4 or later), GNU coreutils, util-linux `setsid`, `tar`, a `python3` with the venv
module, and the AWS CLI on PATH (v2, or v1 from 1.29, which honour `AWS_ENDPOINT_URL`) with S3 access
through the instance profile. Send each script as the whole of one `AWS-RunShellScript` command: it starts
with `#!/bin/bash`, which is what makes the SSM agent's `sh -c <file>` run it with bash.

On the machine the job directory holds the job's configuration (`spec`, `args`, `env`), `runner.sh`,
`train.log` and one file per fact: `pid`, `boot_id`, `started_at`, `phase`, `train_pid`, `error`,
`sync_error`, `cancelled`, `finished_at` and `exit_code` (written last). The code is in `code/`; the
training's `RUNCTL_OUTPUT`, `RUNCTL_CHECKPOINT` and `RUNCTL_DATA` are `output/`, `checkpoints/` and `data/`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources

from bot.core import validation as v
from bot.core.commands import LOG_LINES_MAX, MAX_ENV, MAX_SCRIPT_ARGS, TrainCommand
from bot.core.validation import S3Uri, ValidationError

__all__ = [
    "DEFAULT_CHECKPOINT_SYNC_SECONDS",
    "DEFAULT_GRACE_SECONDS",
    "JOBS_DIR",
    "JOBS_DIR_ENV",
    "LOG_BYTES_MAX",
    "SLACK_CODE_LIMIT",
    "STATUS_LOG_BYTES",
    "STATUS_LOG_LINES",
    "CancelResult",
    "CodeForm",
    "JobObservation",
    "JobOutcome",
    "JobState",
    "LaunchReport",
    "LogTail",
    "TrainingRequest",
    "cancel_script",
    "classify",
    "code_form",
    "explain",
    "launch_script",
    "logs_script",
    "parse_cancel",
    "parse_launch",
    "parse_logs",
    "parse_status",
    "slack_log_block",
    "status_script",
]

JOBS_DIR = "/var/lib/runctl/jobs"
JOBS_DIR_ENV = "RUNCTL_JOBS_DIR"
DEFAULT_GRACE_SECONDS = 30
MAX_GRACE_SECONDS = 600
DEFAULT_CHECKPOINT_SYNC_SECONDS = 300
MIN_CHECKPOINT_SYNC_SECONDS = 1
MAX_CHECKPOINT_SYNC_SECONDS = 86_400
# SSM keeps the first 24,000 characters of a command's output; base64 grows text by 4/3.
LOG_BYTES_MAX = 16_000
STATUS_LOG_LINES = 20
STATUS_LOG_BYTES = 2_000
# Slack shows up to 3,000 characters in one section; a little is left for the words around the block.
SLACK_CODE_LIMIT = 2_900

_TEMPLATES = "bot.core.templates"
_RUNNER_END = "RUNCTL_RUNNER_EOF"
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
_PYTHON_RE = re.compile(r"[A-Za-z0-9_./+][A-Za-z0-9_./+-]{0,255}")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# --- the request ---------------------------------------------------------------------------------------


class CodeForm(StrEnum):
    """How the code is fetched: one `.tar.gz` object unpacked, or every object under a prefix."""

    ARCHIVE = "archive"
    PREFIX = "prefix"


_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def code_form(uri: S3Uri) -> CodeForm:
    """Decided here, not on the machine, so a code URI of neither form is refused before anything runs."""
    if uri.is_prefix:
        return CodeForm.PREFIX
    if uri.key.endswith(_ARCHIVE_SUFFIXES):
        return CodeForm.ARCHIVE
    raise ValidationError(
        "code",
        str(uri),
        "is neither a .tar.gz object nor a prefix",
        "end a prefix with /, e.g. s3://bucket/project/, or upload a .tar.gz",
    )


def _object_form(uri: S3Uri) -> str:
    return "prefix" if uri.is_prefix else "object"


def _as_prefix(uri: S3Uri) -> S3Uri:
    """Uploads go under a prefix; `s3://b/out` and `s3://b/out/` mean the same folder."""
    return uri if uri.is_prefix else S3Uri(uri.bucket, uri.key + "/")


@dataclass(frozen=True)
class TrainingRequest:
    """Everything the launch script needs, validated again here because it goes into a root shell.

    `requirements` None means "requirements.txt when the code has one"; a given path must exist.
    `checkpoint_uri` None means checkpoints stay on the machine. `checkpoint_sync_seconds` 0 turns off the
    uploads during training (checkpoints are still uploaded when the training exits).
    """

    job_id: str
    code_uri: S3Uri
    entry: str = "train.py"
    requirements: str | None = None
    data_uri: S3Uri | None = None
    output_uri: S3Uri | None = None
    env: tuple[tuple[str, str], ...] = ()
    script_args: tuple[str, ...] = ()
    checkpoint_uri: S3Uri | None = None
    resume_from: S3Uri | None = None
    python: str = "python3"
    checkpoint_sync_seconds: int = DEFAULT_CHECKPOINT_SYNC_SECONDS

    def __post_init__(self) -> None:
        if v.job_id(self.job_id) != self.job_id:
            raise ValidationError("job", self.job_id, "is not in canonical form", "lower case, no spaces")
        code_form(self.code_uri)
        object.__setattr__(self, "entry", v.relative_path(self.entry, field="entry"))
        if self.requirements is not None:
            object.__setattr__(self, "requirements", v.relative_path(self.requirements, field="requirements"))
        if self.output_uri is not None:
            object.__setattr__(self, "output_uri", _as_prefix(self.output_uri))
        if self.checkpoint_uri is not None:
            object.__setattr__(self, "checkpoint_uri", _as_prefix(self.checkpoint_uri))
        if len(self.env) > MAX_ENV:
            raise ValidationError("env", f"{len(self.env)} values", f"is more than {MAX_ENV} variables")
        keys = [key for key, _ in self.env]
        if len(set(keys)) != len(keys):
            raise ValidationError("env", ", ".join(keys), "sets a variable twice")
        for key, value in self.env:
            if v.env_assignment(f"{key}={value}") != (key, value):
                raise ValidationError("env", key, "is not a valid variable name")
        if len(self.script_args) > MAX_SCRIPT_ARGS:
            raise ValidationError(
                "script arguments", f"{len(self.script_args)}", f"is more than {MAX_SCRIPT_ARGS} arguments"
            )
        for arg in self.script_args:
            v.script_arg(arg)
        for text in (*self.script_args, *(value for _, value in self.env)):
            if not _encodable(text):
                raise ValidationError("text", text, "is not valid Unicode text (a lone surrogate)")
        if not _PYTHON_RE.fullmatch(self.python):
            raise ValidationError("python", self.python, "is not a command name or an absolute path")
        seconds = self.checkpoint_sync_seconds
        if seconds != 0 and not MIN_CHECKPOINT_SYNC_SECONDS <= seconds <= MAX_CHECKPOINT_SYNC_SECONDS:
            raise ValidationError(
                "checkpoint sync",
                str(seconds),
                "is out of range",
                f"0 (off) or {MIN_CHECKPOINT_SYNC_SECONDS}-{MAX_CHECKPOINT_SYNC_SECONDS} seconds",
            )

    @classmethod
    def from_command(
        cls,
        command: TrainCommand,
        job_id: str,
        *,
        checkpoint_base: S3Uri | None = None,
        resume_from: S3Uri | None = None,
        python: str = "python3",
        checkpoint_sync_seconds: int = DEFAULT_CHECKPOINT_SYNC_SECONDS,
    ) -> TrainingRequest:
        """Checkpoints go to `<output>/checkpoints/`, else `<checkpoint_base>/<job id>/`, else nowhere."""
        output = _as_prefix(command.output) if command.output is not None else None
        if output is not None:
            checkpoint: S3Uri | None = S3Uri(output.bucket, output.key + "checkpoints/")
        elif checkpoint_base is not None:
            base = _as_prefix(checkpoint_base)
            checkpoint = S3Uri(base.bucket, f"{base.key}{job_id}/")
        else:
            checkpoint = None
        return cls(
            job_id=job_id,
            code_uri=command.code,
            entry=command.entry,
            requirements=command.requirements,
            data_uri=command.data,
            output_uri=output,
            env=command.env,
            script_args=command.script_args,
            checkpoint_uri=checkpoint,
            resume_from=resume_from,
            python=python,
            checkpoint_sync_seconds=checkpoint_sync_seconds,
        )

    @property
    def code_form(self) -> CodeForm:
        return code_form(self.code_uri)

    @property
    def argv(self) -> tuple[str, ...]:
        """The arguments the entry script receives: the user's, then `--resume-from` when resuming."""
        if self.resume_from is None:
            return self.script_args
        return (*self.script_args, "--resume-from", str(self.resume_from))


def _encodable(text: str) -> bool:
    """Lone surrogates (which JSON can carry) cannot become UTF-8, so they could never reach the machine."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- rendering -----------------------------------------------------------------------------------------


@functools.cache
def _template(name: str) -> str:
    return resources.files(_TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def _word(value: str | int) -> str:
    return shlex.quote(str(value))


def _words(values: Iterable[str]) -> str:
    return " ".join(shlex.quote(value) for value in values)


def _render(name: str, words: Mapping[str, str]) -> str:
    """Fill `@@NAME@@` placeholders in one pass (inserted text is not scanned again).

    `words` must already be shell words, or our own static text (the runner, the shared helpers). A
    placeholder without a value, or a value without a placeholder, is a programming error and raises rather
    than sending a half-made script to a machine.
    """
    text = _template(name)
    values = {"LIB": _template("job_lib.sh").rstrip("\n"), **words}
    wanted = set(_PLACEHOLDER.findall(text))
    missing = wanted - values.keys()
    unused = set(words) - wanted
    if missing or unused:
        raise RuntimeError(f"template {name}: missing {sorted(missing)}, unused {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def launch_script(request: TrainingRequest) -> str:
    """The SSM command that starts the job and answers at once with `RUNCTL_JOB_STARTED` or `…_REFUSED`."""
    runner = _template("job_runner.sh").rstrip("\n")
    if re.search(rf"^{_RUNNER_END}$", runner, flags=re.MULTILINE):
        raise RuntimeError("job_runner.sh contains its own heredoc terminator")
    optional = {
        "REQUIREMENTS": request.requirements or "",
        "DATA_URI": str(request.data_uri) if request.data_uri else "",
        "DATA_FORM": _object_form(request.data_uri) if request.data_uri else "",
        "OUTPUT_URI": str(request.output_uri) if request.output_uri else "",
        "CHECKPOINT_URI": str(request.checkpoint_uri) if request.checkpoint_uri else "",
        "RESUME_FROM": str(request.resume_from) if request.resume_from else "",
        "RESUME_FORM": _object_form(request.resume_from) if request.resume_from else "",
    }
    words = {
        "JOB_ID": _word(request.job_id),
        "PYTHON": _word(request.python),
        "CODE_URI": _word(str(request.code_uri)),
        "CODE_FORM": _word(request.code_form.value),
        "ENTRY": _word(request.entry),
        "CHECKPOINT_SYNC_SECONDS": _word(request.checkpoint_sync_seconds),
        "SCRIPT_ARGS": _words(request.script_args),
        "ENV": _words(f"{key}={value}" for key, value in request.env),
        **{name: _word(value) for name, value in optional.items()},
        "RUNNER": runner,
    }
    return _render("train_launch.sh", words)


def _job_ids(job_ids: Iterable[str]) -> list[str]:
    checked = [v.job_id(job) for job in job_ids]
    return list(dict.fromkeys(checked))


def status_script(
    job_ids: Iterable[str], *, log_lines: int = STATUS_LOG_LINES, log_bytes: int = STATUS_LOG_BYTES
) -> str:
    """One `RUNCTL_JOB` line per job id; ids not on the machine answer `state=missing`.

    The same script can go to many machines at once (each reports the ids it has); keep
    `len(job_ids) * log_bytes * 4/3` well under SSM's 24,000-character output limit.
    """
    ids = _job_ids(job_ids)
    if not ids:
        raise ValueError("status_script needs at least one job id")
    words = {
        "JOB_IDS": _words(ids),
        "LOG_LINES": _word(_clamp(log_lines, 1, LOG_LINES_MAX)),
        "LOG_BYTES": _word(_clamp(log_bytes, 0, LOG_BYTES_MAX)),
    }
    return _render("job_status.sh", words)


def cancel_script(job_id: str, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> str:
    """SIGTERM to the job's process group, `grace_seconds` to exit, then SIGKILL (runctl's graceful stop)."""
    words = {
        "JOB_ID": _word(v.job_id(job_id)),
        "GRACE_SECONDS": _word(_clamp(grace_seconds, 0, MAX_GRACE_SECONDS)),
    }
    return _render("job_cancel.sh", words)


def logs_script(job_id: str, lines: int) -> str:
    """The last `lines` lines (clamped to 1-500) of the job's log, at most `LOG_BYTES_MAX` bytes of them."""
    words = {
        "JOB_ID": _word(v.job_id(job_id)),
        "LINES": _word(_clamp(lines, 1, LOG_LINES_MAX)),
        "MAX_BYTES": _word(LOG_BYTES_MAX),
    }
    return _render("job_logs.sh", words)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# --- reading the answers -------------------------------------------------------------------------------


def _fields(line: str, marker: str) -> dict[str, str] | None:
    """`MARKER k=v k=v … end=1` as a dict; None for any other line, including one cut short by SSM."""
    parts = line.strip().split(" ")
    if len(parts) < 2 or parts[0] != marker or parts[-1] != "end=1":
        return None
    fields: dict[str, str] = {}
    for part in parts[1:-1]:
        key, sep, value = part.partition("=")
        if not sep or key in fields:
            return None
        fields[key] = value
    return fields


def _int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _text(encoded: str) -> str:
    """Decoded base64; raises ValueError on anything that is not clean base64."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


@dataclass(frozen=True)
class LaunchReport:
    """What the launch script answered: started with the runner's pid, or refused with a reason code."""

    job_id: str
    started: bool
    pid: int | None = None
    reason: str | None = None


_LAUNCH_RE = re.compile(
    r"RUNCTL_JOB_(?:STARTED job=(?P<job>\S+) pid=(?P<pid>[0-9]+)"
    r"|REFUSED job=(?P<rjob>\S+) reason=(?P<reason>[a-z-]+))"
)


def parse_launch(stdout: str) -> LaunchReport | None:
    """None when the output holds no answer (the script never ran, or SSM lost its output)."""
    for line in reversed(stdout.splitlines()):
        match = _LAUNCH_RE.fullmatch(line.strip())
        if match is None:
            continue
        try:
            if match.group("job") is not None:
                return LaunchReport(v.job_id(match.group("job")), started=True, pid=int(match.group("pid")))
            return LaunchReport(v.job_id(match.group("rjob")), started=False, reason=match.group("reason"))
        except ValidationError:
            continue
    return None


class JobState(StrEnum):
    """What the machine says: the runner is alive (or was launched seconds ago and is starting), it has
    ended (with or without an exit code), or the machine has no such job."""

    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


class JobOutcome(StrEnum):
    """The job's verdict; the values are the job row's statuses. `LOST` for a vanished machine is the
    caller's to decide: this module only sees machines that answered."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


@dataclass(frozen=True)
class JobObservation:
    """One job as the status script saw it. `alive` is the runner process (checked against the boot and its
    command line, not just the pid); `restarted` says the machine rebooted since the job started; `phase` is
    starting, setup, training, syncing or done."""

    job_id: str
    state: JobState
    alive: bool = False
    pid: int | None = None
    exit_code: int | None = None
    phase: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled: bool = False
    restarted: bool = False
    sync_error: str | None = None
    error: str | None = None
    log_tail: str = ""

    def duration(self, now: datetime) -> timedelta | None:
        """From the runner's start to its end, or to `now` while it runs or when no end was recorded."""
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at


_PHASE_RE = re.compile(r"[a-z]{1,16}")
_STATUS_KEYS = frozenset(
    {
        "job",
        "state",
        "alive",
        "pid",
        "exit_code",
        "phase",
        "started_at",
        "finished_at",
        "cancelled",
        "restarted",
        "sync_error",
        "error",
        "log",
    }
)


def _observation(fields: Mapping[str, str]) -> JobObservation | None:
    if set(fields) != _STATUS_KEYS:
        return None
    try:
        job = v.job_id(fields["job"])
        state = JobState(fields["state"])
        sync_error = _text(fields["sync_error"]).strip()
        error = _text(fields["error"]).strip()
        log_tail = _text(fields["log"])
    except ValueError:
        return None
    return JobObservation(
        job_id=job,
        state=state,
        alive=fields["alive"] == "1",
        pid=_int(fields["pid"]),
        exit_code=_int(fields["exit_code"]),
        phase=fields["phase"] if _PHASE_RE.fullmatch(fields["phase"]) else None,
        started_at=_timestamp(fields["started_at"]),
        finished_at=_timestamp(fields["finished_at"]),
        cancelled=fields["cancelled"] == "1",
        restarted=fields["restarted"] == "1",
        sync_error=sync_error or None,
        error=error or None,
        log_tail=log_tail,
    )


def parse_status(stdout: str) -> dict[str, JobObservation]:
    """Observations by job id. Lines that are not whole, well-formed `RUNCTL_JOB` lines are left out, so a
    job missing from the result means "not known this time", never "failed"."""
    observations: dict[str, JobObservation] = {}
    for line in stdout.splitlines():
        fields = _fields(line, "RUNCTL_JOB")
        if fields is None:
            continue
        observation = _observation(fields)
        if observation is not None:
            observations[observation.job_id] = observation
    return observations


def classify(observation: JobObservation) -> JobOutcome:
    """Succeeded only on exit code 0; failed on any other code, or when the runner is gone without one.

    The exit code is written last (after the uploads), so once it is there the job is over."""
    if observation.state is JobState.MISSING:
        # The machine answered but has no record of the job (a replaced root volume, a wiped directory):
        # whether it ran cannot be known, which is what LOST means.
        return JobOutcome.LOST
    if observation.exit_code is not None:
        if observation.cancelled:
            return JobOutcome.CANCELLED
        return JobOutcome.SUCCEEDED if observation.exit_code == 0 else JobOutcome.FAILED
    if observation.state is JobState.RUNNING:
        return JobOutcome.RUNNING
    # Gone without an exit code: killed, crashed with the machine, or never started.
    return JobOutcome.CANCELLED if observation.cancelled else JobOutcome.FAILED


_PHASE_WORDS = {
    "starting": "starting",
    "setup": "setting up (downloading, installing)",
    "training": "training",
    "syncing": "uploading the output and checkpoints",
}


def explain(observation: JobObservation) -> str:
    """One plain-text sentence for the job's thread; the Slack layer escapes it."""
    outcome = classify(observation)
    if outcome is JobOutcome.LOST:
        return "the machine has no record of this job"
    if outcome is JobOutcome.RUNNING:
        return _PHASE_WORDS.get(observation.phase or "", "running")
    code = observation.exit_code
    if outcome is JobOutcome.CANCELLED:
        text = "cancelled" if code is None else f"cancelled (exit code {code})"
    elif outcome is JobOutcome.SUCCEEDED:
        text = "finished with exit code 0"
    elif code is None:
        text = "the process is gone without an exit code"
        if observation.restarted:
            text += " (the machine restarted)"
    else:
        text = f"failed with exit code {code}"
    if observation.error and outcome is not JobOutcome.SUCCEEDED:
        text += f": {observation.error}"
    if observation.sync_error:
        text += f"; {observation.sync_error.rstrip('; ')}"
    return text


class CancelResult(StrEnum):
    MISSING = "missing"  # no such job on the machine
    NOT_RUNNING = "not-running"  # it had already ended
    FINISHING = "finishing"  # the training had ended; its output is being uploaded, so nothing was stopped
    TERMINATED = "terminated"  # it ended within the grace period after SIGTERM
    KILLED = "killed"  # it needed SIGKILL


_CANCEL_RE = re.compile(r"RUNCTL_CANCEL job=(?P<job>\S+) result=(?P<result>[a-z-]+)")


def parse_cancel(stdout: str) -> CancelResult | None:
    for line in reversed(stdout.splitlines()):
        match = _CANCEL_RE.fullmatch(line.strip())
        if match is not None:
            try:
                return CancelResult(match.group("result"))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class LogTail:
    """`size` is the whole log's size in bytes (None when unknown), so callers can say how much is older."""

    job_id: str
    found: bool
    text: str = ""
    size: int | None = None


def parse_logs(stdout: str) -> LogTail | None:
    for line in reversed(stdout.splitlines()):
        fields = _fields(line, "RUNCTL_LOG")
        if fields is None or set(fields) != {"job", "found", "size", "data"}:
            continue
        try:
            job = v.job_id(fields["job"])
            text = _text(fields["data"])
        except ValueError:
            continue
        return LogTail(job, found=fields["found"] == "1", text=text, size=_int(fields["size"]))
    return None


# --- Slack ----------------------------------------------------------------------------------------------


_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _escape(text: str) -> str:
    # Slack reads <…> as links and mentions even in code blocks; three backticks would end the block early.
    escaped = "".join(_ESCAPES.get(char, char) for char in text)
    while "```" in escaped:
        escaped = escaped.replace("```", "``\u200b`")
    return escaped


def _escaped_size_bound(char: str) -> int:
    # A backtick may gain a zero-width space in `_escape`; counting it as two keeps the bound safe.
    return 2 if char == "`" else len(_ESCAPES.get(char, char))


def slack_log_block(text: str, *, limit: int = SLACK_CODE_LIMIT) -> str:
    """The end of `text` as a Slack code block, the whole answer at most `limit` characters.

    A log's end says how the job went, so the start is what is cut, at line boundaries when possible, and a
    first line says how many lines and characters were left out.
    """
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    if lines == [""]:
        return "_The log is empty._"
    fence_open, fence_close = "```\n", "\n```"
    whole = "\n".join(lines)
    budget = limit - len(fence_open) - len(fence_close) - len(_cut_note(len(lines), len(whole))) - 1
    if budget <= 0:
        raise ValueError(f"limit {limit} leaves no room for any log text")
    kept: list[str] = []  # raw lines, last first
    used = 0
    for line in reversed(lines):
        size = len(_escape(line)) + (1 if kept else 0)
        if used + size > budget:
            if not kept:
                kept.append(_tail_within(line, budget))
            break
        kept.append(line)
        used += size
    kept.reverse()
    shown = "\n".join(kept)
    block = f"{fence_open}{_escape(shown)}{fence_close}"
    cut_chars = len(whole) - len(shown)
    if cut_chars == 0:
        return block
    return f"{_cut_note(len(lines) - len(kept), cut_chars)}\n{block}"


def _tail_within(line: str, budget: int) -> str:
    """The longest end of one over-long line whose escaped form fits `budget`."""
    used = 0
    start = len(line)
    while start > 0 and used + _escaped_size_bound(line[start - 1]) <= budget:
        start -= 1
        used += _escaped_size_bound(line[start])
    return line[start:]


def _cut_note(lines: int, chars: int) -> str:
    return f"… {lines} earlier line{'s' if lines != 1 else ''} ({chars} characters) not shown"
