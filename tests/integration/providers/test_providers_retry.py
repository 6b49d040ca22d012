"""The retry classification and the tenacity policy, on botocore's own exception types (no network)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore import exceptions as botoexc

from providers.aws.errors import translate_error
from providers.errors import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    NotFoundError,
    QuotaError,
    TransientError,
)
from providers.retry import RetryPolicy, aws_retry, call_with_retry, is_retryable, retry_reason


def client_error(code: str, status: int = 400, message: str = "boom", operation: str = "RunInstances") -> Any:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botoexc.ClientError(response, operation)


RETRYABLE = [
    client_error("Throttling"),
    client_error("ThrottlingException"),
    client_error("RequestLimitExceeded", 503),
    client_error("TooManyRequestsException", 429),
    client_error("RequestThrottled"),
    client_error("SlowDown", 503),
    client_error("EC2ThrottledException"),
    client_error("InternalError", 500),
    client_error("ServiceUnavailable", 503),
    client_error("Unavailable", 503),
    client_error("SomethingNew", 502),  # any 5xx
    botoexc.EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
    botoexc.ConnectTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
    botoexc.ReadTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
    botoexc.ConnectionClosedError(endpoint_url="https://ec2.us-east-1.amazonaws.com"),
]

FINAL = [
    client_error("AuthFailure", 401),
    client_error("UnauthorizedOperation", 403),
    client_error("AccessDeniedException", 400),
    client_error("ExpiredToken", 400),
    client_error("InvalidParameterValue"),
    client_error("ValidationException"),
    client_error("InvalidInstanceID.NotFound"),
    client_error("InvalidInstanceID.Malformed"),
    client_error("DryRunOperation", 412),
    client_error("InsufficientInstanceCapacity", 500),  # a 5xx, but capacity: never retried
    client_error("SpotMaxPriceTooLow"),
    client_error("MaxSpotInstanceCountExceeded"),
    client_error("InstanceLimitExceeded"),
    client_error("VcpuLimitExceeded"),
    botoexc.NoCredentialsError(),
    botoexc.ParamValidationError(report="missing InstanceIds"),
    botoexc.SSLError(endpoint_url="https://ec2.us-east-1.amazonaws.com", error=Exception("bad certificate")),
    TransientError("already retried"),
    ValueError("not a cloud error"),
]


@pytest.mark.parametrize("exc", RETRYABLE, ids=lambda e: retry_reason(e))
def test_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", FINAL, ids=lambda e: retry_reason(e))
def test_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_non_idempotent_calls_retry_only_what_certainly_did_not_run() -> None:
    url = "https://ssm.us-east-1.amazonaws.com"
    assert is_retryable(client_error("ThrottlingException"), idempotent=False)
    assert is_retryable(botoexc.EndpointConnectionError(endpoint_url=url), idempotent=False)
    assert not is_retryable(botoexc.ReadTimeoutError(endpoint_url=url), idempotent=False)
    assert not is_retryable(botoexc.ConnectionClosedError(endpoint_url=url), idempotent=False)
    assert not is_retryable(client_error("InternalError", 500), idempotent=False)


def test_retry_reasons_are_readable() -> None:
    assert retry_reason(client_error("RequestLimitExceeded", 503)) == "throttled (RequestLimitExceeded)"
    assert retry_reason(client_error("InternalError", 500)) == "server error 500 (InternalError)"
    assert "may have reached the server" in retry_reason(botoexc.ReadTimeoutError(endpoint_url="x"))


def no_sleep(seconds: float) -> None:
    assert seconds >= 0


def test_policy_retries_then_succeeds_and_logs_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=5, base_wait_seconds=0.2, max_wait_seconds=1.0, sleep=sleeps.append)
    outcomes: list[BaseException | str] = [
        client_error("Throttling"),
        client_error("InternalError", 500),
        "ok",
    ]

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    with caplog.at_level(logging.WARNING, logger="providers.retry"):
        assert call_with_retry(flaky, operation="ec2:DescribeInstances", policy=policy) == "ok"

    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.4  # full jitter within a doubling window
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("ec2:DescribeInstances failed on attempt 1 of 5: throttled (Throttling)")
    assert messages[1].startswith("ec2:DescribeInstances failed on attempt 2 of 5: server error 500")


def test_policy_is_bounded_by_attempts() -> None:
    attempts: list[int] = []

    def always_throttled() -> None:
        attempts.append(1)
        raise client_error("Throttling")

    policy = RetryPolicy(max_attempts=3, base_wait_seconds=0.0, sleep=no_sleep)
    with pytest.raises(botoexc.ClientError):
        call_with_retry(always_throttled, operation="x", policy=policy)
    assert len(attempts) == 3


def test_policy_is_bounded_by_total_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the jitter deterministic (the top of each window): waits of 0.1, 0.2, 0.4, 0.8 s ...
    monkeypatch.setattr("tenacity.wait.random.uniform", lambda low, high: high)
    sleeps: list[float] = []
    attempts: list[int] = []

    def always_throttled() -> None:
        attempts.append(1)
        raise client_error("Throttling")

    policy = RetryPolicy(
        max_attempts=50,
        max_total_seconds=0.7,
        base_wait_seconds=0.1,
        max_wait_seconds=10,
        sleep=sleeps.append,
    )
    with pytest.raises(botoexc.ClientError):
        call_with_retry(always_throttled, operation="x", policy=policy)

    # The 0.8 s wait would end past the 0.7 s budget, so the policy stops instead of sleeping it.
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert len(attempts) == 4


def test_final_errors_are_not_retried() -> None:
    attempts: list[int] = []

    def denied() -> None:
        attempts.append(1)
        raise client_error("UnauthorizedOperation", 403)

    with pytest.raises(botoexc.ClientError):
        call_with_retry(denied, operation="x", policy=RetryPolicy(sleep=no_sleep))
    assert attempts == [1]


def test_decorator_form() -> None:
    calls: list[int] = []

    @aws_retry(policy=RetryPolicy(base_wait_seconds=0.0, sleep=no_sleep))
    def describe(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise botoexc.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return n * 2

    assert describe(21) == 42 and calls == [21, 21, 21]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("UnauthorizedOperation", 403), AuthError),
        (client_error("InvalidInstanceID.NotFound"), NotFoundError),
        (client_error("ParameterNotFound"), NotFoundError),
        (client_error("InsufficientInstanceCapacity", 500), CapacityError),
        (client_error("VcpuLimitExceeded"), QuotaError),
        (client_error("InvalidParameterValue"), InvalidRequestError),
        (client_error("RequestLimitExceeded", 503), TransientError),
        (botoexc.NoCredentialsError(), AuthError),
        (botoexc.ReadTimeoutError(endpoint_url="x"), TransientError),
    ],
)
def test_errors_translate_to_provider_classes(exc: BaseException, expected: type[Exception]) -> None:
    translated = translate_error(exc, operation="ec2:RunInstances", attempts=3)
    assert type(translated) is expected
    assert translated.operation == "ec2:RunInstances"
    assert str(translated)


def test_translated_message_says_what_happened() -> None:
    error = translate_error(
        client_error("RequestLimitExceeded", 503, "Request limit exceeded."),
        operation="ec2:StopInstances",
        attempts=5,
    )
    assert str(error) == (
        "AWS kept failing: throttled (RequestLimitExceeded) after 5 attempts: Request limit exceeded. "
        "[RequestLimitExceeded] (ec2:StopInstances)"
    )
