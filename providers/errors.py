"""Provider errors, classified so that callers and the retry policy can tell what to do."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. `code` is the cloud's error code when there is one."""

    def __init__(self, message: str, *, code: str | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.operation = operation

    def __str__(self) -> str:
        where = f" ({self.operation})" if self.operation else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{self.message}{code}{where}"


class NotFoundError(ProviderError):
    """The resource does not exist (or no longer)."""


class InvalidRequestError(ProviderError):
    """The cloud rejected the request as malformed; retrying will not help."""


class AuthError(ProviderError):
    """Credentials missing, expired or not allowed to do this."""


class CapacityError(ProviderError):
    """No capacity or spot price too low: the caller may fall back (e.g. to on-demand)."""


class QuotaError(ProviderError):
    """An account or bot quota would be exceeded."""


class TransientError(ProviderError):
    """Throttling, 5xx or connection trouble that survived every retry."""
