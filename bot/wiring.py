"""Composition root: settings in, a running application out. The only module that knows every part."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.core.access import RoleBook
from bot.core.clock import Clock, SystemClock
from bot.core.policy import (
    ApprovalPolicy,
    BreakerPolicy,
    IdlePolicy,
    IdleStatistic,
    SafetyPolicy,
    WorkingHours,
)
from bot.services.container import BotServices
from bot.services.deps import ServiceDeps
from bot.services.ports import Notifier
from providers.aws.config import AwsConfig
from providers.base import Provider
from providers.registry import default_registry
from storage.engine import make_engine
from storage.repositories import Repositories

log = logging.getLogger(__name__)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def policy_from(settings: Settings) -> SafetyPolicy:
    def hhmm(text: str) -> time:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))

    return SafetyPolicy(
        min_age_command=settings.min_age_command,
        min_age_idle=settings.min_age_idle,
        idle=IdlePolicy(
            threshold_percent=settings.idle_cpu_threshold,
            window=settings.idle_window,
            min_coverage=settings.idle_min_coverage,
            statistic=IdleStatistic(settings.idle_statistic),
            period_seconds=settings.idle_period_seconds,
        ),
        grace=settings.grace_period,
        working_hours=WorkingHours(
            start=hhmm(settings.work_start),
            end=hhmm(settings.work_end),
            workdays=frozenset(_DAYS.index(d) for d in settings.work_days),
            default_timezone=settings.default_timezone,
        ),
        breaker=BreakerPolicy(
            max_actions=settings.breaker_max_actions, max_fleet_share=settings.breaker_max_share
        ),
        max_keeps_per_machine=settings.keep_max_per_machine,
        approvals=ApprovalPolicy(
            expiry=settings.approval_expiry,
            cost_per_hour=Decimal(str(settings.approval_cost_per_hour)),
            user_max_instances=settings.user_max_instances,
            user_max_cost_per_hour=Decimal(str(settings.user_max_cost_per_hour)),
        ),
    )


def roles_from(settings: Settings) -> RoleBook:
    return RoleBook.of(
        admins=settings.admins, approvers=settings.approvers, users=settings.users, channels=settings.channels
    )


def aws_config_from(settings: Settings) -> AwsConfig:
    return AwsConfig(
        region=settings.aws_region,
        profile=settings.aws_profile,
        endpoint_url=settings.aws_endpoint_url,
        read_timeout_seconds=settings.aws_read_timeout.total_seconds(),
        ami_id=settings.ami_id,
        gpu_root_volume_gb=settings.gpu_root_volume_gb,
        default_root_volume_gb=settings.root_volume_gb,
        iam_instance_profile=settings.iam_instance_profile,
        subnet_id=settings.subnet_id,
        security_group_ids=tuple(settings.security_group_ids),
        key_name=settings.key_name,
        quota_warn_at=settings.quota_warn,
        quota_refuse_at=settings.quota_refuse,
        gpu_metric_namespace=settings.gpu_metric_namespace,
        gpu_metric_name=settings.gpu_metric_name,
        gpu_metric_dimension=settings.gpu_metric_dimension,
        price_ttl=settings.pricing_ttl,
        use_pricing_api=settings.pricing_api,
    )


def build_provider(settings: Settings, repos: Repositories) -> Provider:
    """The first enabled provider (the fleet lives in one cloud today; the registry allows more)."""
    registry = default_registry()
    name = settings.providers[0] if settings.providers else "aws"
    return registry.create(name, config=aws_config_from(settings), price_cache=repos.prices)


@dataclass
class Application:
    settings: Settings
    engine: Engine
    services: BotServices
    slack_app: Any  # slack_bolt.App
    role: str = "all"
    scheduled: Any = None  # bot.scheduler.runtime.ScheduledServices
    slack: Any = None  # bot.slack.app.SlackBot: its work kinds and hand-off
    worker: Any = None  # bot.work_process.ProcessHandoff when the work runs in its own process
    background: list[Any] = field(default_factory=list)
    _slack_checked: tuple[float, str] | None = None

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Database reachable and migrated (a newer schema from a rolling upgrade counts), Slack auth ok."""
        from storage.migrate import current_revision, head_revision, known_revisions

        detail: dict[str, Any] = {}
        try:
            current = current_revision(self.engine)
            if current == head_revision():
                detail["database"] = "ok"
            elif current is not None and current not in known_revisions():
                detail["database"] = f"ok (schema {current} is newer than this version)"
            else:
                detail["database"] = f"schema at {current or 'nothing'}: run `runctl-bot migrate`"
        except Exception as exc:
            detail["database"] = f"unreachable: {type(exc).__name__}"
        detail["slack"] = self._slack_status()
        ok = detail["database"].startswith("ok") and detail["slack"] == "ok"
        if self.worker is not None:
            detail["work_process"] = "ok" if self.worker.alive() else "not running (restarting)"
            ok = ok and detail["work_process"] == "ok"
        return ok, {"status": "ready" if ok else "not ready", **detail}

    def _slack_status(self) -> str:
        """`auth.test`, cached for a minute: probes are frequent and the method is rate limited."""
        import time

        now = time.monotonic()
        if self._slack_checked and now - self._slack_checked[0] < 60:
            return self._slack_checked[1]
        try:
            self.slack_app.client.auth_test()
            status = "ok"
        except Exception as exc:
            status = f"auth.test failed: {type(exc).__name__}"
        self._slack_checked = (now, status)
        return status

    def use_work_process(self, *, scheduler: bool) -> None:
        """Send the work after each ack to a child process (`serve`); call before `start`."""
        from bot.work_process import ProcessHandoff

        self.worker = ProcessHandoff(self.settings, scheduler=scheduler)
        self.slack.use_handoff(self.worker)
        self.background.append(self.worker)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the work after every ack so far, wherever it runs; True when none is left."""
        if self.worker is not None:
            return bool(self.worker.drain(timeout))
        return self.services.drain(timeout)

    def metrics(self) -> bytes:
        """This process's metrics, plus the work process's when there is one and it answers."""
        from bot.metrics import exposition

        local = exposition()
        if self.worker is None:
            return local
        from bot.work_process import merge_expositions

        remote = self.worker.exposition()
        return merge_expositions(local, remote) if remote is not None else local

    def start(self) -> None:
        for part in self.background:
            part.start()

    def stop(self) -> None:
        for part in reversed(self.background):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", part)
        self.services.shutdown()
        self.engine.dispose()


def install_provider_metrics() -> None:
    """Count every cloud request and retry in `/metrics` (providers stay free of Prometheus)."""
    from bot.metrics import PROVIDER_CALLS, PROVIDER_RETRIES
    from providers.aws import calls

    def observe(operation: str, outcome: str, attempts: int) -> None:
        PROVIDER_CALLS.labels(operation, outcome).inc(attempts)
        if attempts > 1:
            PROVIDER_RETRIES.labels(operation, "retried").inc(attempts - 1)

    calls.CALL_OBSERVER = observe


def build_services(
    settings: Settings,
    *,
    engine: Engine,
    notifier: Notifier,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> BotServices:
    repos = Repositories.from_engine(engine)
    deps = ServiceDeps(
        provider=provider or build_provider(settings, repos),
        repos=repos,
        notifier=notifier,
        clock=clock or SystemClock(),
        policy=policy_from(settings),
        roles=roles_from(settings),
        enforce=settings.idle_enforce,
        team_channel=settings.team_channel,
    )
    return BotServices.build(deps, workers=settings.workers)


def build_application(
    settings: Settings,
    *,
    role: str = "web",
    clock: Clock | None = None,
    provider: Provider | None = None,
    slack_retry_handlers: list[Any] | None = None,
) -> Application:
    from bot.slack.app import create_app
    from bot.slack.client import make_web_client
    from bot.slack.notifier import SlackNotifier

    install_provider_metrics()
    engine = make_engine(settings.database_url)
    client = make_web_client(settings, handlers=slack_retry_handlers)
    services = build_services(
        settings, engine=engine, notifier=SlackNotifier(client), provider=provider, clock=clock
    )
    bot = create_app(settings, services, client=client)
    from bot.scheduler.runtime import ScheduledServices, SchedulerRuntime
    from bot.services.report_commands import ReportCommands
    from bot.slack.reminder_buttons import register_reminder_buttons

    scheduled = ScheduledServices.build(services, settings)
    register_reminder_buttons(bot, services, scheduled.idle)
    reports = ReportCommands(services.deps, scheduled.reports, settings.default_timezone)
    bot.dispatcher.register("report", reports.report)
    bot.dispatcher.register("subscribe", reports.subscribe)
    bot.dispatcher.register("unsubscribe", reports.unsubscribe)
    from bot.services.training_commands import TrainingCommands
    from bot.slack.training_buttons import register_training_buttons

    for verb, handler in TrainingCommands(services.deps, scheduled.training).handlers().items():
        bot.dispatcher.register(verb, handler)
    register_training_buttons(bot, scheduled.training)
    application = Application(
        settings=settings,
        engine=engine,
        services=services,
        slack_app=bot.app,
        role=role,
        scheduled=scheduled,
        slack=bot,
    )
    if role in ("scheduler", "all"):
        application.background.append(
            SchedulerRuntime(
                services, settings, engine, scheduled=scheduled, lease_ttl=settings.scheduler_lease_ttl
            )
        )
    return application
