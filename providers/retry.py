"""The one retry policy for cloud calls, and the classification it rests on.

Which layer retries what:

* **botocore never retries.** Every client is built with
  ``Config(retries={"total_max_attempts": 1, "mode": "standard"})`` (see ``providers.aws.clients``), so each
  API call is exactly one HTTP request. Note that botocore's ``{"max_attempts": 1}`` would mean *one retry*
  (two requests): in the client ``Config`` that key counts retries, not attempts.
* **This module is the only retry layer.** It retries throttling, 5xx answers and transport failures with
  exponential backoff and full jitter (``tenacity.wait_random_exponential``), bounded both in attempts and
  in total time, and logs every retry with its attempt number and reason. Because the two layers never
  stack, a call makes at most ``RetryPolicy.max_attempts`` requests.
* **Nothing else retries these errors.** Once the policy gives up, the AWS provider turns the error into a
  ``providers.errors.TransientError``, which ``is_retryable`` reports as *not* retryable, so an outer loop
  cannot multiply the attempts again. Domain waits (an instance becoming ready, a command finishing) are
  polling, not retrying, and live with their callers.

Non-idempotent calls (``idempotent=False``, e.g. SSM ``SendCommand``) are retried only when the request
certainly did not run: throttling, or a connection that was never established. A read timeout or a 5xx
may come after the server acted, and running a training script twice is worse than reporting an error.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from botocore import exceptions as botoexc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from providers.errors import ProviderError

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# Codes AWS services use to say "slow down". The request was rejected before it ran.
THROTTLING_CODES: frozenset[str] = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "SlowDown",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
    }
)

# Server-side trouble that usually clears by itself.
TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    }
)

# Errors that are final even when the service answers them with a 5xx status (EC2 sends
# InsufficientInstanceCapacity as HTTP 500). Capacity and quota errors have their own handling
# (on-demand fallback, a message to the user); retrying them only burns the caller's time.
NON_RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        "DryRunOperation",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientAddressCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "MaxSpotFleetRequestCountExceeded",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "ResourceLimitExceeded",
        "VolumeLimitExceeded",
        "ServiceQuotaExceededException",
        "IdempotentParameterMismatch",
        "Unsupported",
        "UnsupportedOperation",
    }
)

# Transport failures where the request never reached the server: safe to resend even when not idempotent.
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    botoexc.EndpointConnectionError,
    botoexc.ConnectTimeoutError,
    botoexc.ProxyConnectionError,
)
# Transport failures after the request may have been received: the answer, not necessarily the work, was lost.
_AMBIGUOUS_ERRORS: tuple[type[BaseException], ...] = (
    botoexc.ReadTimeoutError,
    botoexc.ConnectionClosedError,
    botoexc.ResponseStreamingError,
    botoexc.IncompleteReadError,
    botoexc.HTTPClientError,
)


def error_code(exc: BaseException) -> str | None:
    """The service's error code of a botocore ``ClientError`` (or a ``ProviderError``), else None."""
    if isinstance(exc, botoexc.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    if isinstance(exc, ProviderError):
        return exc.code
    return None


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, botoexc.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_retryable(exc: BaseException, *, idempotent: bool = True) -> bool:
    """Whether sending the same request again can succeed (and, for non-idempotent calls, is safe)."""
    if isinstance(exc, ProviderError):
        # Already classified (and, for TransientError, already retried): never retry twice.
        return False
    if isinstance(exc, botoexc.ClientError):
        code = error_code(exc)
        if code in NON_RETRYABLE_CODES:
            return False
        if code in THROTTLING_CODES:
            return True
        if not idempotent:
            return False
        status = http_status(exc)
        return code in TRANSIENT_CODES or (status is not None and status >= 500)
    if isinstance(exc, botoexc.SSLError):
        return False  # a certificate or TLS setup problem does not heal by itself
    if isinstance(exc, _NOT_SENT_ERRORS):
        return True
    if isinstance(exc, _AMBIGUOUS_ERRORS):
        return idempotent
    return False


def retry_reason(exc: BaseException) -> str:
    """A short, human-readable reason for logs and error messages."""
    if isinstance(exc, botoexc.ClientError):
        code = error_code(exc) or "unknown"
        status = http_status(exc)
        if code in THROTTLING_CODES:
            return f"throttled ({code})"
        if status is not None and status >= 500:
            return f"server error {status} ({code})"
        return f"{code} (HTTP {status})" if status is not None else code
    if isinstance(exc, botoexc.ReadTimeoutError):
        return "read timeout: the request may have reached the server but no answer came back"
    if isinstance(exc, botoexc.ConnectionClosedError):
        return "connection closed before the answer arrived"
    if isinstance(exc, botoexc.ConnectTimeoutError):
        return "connect timeout"
    if isinstance(exc, botoexc.EndpointConnectionError):
        return "could not connect to the endpoint"
    if isinstance(exc, botoexc.BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the policy. Tests shrink the waits (or inject ``sleep``) to stay fast."""

    max_attempts: int = 5
    max_total_seconds: float = 30.0  # no retry starts after this much time since the first attempt
    base_wait_seconds: float = 0.5  # the first backoff window; the window doubles on every retry
    max_wait_seconds: float = 8.0  # cap on one backoff window
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_total_seconds <= 0 or self.base_wait_seconds < 0 or self.max_wait_seconds < 0:
            raise ValueError("retry times must be positive")

    def retrying(self, *, operation: str, idempotent: bool = True) -> Retrying:
        """A tenacity controller for one call; ``operation`` names the call in logs."""

        def should_retry(exc: BaseException) -> bool:
            return is_retryable(exc, idempotent=idempotent)

        def log_retry(state: RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            reason = retry_reason(exc) if exc is not None else "unknown"
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "%s failed on attempt %d of %d: %s; retrying in %.2fs",
                operation,
                state.attempt_number,
                self.max_attempts,
                reason,
                wait,
            )

        return Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_total_seconds),
            wait=wait_random_exponential(multiplier=self.base_wait_seconds, max=self.max_wait_seconds),
            retry=retry_if_exception(should_retry),
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )


DEFAULT_POLICY = RetryPolicy()


def call_with_retry(
    fn: Callable[[], T],
    *,
    operation: str,
    policy: RetryPolicy | None = None,
    idempotent: bool = True,
) -> T:
    """Call ``fn`` under the policy; the last error is re-raised unchanged when the policy gives up."""
    retrying = (policy or DEFAULT_POLICY).retrying(operation=operation, idempotent=idempotent)
    return retrying(fn)


def aws_retry(
    *,
    operation: str | None = None,
    policy: RetryPolicy | None = None,
    idempotent: bool = True,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of ``call_with_retry``; the operation name defaults to the function's name."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        name = operation or fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retry(
                functools.partial(fn, *args, **kwargs), operation=name, policy=policy, idempotent=idempotent
            )

        return wrapper

    return decorate
