"""Messages for training jobs: the job's card, its thread updates, and the answers to logs, jobs and
checkpoints. Plain Block Kit dicts within Slack's limits; user text (paths, URIs, errors) is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.core.safety import format_duration
from bot.core.training import LogTail, slack_log_block
from bot.views import blocks as bk
from bot.views.common import mention, money
from storage.models import JobStatus, TrainingJob

RESUME_SPOT = "training_resume_spot"

Message = tuple[str, list[bk.Block]]

STATUS_ICON: dict[str, str] = {
    JobStatus.STARTING: ":hourglass_flowing_sand:",
    JobStatus.RUNNING: ":large_blue_circle:",
    JobStatus.SUCCEEDED: ":white_check_mark:",
    JobStatus.FAILED: ":x:",
    JobStatus.CANCELLED: ":heavy_multiplication_x:",
    JobStatus.LOST: ":black_circle:",
}

# A list is read, not scrolled: past this many rows the answer says how many more there are.
MAX_ROWS = 25
# Longest user-given value (a URI, a path) shown whole; S3 keys may be 1,024 characters, and a card with a
# few of those would crowd out everything else. The whole value stays in the job's row and operation.
_VALUE_LIMIT = 400


def icon(status: str) -> str:
    return STATUS_ICON.get(status, "")


def code(value: str | None, *, limit: int = _VALUE_LIMIT) -> str:
    """A value as inline code that cannot format, mention or link anything, and cannot end the code span."""
    if value is None or value == "":
        return "—"
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    shown = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    shown = "".join(ch if ch.isprintable() else "?" for ch in shown)
    return f"`{shown}`"


def plain(text: str) -> str:
    """Free text from a machine or an error, escaped for mrkdwn so it cannot link or mention anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def duration_text(delta: timedelta | None) -> str:
    """Seconds for short jobs (a failed setup ends in seconds), minutes and hours above."""
    if delta is None:
        return "unknown"
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    return format_duration(delta)


