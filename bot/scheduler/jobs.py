"""Job entry points APScheduler stores by reference (`bot.scheduler.jobs:run_job`), so they are module-level.

The process's runtime registers itself here when it starts; a job fired while none is registered (a
stale process shutting down) does nothing.
"""

from __future__ import annotations

import threading
from typing import Protocol


class _Runs(Protocol):
    def run(self, name: str) -> bool: ...


_lock = threading.Lock()
_runtime: _Runs | None = None


def register(runtime: _Runs | None) -> None:
    global _runtime
    with _lock:
        _runtime = runtime


def run_job(name: str) -> None:
    with _lock:
        runtime = _runtime
    if runtime is not None:
        runtime.run(name)
