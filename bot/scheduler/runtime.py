"""The scheduler of one bot process, and the rules that make several processes run each job once.

- A lease row (`scheduler_leases`) names the one process whose APScheduler runs jobs; others keep theirs
  paused and take over once the holder stops renewing (TTL). No clustering beyond one UPDATE.
- Every run first claims `(job, slot)` in `job_runs`, so a duplicate firing during a lease hand-over
  does nothing.
- Jobs live in a `SQLAlchemyJobStore` on the bot's database (coalesce, misfire grace, max_instances=1);
  a restart keeps a stored job's next run time unless its interval changed, so restarting more often
  than a job's interval does not starve it. The lease renewal runs from a plain thread of this process.
- Each reconcile first drains the Slack outbox: messages an outage held back go out once Slack is back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.logs import log_context
from bot.metrics import IDLE_MACHINES, JOB_SECONDS
from bot.scheduler import jobs as job_entry
from bot.services.alerts import AlertThresholds, CostAlertService
from bot.services.container import BotServices
from bot.services.notifications import StateNotifier
from bot.services.outbox import DrainReport
from bot.services.reminders import CycleReport, IdleCycleService
from bot.services.reports import ReportService
from bot.services.training import ListObjects, TrainingService

log = logging.getLogger(__name__)

LEASE = "scheduler"


@dataclass(frozen=True)
class JobSpec:
    name: str
    every: timedelta
    run: Callable[[], object]


@dataclass
class JobStats:
    runs: int = 0
    skipped: int = 0
    failures: int = 0
    last_seconds: float = 0.0
    last_result: object = None


@dataclass
class ScheduledServices:
    """The use cases only the scheduler drives, built on the same dependencies as the rest."""

    idle: IdleCycleService
    reports: ReportService
    alerts: CostAlertService
    state_notices: StateNotifier
    training: TrainingService

    @classmethod
    def build(cls, services: BotServices, settings: Settings) -> ScheduledServices:
        deps = services.deps
        training = TrainingService(
            deps,
            services.operations,
            services.auditor,
            prices=services.prices,
            approvals=services.approvals,
            list_objects=s3_lister(deps.provider),
        )
        return cls(
            idle=IdleCycleService(
                deps,
                services.prices,
                services.operations,
                services.approvals,
                services.auditor,
                # Only a zone the admin chose stands in for an owner's unknown one, never the UTC default.
                team_timezone=(
                    settings.default_timezone if "default_timezone" in settings.model_fields_set else None
                ),
            ),
            reports=ReportService(deps),
            alerts=CostAlertService(
                deps,
                AlertThresholds(
                    machine_cost=settings.alert_machine_cost,
                    machine_hours=settings.alert_machine_hours,
                    user_daily_cost=settings.alert_user_daily_cost,
                    team_monthly_budget=settings.team_monthly_budget,
                ),
            ),
            state_notices=StateNotifier(deps, on_spot_interruption=training.on_spot_interruption),
            training=training,
        )


def s3_lister(provider: object) -> ListObjects | None:
    """Checkpoint listings through the provider's own boto3 session (None for providers without S3)."""
    clients = getattr(provider, "clients", None)
    if clients is None:
        return None

    def list_objects(bucket: str, prefix: str) -> list[dict[str, Any]]:
        pages = clients.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [dict(item) for page in pages for item in page.get("Contents", [])]

    return list_objects