def size_text(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def ago(when: datetime, now: datetime) -> str:
    delta = now - when
    if delta < timedelta(seconds=60):
        return "just now"
    return f"{format_duration(delta)} ago"


def cost_text(cost: Decimal | None, hourly: float | None, instance_type: str | None) -> str:
    if cost is None or hourly is None:
        what = f" for {instance_type}" if instance_type else ""
        return f"unknown (no price{what})"
    return f"{money(cost)} at {money(hourly, per_hour=True)}"


# --- the job's own message ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCard:
    """What the job's message shows besides the row itself."""

    status: str
    detail: str = ""
    instance_type: str | None = None
    requirements: str | None = None
    resume_from: str | None = None


def job_card(job: TrainingJob, card: JobCard) -> Message:
    """The job's top-level message: what runs where, and its state (updated in place when it ends)."""
    where = f"`{job.instance_id}`" + (f" ({card.instance_type})" if card.instance_type else "")
    state = f"*{card.status}*" + (f" — {plain(card.detail)}" if card.detail else "")
    text = f"Training job {job.id} on {job.instance_id}: {card.status}"
    fields = [
        f"*Code*\n{code(job.code_uri)}",
        f"*Entry*\n{code(job.entry)}",
        f"*Output*\n{code(job.output_uri) if job.output_uri else '_none: it stays on the machine_'}",
        f"*Owner*\n{mention(job.owner)}",
    ]
    if job.data_uri:
        fields.append(f"*Data*\n{code(job.data_uri)}")
    if card.requirements:
        fields.append(f"*Requirements*\n{code(card.requirements)}")
    if job.args:
        fields.append(f"*Arguments*\n{len(job.args)} script argument{'s' if len(job.args) != 1 else ''}")
    if job.env:
        fields.append(f"*Environment*\n{', '.join(code(k, limit=60) for k in sorted(job.env))}")
    if job.resumed_from:
        fields.append(
            f"*Resumed from*\n`{job.resumed_from}`"
            + (f" at {code(card.resume_from)}" if card.resume_from else "")
        )
    if job.auto_resume:
        fields.append("*Auto-resume*\non (after a spot interruption)")
    body: list[bk.Block] = [
        bk.section(f"{icon(card.status)} *Training job* `{job.id}` on {where} · {state}"),
        bk.fields_section(fields),
        bk.context(_card_hint(job, card.status)),
    ]
    return text, body


def _card_hint(job: TrainingJob, status: str) -> str:
    if status in (JobStatus.STARTING, JobStatus.RUNNING):
        return (
            f"Updates follow in this thread · `/runctl logs {job.id}` · `/runctl cancel {job.id}` · "
            f"`/runctl checkpoints {job.id}`"
        )
    hint = f"How it went is in this thread · `/runctl logs {job.id}`"
    if job.output_uri:
        hint += f" · `/runctl checkpoints {job.id}` · `/runctl resume {job.id}`"
    return hint


# --- thread updates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobEnd:
    """How a job ended, for its thread: the verdict sentence, how long it ran, what it cost, the log tail."""

    status: str
    sentence: str
    duration: timedelta | None
    cost: Decimal | None
    hourly: float | None
    instance_type: str | None
    exit_code: int | None = None
    log_tail: str | None = None  # None: no log could be read (the machine is gone)


_VERB: dict[str, str] = {
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "was cancelled",
    JobStatus.LOST: "was lost",
}


def ended_verb(status: str) -> str:
    """`succeeded`, `failed`, `was cancelled`, `was lost`: how a sentence says a job ended."""
    return _VERB.get(status, status)


def job_ended(job: TrainingJob, end: JobEnd) -> Message:
    verb = ended_verb(end.status)
    text = f"Job {job.id} {verb}: {end.sentence}"
    body: list[bk.Block] = [
        bk.section(f"{icon(end.status)} Job `{job.id}` *{verb}*: {plain(end.sentence)}"),
        bk.fields_section(
            [
                f"*Ran for*\n{duration_text(end.duration)}",
                f"*Cost*\n{cost_text(end.cost, end.hourly, end.instance_type)}",
                f"*Exit code*\n{end.exit_code if end.exit_code is not None else '—'}",
                f"*Owner*\n{mention(job.owner)}",
            ]
        ),
    ]
    if end.log_tail is not None:
        body.append(bk.section("*The last lines of its log*"))
        body.append(bk.section(slack_log_block(end.log_tail)))
    elif end.status == JobStatus.LOST:
        body.append(bk.context("No log could be read: the machine is gone."))
    if end.status in (JobStatus.FAILED, JobStatus.LOST) and job.output_uri:
        body.append(
            bk.context(
                f"`/runctl checkpoints {job.id}` lists what it saved; `/runctl resume {job.id}` continues."
            )
        )
    return text, body


def spot_reclaimed(job: TrainingJob, end: JobEnd, *, note: str, offer_resume: bool) -> Message:
    """The job's spot machine was taken back by AWS: say so, and offer to resume on a new spot machine."""
    itype = end.instance_type or "machine"
    text = f"AWS reclaimed the spot {itype} {job.instance_id}; job {job.id} was lost"
    body: list[bk.Block] = [
        bk.section(
            f":warning: AWS reclaimed the spot {plain(itype)} `{job.instance_id}`: job `{job.id}` was lost "
            f"after {duration_text(end.duration)}."
        ),
        bk.fields_section(
            [
                f"*Cost*\n{cost_text(end.cost, end.hourly, end.instance_type)}",
                f"*Owner*\n{mention(job.owner)}",
            ]
        ),
    ]
    if note:
        body.append(bk.section(note))
    if offer_resume:
        body.append(
            bk.actions(
                f"training_resume:{job.id}",
                bk.button("Resume on a new spot instance", RESUME_SPOT, job.id, style="primary"),
            )
        )
    return text, body


def note(text: str, *, fallback: str | None = None) -> Message:
    """A one-section message (a thread note, a refusal, a short answer); `text` is mrkdwn already."""
    return fallback or text, [bk.section(text)]


# --- answers -----------------------------------------------------------------------------------------


def job_line(job: TrainingJob, now: datetime, *, show_owner: bool) -> str:
    parts = [
        f"{icon(job.status)} `{job.id}`",
        job.status,
        f"on `{job.instance_id}`",
        code(job.code_uri, limit=80),
    ]
    if show_owner:
        parts.append(mention(job.owner))
    if job.finished_at is not None:
        parts.append(f"ran {duration_text(job.finished_at - job.started_at)}")
        parts.append(f"ended {ago(job.finished_at, now)}")
    else:
        parts.append(f"started {ago(job.started_at, now)}")
    if job.exit_code is not None:
        parts.append(f"exit {job.exit_code}")
    if job.resumed_from:
        parts.append(f"resumes `{job.resumed_from}`")
    return " · ".join(parts)


def jobs_list(
    title: str, jobs: Sequence[TrainingJob], now: datetime, *, show_owner: bool, empty: str
) -> Message:
    active = [j for j in jobs if j.status in (JobStatus.STARTING, JobStatus.RUNNING)]
    text = f"{title}: {len(jobs)} job(s), {len(active)} running"
    if not jobs:
        return text, [bk.header(title), bk.section(empty)]
    shown = jobs[:MAX_ROWS]
    body = [bk.header(title), *bk.lines_section([job_line(j, now, show_owner=show_owner) for j in shown])]
    if len(jobs) > len(shown):
        body.append(bk.context(f"…and {len(jobs) - len(shown)} older job(s) not shown."))
    body.append(bk.context(f"{len(active)} running · `/runctl logs <job-id>` shows a job's log"))
    return text, bk.fit(body, what="jobs")


def logs_answer(job: TrainingJob, tail: LogTail, lines: int) -> Message:
    text = f"The last {lines} lines of job {job.id}"
    block = slack_log_block(tail.text)
    shown = len(tail.text.rstrip("\n").split("\n")) if tail.text.strip() else 0
    about = f"`{job.id}` on `{job.instance_id}` · {job.status}"
    if tail.size is not None:
        about += f" · the whole log is {size_text(tail.size)}"
    body = [
        bk.section(f"*The last {min(shown, lines)} line{'s' if shown != 1 else ''} of job* `{job.id}`"),
        bk.section(block),
        bk.context(about),
    ]
    return text, body


@dataclass(frozen=True)
class CheckpointRow:
    name: str  # the key below the listed prefix
    size: int
    modified: datetime
    resume: bool = False  # what `/runctl resume` would start from


def checkpoints_answer(where: str, rows: Sequence[CheckpointRow], now: datetime, *, total: int) -> Message:
    text = f"Checkpoints under {where}: {total}"
    if not rows:
        return text, [bk.section(f"No checkpoints under {code(where)} yet.")]
    lines = []
    for row in rows[:MAX_ROWS]:
        mark = "  ← `/runctl resume` starts from this" if row.resume else ""
        lines.append(
            f"• {code(row.name, limit=200)} · {size_text(row.size)} · {ago(row.modified, now)}{mark}"
        )
    body = [bk.section(f"*Checkpoints under* {code(where)}, newest first"), *bk.lines_section(lines)]
    if total > len(lines):
        body.append(bk.context(f"…and {total - len(lines)} older object(s) not shown."))
    return text, bk.fit(body, what="checkpoints")
