"""One repository per aggregate; each public method is one transaction."""

from storage.repos.approvals import ApprovalRepository
from storage.repos.audit import AuditRepository
from storage.repos.cleanup import CleanupMarkRepository, MarkResult
from storage.repos.deliveries import DeliveryRepository
from storage.repos.history import HistoryRepository, HistorySnapshot, ResourceSummary, TransitionPoint
from storage.repos.jobs import JobRepository
from storage.repos.operations import OperationRepository
from storage.repos.outbox import OutboxMessage, OutboxRepository
from storage.repos.prices import PriceCacheRepository
from storage.repos.resources import (
    MISSING_REASON_CODE,
    ResourceRepository,
    TransitionRecord,
)
from storage.repos.scheduling import JobRunRepository, LeaseRepository, NoticeRepository
from storage.repos.subscriptions import SubscriptionRepository

__all__ = [
    "MISSING_REASON_CODE",
    "ApprovalRepository",
    "AuditRepository",
    "CleanupMarkRepository",
    "DeliveryRepository",
    "HistoryRepository",
    "HistorySnapshot",
    "JobRepository",
    "JobRunRepository",
    "LeaseRepository",
    "MarkResult",
    "NoticeRepository",
    "OperationRepository",
    "OutboxMessage",
    "OutboxRepository",
    "PriceCacheRepository",
    "ResourceRepository",
    "ResourceSummary",
    "SubscriptionRepository",
    "TransitionPoint",
    "TransitionRecord",
]
