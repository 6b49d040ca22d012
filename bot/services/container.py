"""All use cases over one set of dependencies, plus the bounded executor that runs work after an ack."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from bot.services.approvals import ApprovalService
from bot.services.audit import Auditor
from bot.services.cleanup import BREAKER_SOURCE as CLEANUP_BREAKER_SOURCE
from bot.services.cleanup import CleanupService
from bot.services.costs import CostService
from bot.services.deps import ServiceDeps
from bot.services.operations import OperationService
from bot.services.pricing import Prices
from bot.services.tracking import TrackingService


@dataclass
class BotServices:
    deps: ServiceDeps
    prices: Prices
    auditor: Auditor
    operations: OperationService
    approvals: ApprovalService
    cleanup: CleanupService
    costs: CostService
    tracking: TrackingService
    executor: ThreadPoolExecutor
    _pending: set[Future[Any]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, deps: ServiceDeps, *, workers: int = 8) -> BotServices:
        prices = Prices(deps.provider)
        auditor = Auditor(deps.repos.audit)
        operations = OperationService(deps, prices, auditor)
        costs = CostService(deps)
        approvals = ApprovalService(deps, operations, costs, auditor)
        cleanup = CleanupService(deps, prices, auditor)
        # What a command-started cleanup's breaker held is re-checked and stopped by the cleanup itself.
        approvals.set_breaker_runner(cleanup, source=CLEANUP_BREAKER_SOURCE)
        return cls(
            deps=deps,
            prices=prices,
            auditor=auditor,
            operations=operations,
            approvals=approvals,
            cleanup=cleanup,
            costs=costs,
            tracking=TrackingService(deps, prices, auditor),
            executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="runctl-work"),
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run work after the ack on the bounded executor; `drain` can wait for all of it."""
        future = self.executor.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no submitted work is left (work may submit more work); True when drained."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait(pending, timeout=remaining)

    def shutdown(self) -> None:
        self.drain(timeout=30.0)
        self.executor.shutdown(wait=True, cancel_futures=False)
