"""Fault injection and rate limiting for the Slack stand-in.

Faults are an explicit, per-method script (``fail_next``, ``delay_next``, ``drop_next``) plus
whole-service outages (``set_down``, ``outage``), instead of the magic-token trick slack_sdk's own
mock server uses, so one test can script a precise sequence against the bot's real token.
Outage windows are read from the stand-in's injectable clock, so a two-minute outage is simulated by
moving a clock rather than by sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ANY_METHOD = "*"

FaultKind = Literal["fail", "delay", "drop"]

#: The ``error`` Slack puts in the JSON body of each injected HTTP status when the test names none.
DEFAULT_ERRORS: dict[int, str] = {
    429: "ratelimited",
    500: "internal_error",
    502: "internal_error",
    503: "service_unavailable",
    504: "request_timeout",
}


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next matching call.

    ``fail``: answer ``status`` (with ``Retry-After`` for 429) without doing anything; a 200 with
    ``error`` gives an ``ok: false`` answer such as ``not_in_channel``.
    ``delay``: do the work, then hold the answer back ``seconds`` (a client timeout after the
    effect, the case where blind retries post twice).
    ``drop``: close the connection without answering; ``applied`` says whether the work happened.
    """

    kind: FaultKind
    status: int = 500
    retry_after: int | None = None
    error: str | None = None
    seconds: float = 0.0
    applied: bool = False

    def describe(self) -> str:
        if self.kind == "fail":
            return f"fail:{self.status}:{self.error or DEFAULT_ERRORS.get(self.status, 'error')}"
        if self.kind == "delay":
            return f"delay:{self.seconds:g}s"
        return f"drop:{'applied' if self.applied else 'not-applied'}"


@dataclass(frozen=True)
class OutageWindow:
    start: float
    end: float
    status: int


def _epoch(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("outage times must be timezone-aware datetimes or epoch seconds")
        return value.timestamp()
    return float(value)


class FaultPlan:
    """Thread-safe queue of scripted faults per method, plus outage state."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._down_status: int | None = None
        self._windows: list[OutageWindow] = []

    def _push(self, method: str, fault: Fault, count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            queue = self._queues.setdefault(method, deque())
            queue.extend([fault] * count)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = 1,
        error: str | None = None,
        count: int = 1,
    ) -> None:
        if status == 200 and not error:
            raise ValueError("a 200 failure needs an error name, e.g. error='not_in_channel'")
        if status != 200 and not 400 <= status <= 599:
            raise ValueError(f"status {status} is not a failure status")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after is whole seconds >= 0, as Slack sends it")
        self._push(
            method,
            Fault("fail", status=status, retry_after=retry_after if status == 429 else None, error=error),
            count,
        )

    def delay_next(self, method: str, seconds: float, *, count: int = 1) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self._push(method, Fault("delay", seconds=seconds), count)

    def drop_next(self, method: str, *, count: int = 1, applied: bool = False) -> None:
        self._push(method, Fault("drop", applied=applied), count)

    def take(self, method: str) -> Fault | None:
        """Pop the fault for this call: the method's own script first, then the ``*`` script."""
        with self._lock:
            for key in (method, ANY_METHOD):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return None

    def pending(self, method: str | None = None) -> int:
        with self._lock:
            if method is not None:
                return len(self._queues.get(method, ()))
            return sum(len(q) for q in self._queues.values())

    def set_down(self, down: bool, *, status: int = 503) -> None:
        with self._lock:
            self._down_status = status if down else None

    def outage(self, start: float | datetime, end: float | datetime, *, status: int = 503) -> None:
        begin, finish = _epoch(start), _epoch(end)
        if finish <= begin:
            raise ValueError("an outage must end after it starts")
        with self._lock:
            self._windows.append(OutageWindow(begin, finish, status))

    def down_status(self) -> int | None:
        """The 5xx status every request gets right now, or ``None`` when Slack is up."""
        now = self._clock()
        with self._lock:
            if self._down_status is not None:
                return self._down_status
            for window in self._windows:
                if window.start <= now < window.end:
                    return window.status
        return None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._down_status = None
            self._windows.clear()


class RateLimiter:
    """Token bucket per key (channel): ``rate`` tokens a second, at most ``burst`` saved up.

    Uses a monotonic clock on purpose: slack_sdk's retry handler waits in real time, so refill must
    follow real time even when the stand-in's wall clock is frozen by a test.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive, or None to disable rate limiting")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate is not None

    def acquire(self, key: str) -> int | None:
        """Take a token; return ``None`` if allowed, else the whole seconds to put in Retry-After."""
        if self.rate is None:
            return None
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
