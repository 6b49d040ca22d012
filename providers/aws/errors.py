"""botocore exceptions -> the `providers.errors` classes, with messages a person can act on."""

from __future__ import annotations

from botocore import exceptions as botoexc

from providers.errors import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
)
from providers.retry import error_code, http_status, is_retryable, retry_reason

AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "OptInRequired",
        "Blocked",
        "PendingVerification",
    }
)

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
    }
)

QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "ResourceLimitExceeded",
        "VolumeLimitExceeded",
        "MaxSpotFleetRequestCountExceeded",
        "ServiceQuotaExceededException",
        "TagLimitExceeded",
    }
)

NOT_FOUND_CODES = frozenset(
    {
        "ParameterNotFound",
        "InvocationDoesNotExist",
        "InvalidCommandId",
        "InvalidInstanceId",
        "ResourceNotFoundException",
        "NotFoundException",
        "NoSuchEntity",
    }
)

_HINTS = {
    AuthError: "check the AWS credentials and the IAM permissions of the bot's role",
    CapacityError: "try another instance type or availability zone, or on-demand",
    QuotaError: "raise the account quota (Service Quotas) or stop unused machines",
}


def _is_not_found(code: str) -> bool:
    return code in NOT_FOUND_CODES or code.endswith(".NotFound") or code.endswith("NotFound")


def classify_code(code: str, status: int | None) -> type[ProviderError]:
    """The error class for a service error code (and HTTP status, for codes we do not know)."""
    if code in AUTH_CODES:
        return AuthError
    if code in CAPACITY_CODES:
        return CapacityError
    if code in QUOTA_CODES:
        return QuotaError
    if _is_not_found(code):
        return NotFoundError
    if status is not None and status in (401, 403):
        return AuthError
    if status is not None and status == 404:
        return NotFoundError
    return InvalidRequestError


def translate_error(exc: BaseException, *, operation: str, attempts: int = 1) -> ProviderError:
    """Turn what boto raised into a ProviderError whose message says what happened and what to do."""
    if isinstance(exc, ProviderError):
        return exc
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(exc, botoexc.ClientError):
        code = error_code(exc) or "Unknown"
        status = http_status(exc)
        message = str(exc.response.get("Error", {}).get("Message") or "").strip() or code
        if is_retryable(exc):
            return TransientError(
                f"AWS kept failing: {retry_reason(exc)}{tries}: {message}", code=code, operation=operation
            )
        cls = classify_code(code, status)
        hint = _HINTS.get(cls)
        text = f"{message} ({hint})" if hint else message
        return cls(text, code=code, operation=operation)
    if isinstance(exc, (botoexc.NoCredentialsError, botoexc.PartialCredentialsError)):
        return AuthError(
            f"no usable AWS credentials: {exc} (set a profile, environment credentials or an instance role)",
            code=type(exc).__name__,
            operation=operation,
        )
    if isinstance(exc, (botoexc.CredentialRetrievalError, botoexc.TokenRetrievalError)):
        return AuthError(
            f"could not load AWS credentials: {exc}", code=type(exc).__name__, operation=operation
        )
    if isinstance(exc, botoexc.ProfileNotFound):
        return AuthError(str(exc), code=type(exc).__name__, operation=operation)
    if isinstance(exc, botoexc.NoRegionError):
        return InvalidRequestError(
            "no AWS region configured (set the provider region or AWS_DEFAULT_REGION)",
            code=type(exc).__name__,
            operation=operation,
        )
    if isinstance(exc, (botoexc.ParamValidationError, botoexc.ValidationError)):
        return InvalidRequestError(f"invalid request: {exc}", code=type(exc).__name__, operation=operation)
    if isinstance(exc, (botoexc.HTTPClientError, botoexc.ConnectionError, botoexc.IncompleteReadError)):
        return TransientError(
            f"could not talk to AWS: {retry_reason(exc)}{tries}", code=type(exc).__name__, operation=operation
        )
    if isinstance(exc, botoexc.BotoCoreError):
        return ProviderError(f"AWS client error: {exc}", code=type(exc).__name__, operation=operation)
    return ProviderError(f"unexpected error: {type(exc).__name__}: {exc}", operation=operation)
