"""Table models. Every datetime is timezone-aware UTC in Python, whatever the database stores."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Index, Text, UniqueConstraint
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

# Named constraints: SQLite batch migrations can only drop or alter what has a name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out. SQLite keeps no offset, so values are stored as naive UTC there.

    Naive datetimes are refused rather than guessed at: a naive value is almost always a bug upstream.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(*, nullable: bool = False) -> Column[Any]:
    return Column(JSON(none_as_null=True), nullable=nullable)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES: frozenset[str] = frozenset({JobStatus.STARTING, JobStatus.RUNNING})


class MarkState(StrEnum):
    MARKED = "marked"
    NOTIFIED = "notified"
    KEPT = "kept"
    ACTED = "acted"
    UNMARKED = "unmarked"
    SKIPPED = "skipped"


# A mark in one of these states blocks a second mark for the same (instance, rule).
OPEN_MARK_STATES: frozenset[str] = frozenset({MarkState.MARKED, MarkState.NOTIFIED, MarkState.KEPT})


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class Resource(SQLModel, table=True):
    __tablename__ = "resources"

    id: str = Field(primary_key=True)  # the cloud's instance id
    provider: str
    region: str
    instance_type: str
    lifecycle: str
    state: str
    owner: str | None = Field(default=None, index=True)  # Slack user id
    project: str | None = Field(default=None, index=True)
    name: str | None = None
    launch_time: datetime = _when()
    first_seen: datetime = _when()
    last_seen: datetime = _when()
    closed_at: datetime | None = _when(nullable=True, index=True)
    operation_id: str | None = Field(default=None, index=True)
    tags: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    managed: bool = False


class StateTransition(SQLModel, table=True):
    __tablename__ = "state_transitions"
    __table_args__ = (Index("ix_state_transitions_resource_id_at", "resource_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    resource_id: str = Field(foreign_key="resources.id")
    from_state: str | None = None
    to_state: str
    at: datetime = _when()
    reason_code: str | None = None
    reason_message: str | None = Field(default=None, sa_type=Text)
    hourly_usd: float | None = None
    lifecycle: str


class Operation(SQLModel, table=True):
    __tablename__ = "operations"

    id: str = Field(primary_key=True)  # uuid4 hex; also the EC2 ClientToken
    kind: str = Field(index=True)
    requester: str
    channel: str | None = None
    status: str = Field(index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    instance_ids: list[str] = Field(default_factory=list, sa_column=_json())
    result: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    error: str | None = Field(default=None, sa_type=Text)
    slack_channel: str | None = None
    slack_ts: str | None = None
    created_at: datetime = _when(index=True)
    updated_at: datetime = _when()
    version: int = 0


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_expires_at", "status", "expires_at"),)

    id: str = Field(primary_key=True)
    operation_id: str = Field(foreign_key="operations.id", unique=True)
    requester: str
    status: str = ApprovalStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = _when(nullable=True)
    reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _when()
    expires_at: datetime = _when()
    slack_channel: str | None = None
    slack_ts: str | None = None
    version: int = 0


class TrainingJob(SQLModel, table=True):
    __tablename__ = "training_jobs"

    id: str = Field(primary_key=True)
    instance_id: str = Field(index=True)
    owner: str = Field(index=True)
    status: str = Field(default=JobStatus.STARTING, index=True)
    code_uri: str
    entry: str
    args: list[str] = Field(default_factory=list, sa_column=_json())
    env: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    data_uri: str | None = None
    output_uri: str | None = None
    command_id: str | None = None
    exit_code: int | None = None
    started_at: datetime = _when()
    finished_at: datetime | None = _when(nullable=True)
    slack_channel: str | None = None
    slack_ts: str | None = None
    auto_resume: bool = False
    resume_count: int = 0
    resumed_from: str | None = Field(default=None, foreign_key="training_jobs.id")
    version: int = 0


class CleanupMark(SQLModel, table=True):
    __tablename__ = "cleanup_marks"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(index=True)
    owner: str | None = None
    rule: str
    state: str = Field(default=MarkState.MARKED, index=True)
    marked_at: datetime = _when()
    notified_at: datetime | None = _when(nullable=True)
    keep_until: datetime | None = _when(nullable=True)
    keep_count: int = 0
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    acted_at: datetime | None = _when(nullable=True)
    dry_run: bool = True
    slack_channel: str | None = None
    slack_ts: str | None = None
    dm_channel: str | None = None
    dm_ts: str | None = None
    version: int = 0
    # "<instance_id>|<rule>" while the mark is open, NULL once closed: a portable partial unique index.
    open_key: str | None = Field(default=None, unique=True)


def open_mark_key(instance_id: str, rule: str) -> str:
    return f"{instance_id}|{rule}"


class ChannelSubscription(SQLModel, table=True):
    __tablename__ = "channel_subscriptions"
    __table_args__ = (UniqueConstraint("channel", "cadence"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    cadence: str
    weekday: int | None = None  # 0 = Monday, weekly only
    at_time: str  # "HH:MM" in `timezone`
    timezone: str
    created_by: str
    created_at: datetime = _when()
    last_sent_slot: str | None = None


class PriceCacheEntry(SQLModel, table=True):
    __tablename__ = "price_cache"

    instance_type: str = Field(primary_key=True)
    region: str = Field(primary_key=True)
    lifecycle: str = Field(primary_key=True)
    hourly_usd: float
    source: str
    as_of: datetime = _when()


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(index=True)
    actor: str
    action: str
    target: str | None = None
    rule: str | None = None
    result: str
    operation_id: str | None = Field(default=None, index=True)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=_json())


class SlackDelivery(SQLModel, table=True):
    __tablename__ = "slack_deliveries"

    key: str = Field(primary_key=True)
    first_seen: datetime = _when(index=True)


class SchedulerLease(SQLModel, table=True):
    """Which process runs the scheduled jobs; taken and renewed with one compare-and-set UPDATE."""

    __tablename__ = "scheduler_leases"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _when()
    renewed_at: datetime = _when()


class JobRun(SQLModel, table=True):
    """One run of one job for one time slot: a duplicate firing finds the row and does nothing."""

    __tablename__ = "job_runs"

    job_name: str = Field(primary_key=True)
    slot: str = Field(primary_key=True)
    holder: str
    started_at: datetime = _when(index=True)


class SentNotice(SQLModel, table=True):
    """Notices sent once per occurrence (a cost threshold crossed, a spot interruption seen)."""

    __tablename__ = "sent_notices"

    key: str = Field(primary_key=True)
    sent_at: datetime = _when(index=True)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    GAVE_UP = "gave_up"


class OutboxKind(StrEnum):
    POST = "post"  # chat.postMessage to a channel, optionally in a thread
    DM = "dm"  # conversations.open + chat.postMessage to a user
    UPDATE = "update"  # chat.update of an existing message; the latest content wins


class PendingMessage(SQLModel, table=True):
    """A Slack message that must not be lost to an outage: written before the first try, drained later.

    `key` is the idempotency key (one notice, one row). A sender holds a row through a lease
    (`lease_holder`, `lease_until`) taken by compare-and-set, so two drainers never send it twice;
    `version` moves when an update's content is replaced, so an older send cannot finish a newer one.
    Sent and abandoned rows stay a while, so the same key is never queued again.
    """

    __tablename__ = "pending_messages"
    __table_args__ = (Index("ix_pending_messages_status_next_attempt_at", "status", "next_attempt_at"),)

    key: str = Field(primary_key=True)
    kind: str
    channel: str  # a channel id, or the user id for a DM
    thread_ts: str | None = None
    ts: str | None = None  # the message an update edits
    text: str = Field(sa_type=Text)
    blocks: list[dict[str, Any]] | None = Field(default=None, sa_column=_json(nullable=True))
    status: str = OutboxStatus.PENDING
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _when()
    next_attempt_at: datetime = _when()
    lease_holder: str | None = None
    lease_until: datetime | None = _when(nullable=True)
    finished_at: datetime | None = _when(nullable=True, index=True)
    sent_ts: str | None = None
    version: int = 0
