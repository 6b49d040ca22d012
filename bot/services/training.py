"""Training jobs from Slack: start one on a machine, follow it, cancel it, read its log and checkpoints,
resume it from its latest checkpoint, and recover it when AWS reclaims its spot machine.

The scripts that run on the machine, and the reading of what they print, are `bot.core.training`'s; this
module only decides when to send which, keeps the job rows, and tells Slack.

How the job state stays honest:
- The job row (status `starting`) and a `train` operation row holding the whole job spec are written
  *before* the SSM call, so a crash after the send still leaves a row the poller follows.
- SSM is asynchronous: a command just sent is usually still pending, and moto answers "Success" with empty
  output. So `poll` is two-phase: it reads the answers to the status commands the *previous* cycle sent,
  then sends this cycle's. Anything short of a whole, well-formed answer (pending, in progress, empty,
  truncated) means "not known this cycle" and never changes a job.
- Status changes are compare-and-set on the row's version: a poller, a spot notice and a cancel can race,
  and exactly one of them tells the thread.
- One job per machine: a machine with an active job is refused, and two requests racing for one machine
  are settled by the rows (the earliest wins, the other fails itself before anything is sent).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bot.core import validation as v
from bot.core.commands import LOG_LINES_DEFAULT, TrainCommand
from bot.core.safety import Actor
from bot.core.safety import Role as SafetyRole
from bot.core.training import (
    DEFAULT_CHECKPOINT_SYNC_SECONDS,
    JobObservation,
    JobOutcome,
    JobState,
    TrainingRequest,
    cancel_script,
    classify,
    explain,
    launch_script,
    logs_script,
    parse_launch,
    parse_logs,
    parse_status,
    status_script,
)
from bot.core.validation import S3Uri, ValidationError
from bot.services.approvals import ApprovalService
from bot.services.audit import Auditor
from bot.services.deps import ServiceDeps, new_operation_id
from bot.services.operations import LaunchRequest, OperationService, OpStatus, Outcome
from bot.services.ports import MessageRef
from bot.services.pricing import Prices
from bot.views import blocks as bk
from bot.views import training as views
from bot.views.common import mention
from providers.base import CommandResult, CommandStatus, Instance, InstanceState, Lifecycle
from providers.errors import NotFoundError, ProviderError
from storage.errors import AlreadyExists
from storage.models import ACTIVE_JOB_STATUSES, JobStatus, Operation, TrainingJob

log = logging.getLogger(__name__)

ListObjects = Callable[[str, str], list[dict[str, Any]]]
"""`(bucket, prefix) -> [{"Key", "Size", "LastModified"}, …]`: every object under the prefix (paginated)."""

TRAIN_KIND = "train"
RESUME_KIND = "resume"
DEFAULT_MAX_AUTO_RESUMES = 3
DEFAULT_PROJECT = "default"
SYSTEM_USER = "runctl-bot"
# Status commands go to at most this many machines each: the same as one SendCommand request, and it keeps
# each machine's answer to the ids of its own jobs (SSM keeps only 24,000 characters of output).
STATUS_GROUP = 50
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST)
_FINAL_COMMAND = frozenset(
    {CommandStatus.SUCCESS, CommandStatus.FAILED, CommandStatus.TIMED_OUT, CommandStatus.CANCELLED}
)
_IN_FLIGHT = frozenset({CommandStatus.PENDING, CommandStatus.IN_PROGRESS})
_GONE = frozenset(
    {InstanceState.STOPPING, InstanceState.STOPPED, InstanceState.TERMINATING, InstanceState.TERMINATED}
)
_ALL_OP_STATUSES = (
    OpStatus.RECORDED,
    OpStatus.AWAITING_APPROVAL,
    OpStatus.EXECUTING,
    OpStatus.SUCCEEDED,
    OpStatus.FAILED,
    OpStatus.REFUSED,
    OpStatus.CANCELLED,
)
_RECENT_JOBS = timedelta(days=7)


class TrainStatus(StrEnum):
    STARTED = "started"  # the launch command was sent; the job's row and message track it
    PENDING = "pending"  # a resume waits for its new machine (launching, or an approval)
    CANCELLING = "cancelling"  # the cancel command was sent; the thread tells how the job ended
    REFUSED = "refused"  # nothing was done: who, which machine or which job was wrong
    FAILED = "failed"  # it was tried and the cloud said no


@dataclass(frozen=True)
class TrainOutcome:
    """What `train`, `cancel` and `resume` came to. `message` is where the bot posted it; when None the
    caller shows `text`/`blocks` to the user (a refusal, or a channel that would not take the post)."""

    status: TrainStatus
    summary: str
    text: str
    blocks: list[bk.Block] = field(default_factory=list)
    job_id: str | None = None
    instance_id: str | None = None
    message: MessageRef | None = None
    launch: Outcome | None = None  # a resume on a new machine: the launch operation's outcome

    @property
    def ok(self) -> bool:
        return self.status in (TrainStatus.STARTED, TrainStatus.PENDING, TrainStatus.CANCELLING)


@dataclass(frozen=True)
class TrainingReply:
    """An answer for the asker only (logs, jobs, checkpoints)."""

    text: str
    blocks: list[bk.Block] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoint:
    uri: S3Uri
    size: int
    modified: datetime


class CheckpointsUnavailable(Exception):
    """The checkpoint listing could not be read (not configured, no such bucket, no permission)."""


@dataclass(frozen=True)
class JobSpec:
    """A job as it was asked for, kept in its `train` operation so a resume runs exactly the same job."""

    code_uri: S3Uri
    entry: str
    requirements: str | None
    data_uri: S3Uri | None
    output_uri: S3Uri | None
    env: tuple[tuple[str, str], ...]
    script_args: tuple[str, ...]
    checkpoint_uri: S3Uri | None
    auto_resume: bool
    python: str
    checkpoint_sync_seconds: int

    @classmethod
    def of(cls, request: TrainingRequest, *, auto_resume: bool) -> JobSpec:
        return cls(
            code_uri=request.code_uri,
            entry=request.entry,
            requirements=request.requirements,
            data_uri=request.data_uri,
            output_uri=request.output_uri,
            env=request.env,
            script_args=request.script_args,
            checkpoint_uri=request.checkpoint_uri,
            auto_resume=auto_resume,
            python=request.python,
            checkpoint_sync_seconds=request.checkpoint_sync_seconds,
        )

    def request(self, job_id: str, resume_from: S3Uri | None = None) -> TrainingRequest:
        """The same job under a new id; checkpoints stay where the first run put them."""
        return TrainingRequest(
            job_id=job_id,
            code_uri=self.code_uri,
            entry=self.entry,
            requirements=self.requirements,
            data_uri=self.data_uri,
            output_uri=self.output_uri,
            env=self.env,
            script_args=self.script_args,
            checkpoint_uri=self.checkpoint_uri,
            resume_from=resume_from,
            python=self.python,
            checkpoint_sync_seconds=self.checkpoint_sync_seconds,
        )

    def to_params(self) -> dict[str, Any]:
        def uri(value: S3Uri | None) -> str | None:
            return str(value) if value is not None else None

        return {
            "code_uri": str(self.code_uri),
            "entry": self.entry,
            "requirements": self.requirements,
            "data_uri": uri(self.data_uri),
            "output_uri": uri(self.output_uri),
            "env": [[key, value] for key, value in self.env],
            "script_args": list(self.script_args),
            "checkpoint_uri": uri(self.checkpoint_uri),
            "auto_resume": self.auto_resume,
            "python": self.python,
            "checkpoint_sync_seconds": self.checkpoint_sync_seconds,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> JobSpec:
        """Validated again: the row is data from a database, and it goes back into a root shell."""

        def uri(value: Any, name: str) -> S3Uri | None:
            return v.s3_uri(str(value), field=name) if value else None

        code_uri = uri(params.get("code_uri"), "code")
        if code_uri is None:
            raise ValidationError("code", "", "is missing from the recorded job")
        return cls(
            code_uri=code_uri,
            entry=str(params.get("entry") or "train.py"),
            requirements=str(params["requirements"]) if params.get("requirements") else None,
            data_uri=uri(params.get("data_uri"), "data"),
            output_uri=uri(params.get("output_uri"), "output"),
            env=tuple((str(key), str(value)) for key, value in params.get("env") or ()),
            script_args=tuple(str(arg) for arg in params.get("script_args") or ()),
            checkpoint_uri=uri(params.get("checkpoint_uri"), "checkpoints"),
            auto_resume=bool(params.get("auto_resume")),
            python=str(params.get("python") or "python3"),
            checkpoint_sync_seconds=int(
                params.get("checkpoint_sync_seconds", DEFAULT_CHECKPOINT_SYNC_SECONDS)
            ),
        )


@dataclass(frozen=True)
class _Origin:
    """The machine a job first ran on, so "resume on a machine like the original" can launch one."""

    instance_type: str | None
    spot: bool
    project: str | None


@dataclass(frozen=True)
class _Sent:
    """A status command one cycle sent to one machine, read back by a later cycle."""

    command_id: str
    instance_id: str
    job_ids: tuple[str, ...]
    sent_at: datetime


def new_job_id() -> str:
    return f"{v.JOB_ID_PREFIX}{uuid.uuid4().hex[:12]}"


def _s3_prefix(uri: S3Uri) -> S3Uri:
    return uri if uri.is_prefix else S3Uri(uri.bucket, uri.key + "/")


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """`step-10` after `step-9`: digits compare as numbers (a tie-break for objects written in one second)."""
    parts: list[tuple[int, int | str]] = []
    digits = ""
    letters = ""
    for char in text:
        if char.isdigit():
            if letters:
                parts.append((1, letters))
                letters = ""
            digits += char
        else:
            if digits:
                parts.append((0, int(digits)))
                digits = ""
            letters += char
    if digits:
        parts.append((0, int(digits)))
    if letters:
        parts.append((1, letters))
    return tuple(parts)


def newest_first(items: Iterable[Checkpoint]) -> list[Checkpoint]:
    return sorted(items, key=lambda c: (c.modified, _natural(c.uri.key)), reverse=True)


def latest_checkpoint(prefix: S3Uri, items: Sequence[Checkpoint]) -> S3Uri | None:
    """The newest entry right under `prefix`: an object, or a folder (`step-5/…`) holding the newest object,
    which is then resumed from as a whole."""
    base = _s3_prefix(prefix)
    for item in newest_first(items):
        rest = item.uri.key[len(base.key) :]
        if not rest or rest.endswith("/"):
            continue  # a folder marker, not a checkpoint
        head, sep, _tail = rest.partition("/")
        if sep:
            return S3Uri(base.bucket, f"{base.key}{head}/")
        return item.uri
    return None


class TrainingService:
    """The use cases behind `/runctl train|logs|jobs|cancel|checkpoints|resume`, the job poller and spot
    recovery. Thread-safe: Slack work and the scheduler call it from different threads."""

    def __init__(
        self,
        deps: ServiceDeps,
        operations: OperationService,
        auditor: Auditor,
        *,
        prices: Prices | None = None,
        approvals: ApprovalService | None = None,
        list_objects: ListObjects | None = None,
        max_auto_resumes: int = DEFAULT_MAX_AUTO_RESUMES,
        checkpoint_base: S3Uri | None = None,
        python: str = "python3",
        checkpoint_sync_seconds: int = DEFAULT_CHECKPOINT_SYNC_SECONDS,
        start_timeout: timedelta = timedelta(minutes=15),
        status_timeout: timedelta = timedelta(minutes=10),
        resume_timeout: timedelta = timedelta(minutes=30),
        answer_wait_seconds: float = 3.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deps = deps
        self._ops = operations
        self._audit = auditor
        self._prices = prices or Prices(deps.provider)
        self._approvals = approvals
        self._list_objects = list_objects
        self._max_auto_resumes = max(0, max_auto_resumes)
        self._checkpoint_base = checkpoint_base
        self._python = python
        self._sync_seconds = checkpoint_sync_seconds
        self._start_timeout = start_timeout
        self._status_timeout = status_timeout
        self._resume_timeout = resume_timeout
        self._answer_wait = answer_wait_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: dict[str, _Sent] = {}

    # --- train -----------------------------------------------------------------------------------

    def train(self, actor: Actor, cmd: TrainCommand, *, channel: str | None) -> TrainOutcome:
        """Start a job on the actor's running machine: rows first, then one SSM command; returns at once."""
        inst, refusal = self._usable_machine(actor, cmd.instance_id)
        if inst is None:
            return self._refused(refusal, instance_id=cmd.instance_id)
        job_id = new_job_id()
        try:
            request = TrainingRequest.from_command(
                cmd,
                job_id,
                checkpoint_base=self._checkpoint_base,
                python=self._python,
                checkpoint_sync_seconds=self._sync_seconds,
            )
        except ValidationError as exc:
            return self._refused(f"The job was not started: {exc.message}", instance_id=inst.id)
        spec = JobSpec.of(request, auto_resume=cmd.auto_resume)
        return self._start_job(actor, inst, spec, job_id, channel=channel)

    def _usable_machine(self, actor: Actor, instance_id: str) -> tuple[Instance | None, str]:
        """The machine when the actor may train on it now, else why not (a sentence for the asker)."""
        try:
            inst = self._deps.provider.describe(instance_id)
        except ProviderError as exc:
            return None, f"I could not look `{instance_id}` up: {exc}"
        if inst is None or inst.state is InstanceState.TERMINATED:
            return None, f"`{instance_id}` was not found in {self._deps.provider.region}."
        if not inst.managed:
            return (
                None,
                f"`{instance_id}` is not managed by runctl (it has no runctl tags), so I run no jobs on it.",
            )
        if inst.owner != actor.user_id and not actor.is_admin:
            return None, (
                f"Only the owner of `{instance_id}` ({mention(inst.owner)}) or an admin can run a training "
                "job on it."
            )
        if inst.state is InstanceState.STARTING:
            return None, f"`{instance_id}` is still starting; try again when it is running."
        if inst.state is not InstanceState.RUNNING:
            return None, (
                f"`{instance_id}` is {inst.state.value}; a job needs a running machine "
                f"(`/runctl start {instance_id}` first)."
            )
        busy = self._deps.repos.jobs.list_active([instance_id])
        if busy:
            other = busy[0]
            return None, (
                f"`{instance_id}` is busy: job `{other.id}` of {mention(other.owner)} is still "
                f"{other.status}. One job per machine: wait for it, cancel it (`/runctl cancel {other.id}`) "
                "or use another machine."
            )
        return inst, ""

    def _start_job(
        self,
        actor: Actor,
        inst: Instance,
        spec: JobSpec,
        job_id: str,
        *,
        channel: str | None,
        resume_from: S3Uri | None = None,
        resumed_from: TrainingJob | None = None,
        wait_for_agent: bool = False,
    ) -> TrainOutcome:
        """Record, send, tell. `wait_for_agent`: a new machine whose SSM agent has not registered yet keeps
        its row (starting, nothing sent) for the next try instead of failing."""
        repos = self._deps.repos
        now = self._deps.clock.now()
        request = spec.request(job_id, resume_from)
        script = launch_script(request)
        existing = repos.jobs.get(job_id)
        if existing is None:
            job = TrainingJob(
                id=job_id,
                instance_id=inst.id,
                owner=actor.user_id,
                status=JobStatus.STARTING,
                code_uri=str(spec.code_uri),
                entry=spec.entry,
                args=list(spec.script_args),
                env=dict(spec.env),
                data_uri=str(spec.data_uri) if spec.data_uri else None,
                output_uri=str(spec.output_uri) if spec.output_uri else None,
                started_at=now,
                auto_resume=spec.auto_resume,
                resume_count=resumed_from.resume_count + 1 if resumed_from else 0,
                resumed_from=resumed_from.id if resumed_from else None,
            )
            try:
                repos.jobs.create(job)
            except AlreadyExists:
                return self._refused(f"Job `{job_id}` is already being started.", job_id=job_id)
            self._record_train(actor, job, inst, spec, channel, resume_from)
        elif existing.status != JobStatus.STARTING or existing.command_id or existing.instance_id != inst.id:
            return self._refused(f"Job `{job_id}` was already sent to its machine.", job_id=job_id)
        winner = repos.jobs.list_active([inst.id])
        if winner and winner[0].id != job_id:
            # Another request for this machine was recorded first: this one gives way before sending.
            self._transition(job_id, JobStatus.FAILED, finished_at=now)
            self._finish_op(job_id, ok=False, error=f"job {winner[0].id} was started on the machine first")
            return self._refused(
                f"`{inst.id}` is busy: job `{winner[0].id}` was started on it a moment earlier. "
                "One job per machine.",
                job_id=job_id,
                instance_id=inst.id,
            )
        try:
            command_ids = self._deps.provider.run_command([inst.id], script, comment=f"runctl train {job_id}")
        except ProviderError as exc:
            if wait_for_agent and isinstance(exc, NotFoundError):
                log.info(
                    "job %s: %s is not reachable through SSM yet (%s); trying again later",
                    job_id,
                    inst.id,
                    exc,
                )
                return TrainOutcome(
                    TrainStatus.PENDING,
                    f"waiting for `{inst.id}` to register with SSM",
                    f"Waiting for {inst.id} to accept commands",
                    job_id=job_id,
                    instance_id=inst.id,
                )
            self._transition(job_id, JobStatus.FAILED, finished_at=self._deps.clock.now())
            self._finish_op(job_id, ok=False, error=str(exc))
            self._audit.event(actor.user_id, "train", "failed", target=job_id, detail={"error": str(exc)})
            summary = f"I could not send job `{job_id}` to `{inst.id}`: {views.plain(str(exc))}"
            text, blocks = views.note(f":x: {summary}", fallback=f"Could not start job {job_id}")
            return TrainOutcome(TrainStatus.FAILED, summary, text, blocks, job_id=job_id, instance_id=inst.id)
        sent_at = self._deps.clock.now()
        self._set_fields(job_id, command_id=command_ids[0], started_at=sent_at)
        self._finish_op(job_id, ok=True, result={"command_id": command_ids[0], "instance_id": inst.id})
        self._audit.event(
            actor.user_id,
            "train",
            "sent",
            target=inst.id,
            operation_id=job_id,
            detail={"job_id": job_id, "command_id": command_ids[0], "resume_from": str(resume_from or "")},
        )
        fresh = repos.jobs.get(job_id)
        if fresh is None:
            raise RuntimeError(f"job {job_id} vanished while it was being started")
        text, blocks = self._card(fresh, "running", instance_type=inst.instance_type)
        ref = self._post(channel, text, blocks) if channel else None
        if ref is not None:
            repos.jobs.set_slack_message(job_id, ref.channel, ref.ts)
        summary = f"job `{job_id}` is running on `{inst.id}`"
        return TrainOutcome(
            TrainStatus.STARTED, summary, text, blocks, job_id=job_id, instance_id=inst.id, message=ref
        )

    def _record_train(
        self,
        actor: Actor,
        job: TrainingJob,
        inst: Instance,
        spec: JobSpec,
        channel: str | None,
        resume_from: S3Uri | None,
    ) -> None:
        """The request as an operation (id = job id) holding the whole spec, which the job row cannot."""
        now = self._deps.clock.now()
        params = {
            "spec": spec.to_params(),
            "instance_type": inst.instance_type,
            "spot": inst.lifecycle is Lifecycle.SPOT,
            "project": inst.project,
            "resume_from": str(resume_from) if resume_from else None,
        }
        self._deps.repos.operations.create(
            Operation(
                id=job.id,
                kind=TRAIN_KIND,
                requester=actor.user_id,
                channel=channel,
                status=OpStatus.EXECUTING,
                params=params,
                instance_ids=[inst.id],
                created_at=now,
                updated_at=now,
            )
        )
        self._audit.event(
            actor.user_id, f"request:{TRAIN_KIND}", OpStatus.EXECUTING, target=inst.id, operation_id=job.id
        )

    def _finish_op(
        self, op_id: str, *, ok: bool, result: Mapping[str, Any] | None = None, error: str | None = None
    ) -> None:
        self._deps.repos.operations.transition(
            op_id,
            OpStatus.EXECUTING,
            OpStatus.SUCCEEDED if ok else OpStatus.FAILED,
            at=self._deps.clock.now(),
            result=dict(result or {}),
            error=error,
        )

    # --- the poller ------------------------------------------------------------------------------

    def poll(self) -> list[str]:
        """One scheduler cycle: read last cycle's answers, settle what they prove, send this cycle's
        status commands. Returns the ids of the jobs whose status changed."""
        now = self._deps.clock.now()
        observations, in_flight = self._read_answers(now)
        repos = self._deps.repos
        active = repos.jobs.list_active()
        resumes = repos.operations.list_by_status([OpStatus.EXECUTING], kind=RESUME_KIND)
        if not active and not resumes:
            return []
        try:
            fleet = {i.id: i for i in self._deps.provider.list_managed()}
        except ProviderError as exc:
            log.warning("job poll: the fleet could not be listed (%s); nothing changes this cycle", exc)
            self._keep_in_flight(in_flight)
            return []
        wanted = {j.instance_id for j in active} | {
            str(op.params["instance_id"]) for op in resumes if op.params.get("instance_id")
        }
        machines = self._machines(wanted, fleet)
        resume_jobs = {str(op.params.get("new_job")) for op in resumes}
        changed: list[str] = []
        for job in active:
            if job.instance_id not in machines:
                continue  # the machine could not be described this cycle: nothing is known
            try:
                if self._settle(
                    job, machines.get(job.instance_id), observations.get(job.id), now, resume_jobs
                ):
                    changed.append(job.id)
            except Exception:
                log.exception("job poll: settling job %s failed; it is tried again next cycle", job.id)
        for op in resumes:
            try:
                self._continue_resume(op, machines, now)
            except Exception:
                log.exception("job poll: resume %s failed; it is tried again next cycle", op.id)
        self._send_status(now, in_flight, machines)
        return changed

    def _machines(
        self, instance_ids: Iterable[str], fleet: Mapping[str, Instance]
    ) -> dict[str, Instance | None]:
        """The listing answers for managed, live machines; the few others in one batched describe."""
        wanted = sorted(set(instance_ids))
        found: dict[str, Instance | None] = {iid: fleet[iid] for iid in wanted if iid in fleet}
        others = [iid for iid in wanted if iid not in fleet]
        if not others:
            return found
        try:
            described = self._deps.provider.describe_many(others)
        except ProviderError as exc:
            log.warning("job poll: %s could not be described (%s); their jobs wait", ", ".join(others), exc)
            return found
        found.update({iid: described.get(iid) for iid in others})
        return found

    def _read_answers(self, now: datetime) -> tuple[dict[str, JobObservation], dict[str, _Sent]]:
        """Observations by job id from the commands sent earlier, and the commands still in flight."""
        with self._lock:
            sent = list(self._sent.values())
            self._sent.clear()
        by_command: dict[str, list[_Sent]] = defaultdict(list)
        for item in sent:
            by_command[item.command_id].append(item)
        observations: dict[str, JobObservation] = {}
        in_flight: dict[str, _Sent] = {}
        for command_id, items in by_command.items():
            by_instance = {item.instance_id: item for item in items}
            try:
                results = self._deps.provider.command_results(command_id, list(by_instance))
            except ProviderError as exc:
                log.warning("job poll: the answers to %s could not be read (%s)", command_id, exc)
                continue
            for result in results:
                asked = by_instance.get(result.instance_id)
                if asked is None:
                    continue
                if result.status in _IN_FLIGHT and now - asked.sent_at < self._status_timeout:
                    in_flight[asked.instance_id] = asked
                    continue
                if result.status not in (CommandStatus.SUCCESS, CommandStatus.FAILED):
                    continue
                seen = parse_status(result.stdout)
                for job_id in asked.job_ids:
                    if job_id in seen:
                        observations[job_id] = seen[job_id]
        return observations, in_flight

    def _keep_in_flight(self, in_flight: Mapping[str, _Sent]) -> None:
        with self._lock:
            for iid, item in in_flight.items():
                self._sent.setdefault(iid, item)

    def _send_status(
        self, now: datetime, in_flight: Mapping[str, _Sent], machines: Mapping[str, Instance | None]
    ) -> None:
        """This cycle's status commands: each machine with active jobs, asked about its own jobs only."""
        jobs_by_instance: dict[str, list[str]] = defaultdict(list)
        for job in self._deps.repos.jobs.list_active():
            inst = machines.get(job.instance_id)
            if inst is None or inst.state is not InstanceState.RUNNING:
                continue
            if job.status == JobStatus.STARTING and not job.command_id:
                continue  # nothing was sent yet (a resume waiting for its machine's agent)
            jobs_by_instance[job.instance_id].append(job.id)
        self._keep_in_flight(in_flight)
        targets = sorted(iid for iid in jobs_by_instance if iid not in in_flight)
        for start in range(0, len(targets), STATUS_GROUP):
            group = targets[start : start + STATUS_GROUP]
            job_ids = [job_id for iid in group for job_id in jobs_by_instance[iid]]
            try:
                command_ids = self._deps.provider.run_command(
                    group, status_script(job_ids), comment="runctl job status"
                )
            except ProviderError as exc:
                log.warning("job poll: status command to %d machine(s) failed: %s", len(group), exc)
                continue
            if len(command_ids) != 1:
                log.warning(
                    "job poll: expected one command for %d machines, got %d", len(group), len(command_ids)
                )
                continue
            with self._lock:
                for iid in group:
                    self._sent[iid] = _Sent(command_ids[0], iid, tuple(jobs_by_instance[iid]), now)

    def _settle(
        self,
        job: TrainingJob,
        inst: Instance | None,
        seen: JobObservation | None,
        now: datetime,
        resume_jobs: set[str],
    ) -> bool:
        """Move one job on what is proven about it; anything unknown leaves it as it is."""
        outcome = classify(seen) if seen is not None and seen.state is not JobState.MISSING else None
        if seen is not None and outcome is not None and outcome is not JobOutcome.RUNNING:
            # It ended before anything else happened to its machine: that is how it went.
            return self._finished(job, JobStatus(outcome.value), explain(seen), seen, inst, now)
        if inst is None or inst.state in _GONE:
            return self._machine_gone(job, inst, now)
        if inst.state is not InstanceState.RUNNING:
            return False
        if outcome is JobOutcome.RUNNING:
            return job.status == JobStatus.STARTING and self._transition(
                job.id, JobStatus.RUNNING, expected=job.status, version=job.version
            )
        if job.status == JobStatus.RUNNING:
            if seen is not None:  # the machine answered and has no record of a job it was running
                return self._finished(job, JobStatus.LOST, explain(seen), seen, inst, now)
            return False
        return self._settle_starting(job, inst, seen, now, resume_jobs)

    def _settle_starting(
        self,
        job: TrainingJob,
        inst: Instance,
        seen: JobObservation | None,
        now: datetime,
        resume_jobs: set[str],
    ) -> bool:
        """A job not yet seen running: the launch command's own answer decides, else time does."""
        result = self._launch_answer(job)
        report = parse_launch(result.stdout) if result is not None else None
        if report is not None and report.job_id == job.id:
            if report.started or report.reason == "already-running":
                # "already running" for our own id: an earlier send of this same job started it.
                return self._transition(job.id, JobStatus.RUNNING, expected=job.status, version=job.version)
            if report.reason != "already-exists":
                detail = (result.stderr.strip() if result else "") or report.reason or "refused"
                return self._finished(
                    job, JobStatus.FAILED, f"the machine refused to start it: {detail}", None, inst, now
                )
        elif result is not None and result.status in (
            CommandStatus.FAILED,
            CommandStatus.TIMED_OUT,
            CommandStatus.CANCELLED,
        ):
            detail = result.stderr.strip()[-500:] or f"SSM status {result.status.value}"
            return self._finished(
                job, JobStatus.FAILED, f"the launch command did not run: {detail}", None, inst, now
            )
        if not job.command_id:
            if job.id in resume_jobs:
                return False  # the resume that owns it is still waiting for the machine's agent
            if now - job.started_at > self._start_timeout:
                # The row was written and the bot stopped before the send: nothing ever ran.
                return self._finished(
                    job, JobStatus.FAILED, "its launch command was never sent to the machine", None, inst, now
                )
            return False
        if now - job.started_at <= self._start_timeout:
            return False
        waited = views.duration_text(now - job.started_at)
        if seen is not None:
            return self._finished(
                job,
                JobStatus.FAILED,
                f"the machine has no record of it {waited} after the launch",
                seen,
                inst,
                now,
            )
        if result is not None and result.status in _IN_FLIGHT:
            return False  # the launch is still running (SSM ends it at its own timeout at the latest)
        # Neither the launch command nor any status command has said a word about it: the machine's SSM
        # agent is down or never ran. Left "starting", it would shield an idle machine from cleanup for
        # ever; lost, the machine is judged on its own metrics (a busy one is never idle), and its owner
        # is told what to check.
        return self._finished(
            job,
            JobStatus.LOST,
            f"its machine has not reported on it in the {waited} since the launch: neither the launch "
            "command nor a status command answered about it (is the SSM agent on the machine running?)",
            None,
            inst,
            now,
        )

    def _launch_answer(self, job: TrainingJob) -> CommandResult | None:
        if not job.command_id:
            return None
        try:
            results = self._deps.provider.command_results(job.command_id, [job.instance_id])
        except ProviderError as exc:
            log.warning("job %s: the launch answer could not be read (%s)", job.id, exc)
            return None
        return results[0] if results else None

    def _machine_gone(self, job: TrainingJob, inst: Instance | None, now: datetime) -> bool:
        if inst is not None and inst.spot_interrupted:
            return self._spot_lost(job, inst, now)
        if inst is None:
            sentence = f"its machine `{job.instance_id}` no longer exists"
        elif inst.state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
            sentence = f"its machine `{job.instance_id}` was terminated"
        else:
            sentence = f"its machine `{job.instance_id}` was stopped, which ended the training"
        if inst is not None and inst.state_reason_message:
            sentence += f" ({inst.state_reason_message})"
        return self._finished(job, JobStatus.LOST, sentence, None, inst, now)

    def _finished(
        self,
        job: TrainingJob,
        status: JobStatus,
        sentence: str,
        seen: JobObservation | None,
        inst: Instance | None,
        now: datetime,
        *,
        tell: bool = True,
    ) -> bool:
        """The one transition to an end state (compare-and-set), then the thread and the card are told."""
        finished_at = seen.finished_at if seen is not None and seen.finished_at is not None else now
        won = self._transition(
            job.id,
            status,
            expected=job.status,
            version=job.version,
            exit_code=seen.exit_code if seen is not None else None,
            finished_at=finished_at,
        )
        if not won:
            return False
        self._audit.event(
            SYSTEM_USER,
            "train:finished",
            status.value,
            target=job.id,
            detail={"sentence": sentence, "exit_code": seen.exit_code if seen else None},
        )
        if tell:
            end = self._end(job, status, sentence, seen, inst, now)
            self._tell(job, *views.job_ended(job, end))
            self._refresh_card(job.id, end)
        return True

    def _end(
        self,
        job: TrainingJob,
        status: JobStatus,
        sentence: str,
        seen: JobObservation | None,
        inst: Instance | None,
        now: datetime,
    ) -> views.JobEnd:
        duration = seen.duration(now) if seen is not None else None
        if duration is None:
            duration = now - job.started_at
        hourly, itype = self._hourly(job.instance_id, inst)
        cost = (
            Decimal(str(hourly)) * Decimal(max(0, int(duration.total_seconds()))) / Decimal(3600)
            if hourly is not None
            else None
        )
        return views.JobEnd(
            status=status.value,
            sentence=sentence,
            duration=duration,
            cost=cost,
            hourly=hourly,
            instance_type=itype,
            exit_code=seen.exit_code if seen is not None else None,
            log_tail=seen.log_tail if seen is not None and seen.state is not JobState.MISSING else None,
        )

    def _hourly(self, instance_id: str, inst: Instance | None) -> tuple[float | None, str | None]:
        """$/h of the job's machine: the live machine's, else the recorded one's type and lifecycle."""
        if inst is not None:
            return self._prices.hourly_by_instance([inst]).get(inst.id), inst.instance_type
        row = self._deps.repos.resources.get(instance_id)
        if row is None:
            return None, None
        if row.lifecycle == Lifecycle.SPOT.value:
            spot = self._prices.spot([row.instance_type]).get(row.instance_type)
            if spot is not None:
                return spot, row.instance_type
        return self._prices.on_demand(row.instance_type), row.instance_type

    # --- spot recovery ---------------------------------------------------------------------------

    def on_spot_interruption(self, instance_id: str) -> None:
        """AWS reclaimed this spot machine: its active jobs are lost; offer (or, with --auto-resume, do)
        a resume on a new spot machine of the same type."""
        jobs = self._deps.repos.jobs.list_active([instance_id])
        if not jobs:
            return
        try:
            inst = self._deps.provider.describe(instance_id)
        except ProviderError as exc:
            log.warning("spot interruption of %s: describe failed (%s)", instance_id, exc)
            inst = None
        now = self._deps.clock.now()
        for job in jobs:
            self._spot_lost(job, inst, now)

    def _spot_lost(self, job: TrainingJob, inst: Instance | None, now: datetime) -> bool:
        sentence = f"AWS reclaimed its spot machine `{job.instance_id}`"
        if not self._finished(job, JobStatus.LOST, sentence, None, inst, now, tell=False):
            return False
        end = self._end(job, JobStatus.LOST, sentence, None, inst, now)
        self._refresh_card(job.id, end)
        itype = end.instance_type or self._origin_type(job)
        auto = job.auto_resume and itype is not None and job.resume_count < self._max_auto_resumes
        if auto:
            note = (
                f":repeat: `--auto-resume` is on: resuming from the latest checkpoint on a new spot {itype} "
                f"(resume {job.resume_count + 1} of at most {self._max_auto_resumes})."
            )
        elif job.auto_resume and itype is not None:
            note = (
                f"`--auto-resume` stops here: this job is already resume number {job.resume_count} "
                f"(at most {self._max_auto_resumes}). Resume it by hand if it should go on."
            )
        else:
            note = ""
        self._tell(job, *views.spot_reclaimed(job, end, note=note, offer_resume=not auto))
        if auto and itype is not None:
            try:
                outcome = self._resume(
                    self._deps.roles.actor(job.owner),
                    job.id,
                    spot_type=itype,
                    channel=job.slack_channel,
                    auto=True,
                )
                why = "" if outcome.ok else outcome.summary
            except Exception:
                # The job is already recorded as lost; a failed resume must not undo that or stop the
                # caller (reconcile), and the button below lets the owner try again.
                log.exception("auto-resume of %s failed", job.id)
                why = "an unexpected error (see the bot's log)"
            if why:
                text = f":x: Auto-resume of `{job.id}` did not start: {why}"
                blocks = [
                    bk.section(text),
                    bk.actions(
                        f"training_resume:{job.id}",
                        bk.button(
                            "Resume on a new spot instance", views.RESUME_SPOT, job.id, style="primary"
                        ),
                    ),
                ]
                self._tell(job, f"Auto-resume of {job.id} did not start", blocks)
        return True

    def _origin_type(self, job: TrainingJob) -> str | None:
        try:
            return self._spec_of(job)[1].instance_type
        except ValidationError:
            return None

    def resume_button(self, job_id: str, user: str) -> TrainOutcome:
        """**Resume on a new spot instance**: the same job on a new spot machine of the lost one's type."""
        job = self._deps.repos.jobs.get(job_id)
        if job is None:
            return self._refused(f"Job `{job_id}` no longer exists.", job_id=job_id)
        itype = self._origin_type(job)
        if itype is None:
            return self._refused(
                f"I do not know which machine type `{job_id}` ran on; use "
                f"`/runctl resume {job_id} --spot <type>`.",
                job_id=job_id,
            )
        actor = self._deps.roles.actor(user)
        return self._resume(actor, job_id, spot_type=itype, channel=job.slack_channel, auto=False)

    # --- resume ----------------------------------------------------------------------------------

    def resume(
        self,
        actor: Actor,
        job_id: str,
        *,
        on_instance: str | None = None,
        spot_type: str | None = None,
        channel: str | None = None,
    ) -> TrainOutcome:
        """The same job from its latest checkpoint: on `on_instance`, else on a new machine (a spot one of
        `spot_type`, or one like the original)."""
        return self._resume(
            actor, job_id, on_instance=on_instance, spot_type=spot_type, channel=channel, auto=False
        )

    def _resume(
        self,
        actor: Actor,
        job_id: str,
        *,
        on_instance: str | None = None,
        spot_type: str | None = None,
        channel: str | None,
        auto: bool,
    ) -> TrainOutcome:
        repos = self._deps.repos
        job = repos.jobs.get(job_id)
        if job is None:
            return self._refused(f"There is no job `{job_id}`.", job_id=job_id)
        if job.owner != actor.user_id and not actor.is_admin:
            return self._refused(
                f"Only the job's owner ({mention(job.owner)}) or an admin can resume `{job_id}`.",
                job_id=job_id,
            )
        if job.status in ACTIVE_JOB_STATUSES:
            return self._refused(
                f"Job `{job_id}` is still {job.status}; cancel it first (`/runctl cancel {job_id}`).",
                job_id=job_id,
            )
        try:
            spec, origin = self._spec_of(job)
        except ValidationError as exc:
            return self._refused(f"Job `{job_id}` cannot be run again: {exc.message}", job_id=job_id)
        if spec.checkpoint_uri is None:
            return self._refused(
                f"Job `{job_id}` kept its checkpoints on its machine (it had no `--output`), so there is "
                "nothing in S3 to resume from. Start it again with `/runctl train`.",
                job_id=job_id,
            )
        try:
            resume_from = latest_checkpoint(spec.checkpoint_uri, self._list_checkpoints(spec.checkpoint_uri))
        except CheckpointsUnavailable as exc:
            return self._refused(f"I could not read the checkpoints of `{job_id}`: {exc}", job_id=job_id)
        claim = f"training-resume:{job_id}"
        if not repos.notices.first_time(claim, self._deps.clock.now()):
            return self._refused(self._already_resumed(job_id), job_id=job_id)
        target_channel = channel or job.slack_channel
        new_id = new_job_id()
        try:
            if on_instance is not None:
                outcome = self._resume_on(actor, job, spec, new_id, on_instance, resume_from, target_channel)
            else:
                outcome = self._resume_new(
                    actor, job, spec, origin, new_id, spot_type, resume_from, target_channel, auto
                )
        except Exception:
            repos.notices.forget(claim)
            raise
        if not outcome.ok:
            repos.notices.forget(claim)
        return outcome

    def _already_resumed(self, job_id: str) -> str:
        for op in self._deps.repos.operations.list_by_status(_ALL_OP_STATUSES, kind=RESUME_KIND):
            if op.params.get("source_job") != job_id or op.status in (OpStatus.FAILED, OpStatus.CANCELLED):
                continue
            new_job = op.params.get("new_job")
            if op.status == OpStatus.SUCCEEDED:
                return f"Job `{job_id}` was already resumed as `{new_job}`; resume that one instead."
            return f"Job `{job_id}` is already being resumed (as `{new_job}`, waiting for its machine)."
        return f"Job `{job_id}` is already being resumed."

    def _resume_on(
        self,
        actor: Actor,
        job: TrainingJob,
        spec: JobSpec,
        new_id: str,
        instance_id: str,
        resume_from: S3Uri | None,
        channel: str | None,
    ) -> TrainOutcome:
        inst, refusal = self._usable_machine(actor, instance_id)
        if inst is None:
            return self._refused(refusal, job_id=job.id, instance_id=instance_id)
        op = self._record_resume(
            actor, job, new_id, resume_from, channel, instance_id=inst.id, launch_op=None, auto=False
        )
        outcome = self._start_job(
            actor, inst, spec, new_id, channel=channel, resume_from=resume_from, resumed_from=job
        )
        self._resume_done(op, job, outcome, resume_from)
        return outcome

    def _resume_new(
        self,
        actor: Actor,
        job: TrainingJob,
        spec: JobSpec,
        origin: _Origin,
        new_id: str,
        spot_type: str | None,
        resume_from: S3Uri | None,
        channel: str | None,
        auto: bool,
    ) -> TrainOutcome:
        itype = spot_type or origin.instance_type
        if itype is None:
            return self._refused(
                f"I do not know which machine type `{job.id}` ran on; name one with `--spot <type>` "
                "or `--on`.",
                job_id=job.id,
            )
        spot = spot_type is not None or origin.spot
        request = LaunchRequest(
            instance_type=itype,
            project=origin.project or DEFAULT_PROJECT,
            spot=spot,
            fallback_to_on_demand=not spot,
        )
        launch = self._ops.request_launch(actor, request, channel=channel)
        if launch.status not in (OpStatus.SUCCEEDED, OpStatus.AWAITING_APPROVAL):
            summary = f"no new {itype}{' spot' if spot else ''} machine for `{job.id}`: {launch.summary}"
            text, blocks = views.note(f":x: {views.plain(summary)}", fallback=f"Resume of {job.id} failed")
            return TrainOutcome(TrainStatus.FAILED, summary, text, blocks, job_id=job.id, launch=launch)
        instance_id = launch.instances[0].id if launch.instances else None
        op = self._record_resume(
            actor,
            job,
            new_id,
            resume_from,
            channel,
            instance_id=instance_id,
            launch_op=launch.operation_id,
            auto=auto,
        )
        if launch.status == OpStatus.AWAITING_APPROVAL:
            if self._approvals is not None and channel is not None:
                self._approvals.open(launch, requester=actor.user_id, channel=channel)
            summary = f"the new {itype} for `{job.id}` needs an approval; the job starts once it runs"
            text, blocks = views.note(
                f":hourglass_flowing_sand: Resume of `{job.id}`: {summary}.", fallback=summary
            )
            self._tell(job, text, blocks)
            return TrainOutcome(TrainStatus.PENDING, summary, text, blocks, job_id=new_id, launch=launch)
        # The launch answered with the machine as it was asked for (pending); a fresh look may find it
        # running already, and then the job starts now instead of at the next poll.
        outcome = self._continue_resume(op, {}, self._deps.clock.now())
        if outcome is not None:
            return TrainOutcome(
                outcome.status,
                outcome.summary,
                outcome.text,
                outcome.blocks,
                job_id=outcome.job_id,
                instance_id=outcome.instance_id,
                message=outcome.message,
                launch=launch,
            )
        summary = (
            f"launched `{instance_id}` ({itype}) for the resume of `{job.id}`; the job starts once it runs"
        )
        text, blocks = views.note(f":rocket: {summary}.", fallback=summary)
        self._tell(job, text, blocks)
        return TrainOutcome(
            TrainStatus.PENDING, summary, text, blocks, job_id=new_id, instance_id=instance_id, launch=launch
        )

    def _record_resume(
        self,
        actor: Actor,
        job: TrainingJob,
        new_id: str,
        resume_from: S3Uri | None,
        channel: str | None,
        *,
        instance_id: str | None,
        launch_op: str | None,
        auto: bool,
    ) -> Operation:
        now = self._deps.clock.now()
        op = Operation(
            id=new_operation_id(),
            kind=RESUME_KIND,
            requester=actor.user_id,
            channel=channel,
            status=OpStatus.EXECUTING,
            params={
                "source_job": job.id,
                "new_job": new_id,
                "resume_from": str(resume_from) if resume_from else None,
                "instance_id": instance_id,
                "launch_operation_id": launch_op,
                "auto": auto,
            },
            instance_ids=[instance_id] if instance_id else [],
            created_at=now,
            updated_at=now,
        )
        created = self._deps.repos.operations.create(op)
        self._audit.event(
            actor.user_id,
            f"request:{RESUME_KIND}",
            OpStatus.EXECUTING,
            target=job.id,
            operation_id=op.id,
            detail=dict(op.params),
        )
        return created

    def _continue_resume(
        self, op: Operation, machines: Mapping[str, Instance | None], now: datetime
    ) -> TrainOutcome | None:
        """Move a resume on: find its machine, and start the job once the machine runs. None: still waiting
        (for an approval, the launch, the machine to run, or its SSM agent)."""
        repos = self._deps.repos
        params = op.params
        source = repos.jobs.get(str(params.get("source_job")))
        if source is None:
            return self._resume_failed(op, None, "the job it resumes no longer exists")
        instance_id = params.get("instance_id")
        if not instance_id:
            launch = repos.operations.get(str(params.get("launch_operation_id")))
            if launch is None or launch.status in (OpStatus.FAILED, OpStatus.REFUSED, OpStatus.CANCELLED):
                why = (launch.error if launch else None) or "the new machine was not launched"
                return self._resume_failed(op, source, why)
            if launch.status != OpStatus.SUCCEEDED:
                return None  # still waiting for an approval or for the launch itself
            instance_id = str((launch.result or {}).get("instance_id") or "")
            if not instance_id:
                return self._resume_failed(op, source, "the launch reported no machine")
        known = machines if instance_id in machines else self._machines([instance_id], {})
        if instance_id not in known:
            return None  # it could not be described this time
        inst = known[instance_id]
        if inst is None or inst.state in _GONE:
            return self._resume_failed(op, source, f"the new machine `{instance_id}` is gone")
        if now - op.created_at > self._resume_timeout:
            return self._resume_failed(
                op,
                source,
                f"`{instance_id}` did not become usable within {views.duration_text(self._resume_timeout)}",
            )
        if inst.state is not InstanceState.RUNNING:
            return None
        # Claim this attempt (a poller and a click may both get here): the version moves, one wins.
        if not repos.operations.transition(
            op.id, OpStatus.EXECUTING, OpStatus.EXECUTING, expected_version=op.version
        ):
            return None
        try:
            spec, _origin = self._spec_of(source)
        except ValidationError as exc:
            return self._resume_failed(op, source, exc.message)
        resume_from = v.s3_uri(str(params["resume_from"])) if params.get("resume_from") else None
        actor = self._deps.roles.actor(op.requester)
        outcome = self._start_job(
            actor,
            inst,
            spec,
            str(params["new_job"]),
            channel=op.channel or source.slack_channel,
            resume_from=resume_from,
            resumed_from=source,
            wait_for_agent=True,
        )
        if outcome.status is TrainStatus.PENDING:
            return None
        fresh = repos.operations.get(op.id) or op
        self._resume_done(fresh, source, outcome, resume_from)
        return outcome

    def _resume_done(
        self, op: Operation, source: TrainingJob, outcome: TrainOutcome, resume_from: S3Uri | None
    ) -> None:
        if outcome.status is TrainStatus.STARTED:
            self._deps.repos.operations.transition(
                op.id,
                OpStatus.EXECUTING,
                OpStatus.SUCCEEDED,
                at=self._deps.clock.now(),
                instance_ids=[outcome.instance_id] if outcome.instance_id else [],
                result={"job_id": outcome.job_id, "instance_id": outcome.instance_id},
            )
            start = (
                f"from {views.code(str(resume_from))}"
                if resume_from
                else "from the beginning (no checkpoint yet)"
            )
            self._tell(
                source,
                *views.note(
                    f":arrow_forward: Resumed as `{outcome.job_id}` on `{outcome.instance_id}` {start}.",
                    fallback=f"Resumed as {outcome.job_id}",
                ),
            )
            return
        self._resume_failed(op, source, outcome.summary)

    def _resume_failed(self, op: Operation, source: TrainingJob | None, why: str) -> TrainOutcome:
        repos = self._deps.repos
        summary = f"the resume of `{op.params.get('source_job')}` failed: {why}"
        text, blocks = views.note(f":x: {views.plain(summary)}", fallback="Resume failed")
        now = self._deps.clock.now()
        if repos.operations.transition(op.id, OpStatus.EXECUTING, OpStatus.FAILED, at=now, error=why):
            repos.notices.forget(f"training-resume:{op.params.get('source_job')}")
            waiting = repos.jobs.get(str(op.params.get("new_job")))
            if waiting is not None and waiting.status == JobStatus.STARTING and not waiting.command_id:
                # Its row was written for a machine that never took the job: nothing ran.
                self._transition(waiting.id, JobStatus.FAILED, expected=JobStatus.STARTING, finished_at=now)
            self._audit.event(
                op.requester,
                RESUME_KIND,
                "failed",
                target=str(op.params.get("source_job")),
                operation_id=op.id,
                detail={"error": why},
            )
            if source is not None:
                self._tell(source, text, blocks)
        return TrainOutcome(
            TrainStatus.FAILED, summary, text, blocks, job_id=str(op.params.get("source_job"))
        )

    # --- cancel ----------------------------------------------------------------------------------

    def cancel(self, actor: Actor, job_id: str) -> TrainOutcome:
        """SIGTERM now, SIGKILL after the grace period (on the machine); the poller reports the end in the
        job's thread. Owners cancel their own jobs; approvers and admins anyone's."""
        repos = self._deps.repos
        job = repos.jobs.get(job_id)
        if job is None:
            return self._refused(f"There is no job `{job_id}`.", job_id=job_id)
        if job.status not in ACTIVE_JOB_STATUSES:
            return self._refused(
                f"Job `{job_id}` is not running: it {views.ended_verb(job.status)}.", job_id=job_id
            )
        may = job.owner == actor.user_id or actor.is_admin or SafetyRole.APPROVER in actor.roles
        if not may:
            who = sorted(self._deps.roles.approver_ids - {actor.user_id})
            ask = (
                "ask one of " + ", ".join(mention(u) for u in who[:5])
                if who
                else "none are configured (`RUNCTL_APPROVERS`, `RUNCTL_ADMINS`)"
            )
            self._audit.event(actor.user_id, "train:cancel", "refused", target=job_id)
            return self._refused(
                f"Job `{job_id}` belongs to {mention(job.owner)}: only they can cancel it, or an approver or "
                f"admin: {ask}.",
                job_id=job_id,
            )
        try:
            command_ids = self._deps.provider.run_command(
                [job.instance_id], cancel_script(job.id), comment=f"runctl cancel {job.id}"
            )
        except ProviderError as exc:
            self._audit.event(
                actor.user_id, "train:cancel", "failed", target=job_id, detail={"error": str(exc)}
            )
            summary = f"I could not reach `{job.instance_id}` to cancel `{job_id}`: {views.plain(str(exc))}"
            text, blocks = views.note(f":x: {summary}", fallback=f"Could not cancel {job_id}")
            return TrainOutcome(
                TrainStatus.FAILED, summary, text, blocks, job_id=job_id, instance_id=job.instance_id
            )
        self._audit.event(
            actor.user_id, "train:cancel", "sent", target=job_id, detail={"command_id": command_ids[0]}
        )
        summary = f"cancelling `{job_id}`: SIGTERM now, SIGKILL in 30 s if it has not stopped"
        text, blocks = views.note(
            f":heavy_multiplication_x: {mention(actor.user_id)} asked to cancel `{job_id}`: SIGTERM now, "
            "SIGKILL in 30 s if it has not stopped. Its output and checkpoints are still uploaded; the "
            "result follows here.",
            fallback=f"Cancelling {job_id}",
        )
        ref = self._tell(job, text, blocks)
        return TrainOutcome(
            TrainStatus.CANCELLING,
            summary,
            text,
            blocks,
            job_id=job_id,
            instance_id=job.instance_id,
            message=ref,
        )

    # --- read-only answers -----------------------------------------------------------------------

    def logs(self, actor: Actor, target: str, lines: int = LOG_LINES_DEFAULT) -> TrainingReply:
        """The end of a job's log (a job id, or a machine's latest job), read with one SSM command."""
        del actor  # logs are readable by every user, like the job list
        job = self._job_for(target)
        if job is None:
            if target.startswith(v.JOB_ID_PREFIX):
                return TrainingReply(*views.note(f"There is no job `{target}`."))
            return TrainingReply(*views.note(f"No training job has run on `{target}`."))
        try:
            inst = self._deps.provider.describe(job.instance_id)
        except ProviderError as exc:
            return TrainingReply(
                *views.note(f"I could not look `{job.instance_id}` up: {views.plain(str(exc))}")
            )
        if inst is None or inst.state is not InstanceState.RUNNING:
            state = "gone" if inst is None else inst.state.value
            return TrainingReply(
                *views.note(
                    f"The log of `{job.id}` is on `{job.instance_id}`, which is {state}; I can read it "
                    "only while the machine runs."
                )
            )
        try:
            command_ids = self._deps.provider.run_command(
                [job.instance_id], logs_script(job.id, lines), comment=f"runctl logs {job.id}"
            )
            result = self._answer(command_ids[0], job.instance_id)
        except ProviderError as exc:
            return TrainingReply(
                *views.note(f"I could not read the log from `{job.instance_id}`: {views.plain(str(exc))}")
            )
        tail = parse_logs(result.stdout) if result is not None else None
        if tail is None or tail.job_id != job.id:
            state = result.status.value.replace("_", " ") if result is not None else "no answer"
            return TrainingReply(
                *views.note(
                    f"The log of `{job.id}` is not available yet: `{job.instance_id}` has not answered "
                    f"(SSM: {state}). Try again in a few seconds."
                )
            )
        if not tail.found:
            return TrainingReply(
                *views.note(
                    f"`{job.instance_id}` has no log for `{job.id}` (its job directory is not there: the "
                    "job never started on it, or the disk was replaced)."
                )
            )
        return TrainingReply(*views.logs_answer(job, tail, lines))

    def _answer(self, command_id: str, instance_id: str) -> CommandResult | None:
        """Read one machine's answer, waiting a little for it: SSM runs the command asynchronously."""
        waited = 0.0
        delay = 0.25
        while True:
            results = self._deps.provider.command_results(command_id, [instance_id])
            result = results[0] if results else None
            if result is not None and result.status in _FINAL_COMMAND:
                return result
            if waited >= self._answer_wait:
                return result
            self._sleep(delay)
            waited += delay
            delay = min(delay * 2, 1.0)

    def _job_for(self, target: str) -> TrainingJob | None:
        if target.startswith(v.JOB_ID_PREFIX):
            return self._deps.repos.jobs.get(target)
        on_machine = self._deps.repos.jobs.list_by_status(list(JobStatus), instance_ids=[target])
        return on_machine[-1] if on_machine else None

    def jobs(self, actor: Actor, all_users: bool = False) -> TrainingReply:
        """Running jobs and recent ones, from the database (no cloud calls)."""
        repos = self._deps.repos
        now = self._deps.clock.now()
        if all_users:
            recent = [
                j
                for j in repos.jobs.list_by_status(list(FINISHED_JOB_STATUSES))
                if j.finished_at is not None and now - j.finished_at <= _RECENT_JOBS
            ]
            found = repos.jobs.list_active() + recent
            title, empty = "Everyone's training jobs", "No jobs ran in the last 7 days."
        else:
            mine = repos.jobs.list_for_owner(actor.user_id, limit=2 * views.MAX_ROWS)
            active = [j for j in repos.jobs.list_active() if j.owner == actor.user_id]
            found = list({j.id: j for j in [*active, *mine]}.values())
            title, empty = "Your training jobs", "You have no training jobs. Start one with `/runctl train`."
        found.sort(key=lambda j: (j.status not in ACTIVE_JOB_STATUSES, -j.started_at.timestamp(), j.id))
        return TrainingReply(*views.jobs_list(title, found, now, show_owner=all_users, empty=empty))

    def checkpoints(self, target: str | S3Uri) -> TrainingReply:
        """A job's checkpoints (or any prefix's objects), newest first, with what a resume would use."""
        if isinstance(target, S3Uri):
            prefix = _s3_prefix(target)
        else:
            job = self._deps.repos.jobs.get(target)
            if job is None:
                return TrainingReply(*views.note(f"There is no job `{target}`."))
            try:
                spec, _origin = self._spec_of(job)
            except ValidationError as exc:
                return TrainingReply(*views.note(f"Job `{target}` has an unreadable spec: {exc.message}"))
            if spec.checkpoint_uri is None:
                return TrainingReply(
                    *views.note(
                        f"Job `{target}` keeps its checkpoints on its machine only (it was started without "
                        "`--output`)."
                    )
                )
            prefix = _s3_prefix(spec.checkpoint_uri)
        try:
            items = newest_first(self._list_checkpoints(prefix))
        except CheckpointsUnavailable as exc:
            return TrainingReply(
                *views.note(f"I could not list {views.code(str(prefix))}: {views.plain(str(exc))}")
            )
        latest = latest_checkpoint(prefix, items)
        # A folder checkpoint is marked on its newest object, which comes first in this order.
        resume_key = next(
            (item.uri.key for item in items if latest is not None and item.uri.key.startswith(latest.key)),
            None,
        )
        rows = [
            views.CheckpointRow(
                name=item.uri.key[len(prefix.key) :] or item.uri.key,
                size=item.size,
                modified=item.modified,
                resume=item.uri.key == resume_key,
            )
            for item in items
        ]
        now = self._deps.clock.now()
        return TrainingReply(*views.checkpoints_answer(str(prefix), rows, now, total=len(rows)))

    def _list_checkpoints(self, prefix: S3Uri) -> list[Checkpoint]:
        if self._list_objects is None:
            raise CheckpointsUnavailable("listing S3 is not configured for this bot")
        base = _s3_prefix(prefix)
        try:
            raw = self._list_objects(base.bucket, base.key)
        except Exception as exc:  # the lister is an injected adapter: any failure is "could not list"
            raise CheckpointsUnavailable(str(exc)) from exc
        items: list[Checkpoint] = []
        for obj in raw:
            key = str(obj.get("Key") or "")
            modified = obj.get("LastModified")
            if not key or key.endswith("/") or not isinstance(modified, datetime):
                continue
            items.append(Checkpoint(S3Uri(base.bucket, key), int(obj.get("Size") or 0), modified))
        return items

    # --- helpers ---------------------------------------------------------------------------------

    def _spec_of(self, job: TrainingJob) -> tuple[JobSpec, _Origin]:
        """The recorded spec; for a job recorded elsewhere (no `train` operation), what its row holds."""
        op = self._deps.repos.operations.get(job.id)
        if op is not None and op.kind == TRAIN_KIND and isinstance(op.params.get("spec"), dict):
            p = op.params
            origin = _Origin(
                instance_type=str(p["instance_type"]) if p.get("instance_type") else None,
                spot=bool(p.get("spot")),
                project=str(p["project"]) if p.get("project") else None,
            )
            return JobSpec.from_params(p["spec"]), origin
        row = self._deps.repos.resources.get(job.instance_id)
        origin = _Origin(
            instance_type=row.instance_type if row else None,
            spot=bool(row and row.lifecycle == Lifecycle.SPOT.value),
            project=row.project if row else None,
        )
        output = _s3_prefix(v.s3_uri(job.output_uri, field="output")) if job.output_uri else None
        if output is not None:
            checkpoint: S3Uri | None = S3Uri(output.bucket, output.key + "checkpoints/")
        elif self._checkpoint_base is not None:
            base = _s3_prefix(self._checkpoint_base)
            checkpoint = S3Uri(base.bucket, f"{base.key}{job.id}/")
        else:
            checkpoint = None
        spec = JobSpec(
            code_uri=v.s3_uri(job.code_uri, field="code"),
            entry=job.entry,
            requirements=None,
            data_uri=v.s3_uri(job.data_uri, field="data") if job.data_uri else None,
            output_uri=output,
            env=tuple(job.env.items()),
            script_args=tuple(job.args),
            checkpoint_uri=checkpoint,
            auto_resume=job.auto_resume,
            python=self._python,
            checkpoint_sync_seconds=self._sync_seconds,
        )
        return spec, origin

    def _card(
        self, job: TrainingJob, status: str, *, instance_type: str | None = None, detail: str = ""
    ) -> views.Message:
        op = self._deps.repos.operations.get(job.id)
        params = op.params if op is not None and op.kind == TRAIN_KIND else {}
        spec = params.get("spec") if isinstance(params.get("spec"), dict) else {}
        card = views.JobCard(
            status=status,
            detail=detail,
            instance_type=instance_type
            or (str(params["instance_type"]) if params.get("instance_type") else None),
            requirements=str(spec["requirements"]) if spec and spec.get("requirements") else None,
            resume_from=str(params["resume_from"]) if params.get("resume_from") else None,
        )
        return views.job_card(job, card)

    def _refresh_card(self, job_id: str, end: views.JobEnd) -> None:
        """The job's own message shows how it ended (edited in place, so the channel stays current)."""
        job = self._deps.repos.jobs.get(job_id)
        if job is None or not (job.slack_channel and job.slack_ts):
            return
        text, blocks = self._card(job, job.status, instance_type=end.instance_type, detail=end.sentence)
        try:  # through the outbox: during a Slack outage the newest card is sent once Slack is back
            self._deps.outbox.update(MessageRef(job.slack_channel, job.slack_ts), text, blocks)
        except Exception:
            log.exception("could not update the message of job %s", job_id)

    def _tell(self, job: TrainingJob, text: str, blocks: list[bk.Block]) -> MessageRef | None:
        """In the job's thread; a job without one tells its owner directly. Through the outbox, keyed by
        the job and the words, so an outage delays the message and a repeated call does not repeat it;
        the reference is None when the message waits for Slack."""
        outbox = self._deps.outbox
        key = f"job:{job.id}:" + hashlib.sha256(f"{text}\x00{blocks!r}".encode()).hexdigest()[:24]
        try:
            if job.slack_channel and job.slack_ts:
                return outbox.post(key, job.slack_channel, text, blocks, thread_ts=job.slack_ts).ref
            if job.owner.startswith(("U", "W")):
                return outbox.dm(key, job.owner, text, blocks).ref
        except Exception:
            log.exception("could not tell the thread of job %s: %s", job.id, text)
        return None

    def _post(self, channel: str, text: str, blocks: list[bk.Block]) -> MessageRef | None:
        try:
            return self._deps.notifier.post(channel, text, blocks)
        except Exception:
            log.exception("could not post in %s: %s", channel, text)
            return None

    def _transition(
        self,
        job_id: str,
        status: JobStatus,
        *,
        expected: str | Iterable[str] = ACTIVE_JOB_STATUSES,
        version: int | None = None,
        **fields: Any,
    ) -> bool:
        return self._deps.repos.jobs.transition(
            job_id, expected, status.value, expected_version=version, **fields
        )

    def _set_fields(self, job_id: str, **fields: Any) -> None:
        """Fields that are not a state change (the launch's command id): kept against concurrent moves."""
        for _attempt in range(5):
            row = self._deps.repos.jobs.get(job_id)
            if row is None:
                return
            if self._deps.repos.jobs.transition(
                job_id, row.status, row.status, expected_version=row.version, **fields
            ):
                return
        log.warning(
            "job %s: could not record %s after repeated concurrent changes", job_id, ", ".join(fields)
        )

    @staticmethod
    def _refused(summary: str, *, job_id: str | None = None, instance_id: str | None = None) -> TrainOutcome:
        text, blocks = views.note(summary)
        return TrainOutcome(
            TrainStatus.REFUSED, summary, text, blocks, job_id=job_id, instance_id=instance_id
        )
