"""The repositories, and a bundle of all of them over one engine for the services to take."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from storage import repos
from storage.repos import MISSING_REASON_CODE as MISSING_REASON_CODE
from storage.repos import (
    ApprovalRepository,
    AuditRepository,
    CleanupMarkRepository,
    DeliveryRepository,
    HistoryRepository,
    JobRepository,
    JobRunRepository,
    LeaseRepository,
    NoticeRepository,
    OperationRepository,
    OutboxRepository,
    PriceCacheRepository,
    ResourceRepository,
    SubscriptionRepository,
)
from storage.repos import TransitionRecord as TransitionRecord

# Everything `storage.repos` exports, plus the bundle.
__all__ = [*repos.__all__, "Repositories"]


@dataclass(frozen=True)
class Repositories:
    resources: ResourceRepository
    operations: OperationRepository
    approvals: ApprovalRepository
    jobs: JobRepository
    cleanup_marks: CleanupMarkRepository
    subscriptions: SubscriptionRepository
    prices: PriceCacheRepository
    audit: AuditRepository
    deliveries: DeliveryRepository
    leases: LeaseRepository
    job_runs: JobRunRepository
    notices: NoticeRepository
    history: HistoryRepository
    outbox: OutboxRepository

    @classmethod
    def from_engine(cls, engine: Engine) -> Repositories:
        return cls(
            resources=ResourceRepository(engine),
            operations=OperationRepository(engine),
            approvals=ApprovalRepository(engine),
            jobs=JobRepository(engine),
            cleanup_marks=CleanupMarkRepository(engine),
            subscriptions=SubscriptionRepository(engine),
            prices=PriceCacheRepository(engine),
            audit=AuditRepository(engine),
            deliveries=DeliveryRepository(engine),
            leases=LeaseRepository(engine),
            job_runs=JobRunRepository(engine),
            notices=NoticeRepository(engine),
            history=HistoryRepository(engine),
            outbox=OutboxRepository(engine),
        )