class SchedulerRuntime:
    def __init__(
        self,
        services: BotServices,
        settings: Settings,
        engine: Engine,
        *,
        holder: str | None = None,
        lease_ttl: timedelta = timedelta(seconds=30),
        scheduled: ScheduledServices | None = None,
    ) -> None:
        self.services = services
        self.settings = settings
        self.engine = engine
        self.scheduled = scheduled or ScheduledServices.build(services, settings)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_ttl = lease_ttl
        self.stats: dict[str, JobStats] = {}
        self._scheduler: Any = None
        self._leading = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.jobs = {spec.name: spec for spec in self._specs()}
        # How long an undelivered Slack message is retried (RUNCTL_OUTBOX_MAX_AGE).
        self.outbox_max_age: timedelta = settings.outbox_max_age
        self.last_drain: DrainReport | None = None

    def _specs(self) -> list[JobSpec]:
        s = self.scheduled
        return [
            JobSpec("reconcile", self.settings.reconcile_interval, self._reconcile),
            JobSpec("idle", self.settings.idle_interval, s.idle.run),
            JobSpec("approvals", timedelta(minutes=1), self.services.approvals.expire_due),
            JobSpec("reports", timedelta(minutes=1), s.reports.send_due),
            JobSpec("alerts", timedelta(minutes=5), s.alerts.run),
            JobSpec("housekeeping", timedelta(hours=1), self._housekeeping),
            JobSpec("jobs", timedelta(minutes=1), s.training.poll),
        ]

    # --- jobs ------------------------------------------------------------------------------------

    def _reconcile(self) -> object:
        self.drain_outbox()
        result = self.services.tracking.reconcile()
        return self.scheduled.state_notices.tell(result.transitions, result.instances)

    def _housekeeping(self) -> object:
        repos, now = self.services.deps.repos, self.services.deps.clock.now()
        return {
            "deliveries": repos.deliveries.purge_before(now - timedelta(days=1)),
            "job_runs": repos.job_runs.purge_before(now - timedelta(days=7)),
            "outbox": repos.outbox.purge_finished_before(now - timedelta(days=7)),
        }

    def drain_outbox(self) -> DrainReport | None:
        """Re-send the Slack messages an outage held back; a failure here never stops the reconcile."""
        try:
            self.last_drain = self.services.deps.outbox.drain(self.outbox_max_age)
        except Exception:
            log.exception("draining the Slack outbox failed")
            return None
        return self.last_drain

    # --- coordination ----------------------------------------------------------------------------

    def renew_lease(self) -> bool:
        """Take or renew the lease; pause or resume this process's scheduler to match."""
        repos, now = self.services.deps.repos, self.services.deps.clock.now()
        try:
            held = repos.leases.acquire(LEASE, self.holder, now, self.lease_ttl)
        except Exception:
            log.exception("scheduler lease renewal failed")
            held = False
        if held != self._leading:
            log.info("scheduler lease %s by %s", "taken" if held else "lost", self.holder)
            self._leading = held
            if self._scheduler is not None:
                (self._scheduler.resume if held else self._scheduler.pause)()
        return held

    @property
    def leading(self) -> bool:
        return self._leading

    def slot(self, name: str, now: datetime) -> str:
        every = max(1, int(self.jobs[name].every.total_seconds()))
        return str(int(now.timestamp()) // every)

    def run(self, name: str) -> bool:
        """Run `name` for the current slot if this process leads and nobody ran it yet; True if it ran."""
        spec = self.jobs[name]
        stats = self.stats.setdefault(name, JobStats())
        repos, now = self.services.deps.repos, self.services.deps.clock.now()
        if not self._leading or not repos.job_runs.claim(name, self.slot(name, now), self.holder, now):
            stats.skipped += 1
            return False
        started = time.perf_counter()
        outcome = "ok"
        try:
            with log_context(job=name):
                stats.last_result = spec.run()
            stats.runs += 1
            self._observe(name, stats.last_result)
            return True
        except Exception:
            outcome = "error"
            stats.failures += 1
            log.exception("scheduled job %s failed", name)
            return True
        finally:
            stats.last_seconds = time.perf_counter() - started
            JOB_SECONDS.labels(name, outcome).observe(stats.last_seconds)

    @staticmethod
    def _observe(name: str, result: object) -> None:
        if name == "idle" and isinstance(result, CycleReport):
            IDLE_MACHINES.set(len(result.steps.get("notify", [])) + len(result.steps.get("wait", [])))

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone=UTC,
        )
        scheduler.start(paused=True)
        self._install_jobs(scheduler)
        self._scheduler = scheduler
        job_entry.register(self)
        self.renew_lease()
        self._renewer = threading.Thread(target=self._renew_loop, name="runctl-lease", daemon=True)
        self._renewer.start()

    def _install_jobs(self, scheduler: Any) -> None:
        """Add each job, keeping a stored job whose interval is unchanged (and so its next run time), and
        replacing one whose interval changed. `replace_existing` alone would restart every interval from now
        at each start, and an hourly job would never run on a bot restarted more often than hourly."""
        from apscheduler.triggers.interval import IntervalTrigger

        for spec in self.jobs.values():
            seconds = max(1, int(spec.every.total_seconds()))
            stored = scheduler.get_job(spec.name)
            if (
                stored is not None
                and isinstance(stored.trigger, IntervalTrigger)
                and stored.trigger.interval == timedelta(seconds=seconds)
                and stored.func_ref == f"{job_entry.__name__}:run_job"
                and list(stored.args) == [spec.name]
            ):
                continue
            scheduler.add_job(
                job_entry.run_job,
                "interval",
                seconds=seconds,
                args=[spec.name],
                id=spec.name,
                replace_existing=True,
            )

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_ttl.total_seconds() / 3):
            self.renew_lease()

    def stop(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
        job_entry.register(None)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        if self._leading:
            try:
                self.services.deps.repos.leases.release(LEASE, self.holder)
            except Exception:
                log.exception("could not release the scheduler lease")
        self._leading = False
