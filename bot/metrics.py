"""Prometheus metrics, served on `/metrics`. One registry per process; names follow Prometheus style."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter(
    "runctl_commands_total", "Slash commands by verb and outcome", ["verb", "outcome"], registry=REGISTRY
)
ACK_SECONDS = Histogram(
    "runctl_slack_request_seconds",
    "Time to answer Slack's HTTP request (the ack)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)
PROVIDER_CALLS = Counter(
    "runctl_provider_calls_total",
    "Cloud API requests by action and outcome",
    ["action", "outcome"],
    registry=REGISTRY,
)
PROVIDER_RETRIES = Counter(
    "runctl_provider_retries_total",
    "Cloud API retries by action and reason",
    ["action", "reason"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "runctl_scheduler_job_seconds", "Scheduled job durations", ["job", "outcome"], registry=REGISTRY
)
APPROVALS = Counter("runctl_approvals_total", "Approval decisions by outcome", ["outcome"], registry=REGISTRY)
IDLE_MACHINES = Gauge(
    "runctl_idle_machines", "Machines proven idle in the last idle cycle", registry=REGISTRY
)
FLEET_HOURLY_USD = Gauge(
    "runctl_fleet_usd_per_hour", "What the running managed fleet costs per hour", registry=REGISTRY
)

WORK_PENDING = Gauge(
    "runctl_work_pending",
    "Acked Slack requests whose work the work process has not reported done",
    registry=REGISTRY,
)
OUTBOX_MESSAGES = Counter(
    "runctl_slack_outbox_total",
    "Slack messages through the outbox: sent, queued after a failure, resent, or given up",
    ["outcome"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
