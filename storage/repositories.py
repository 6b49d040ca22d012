"""The repositories, and a bundle of all of them over one engine for the services to take."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from storage.repos import (
    MISSING_REASON_CODE,
    ApprovalRepository,
    AuditRepository,
    CleanupMarkRepository,
    DeliveryRepository,
    JobRepository,
    JobRunRepository,
    LeaseRepository,
    MarkResult,
    NoticeRepository,
    OperationRepository,
    PriceCacheRepository,
    ResourceRepository,
    SubscriptionRepository,
    TransitionRecord,
)

__all__ = [
    "MISSING_REASON_CODE",
    "ApprovalRepository",
    "AuditRepository",
    "CleanupMarkRepository",
    "DeliveryRepository",
    "JobRepository",
    "JobRunRepository",
    "LeaseRepository",
    "MarkResult",
    "NoticeRepository",
    "OperationRepository",
    "PriceCacheRepository",
    "Repositories",
    "ResourceRepository",
    "SubscriptionRepository",
    "TransitionRecord",
]


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
        )
