"""Every AWS request of the provider goes through `AwsCaller`: the retry policy, then error translation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from botocore import exceptions as botoexc

from providers.aws.errors import translate_error
from providers.retry import RetryPolicy, call_with_retry

T = TypeVar("T")

# Set by the bot at start-up: (operation, outcome, attempts) -> None. Keeps providers free of Prometheus.
CALL_OBSERVER: Callable[[str, str, int], None] | None = None


class AwsCaller:
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def call(self, operation: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run one request under the policy; failures come out as `ProviderError`s."""
        return self.call_attempts(operation, lambda _attempt: fn(), idempotent=idempotent)

    def call_attempts(self, operation: str, fn: Callable[[int], T], *, idempotent: bool = True) -> T:
        """Like `call`, but `fn` gets the 1-based attempt number (a retried launch looks before it leaps)."""
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return fn(attempts)

        try:
            result = call_with_retry(attempt, operation=operation, policy=self.policy, idempotent=idempotent)
        except (botoexc.ClientError, botoexc.BotoCoreError) as exc:
            self._observe(operation, "error", attempts)
            raise translate_error(exc, operation=operation, attempts=attempts) from exc
        self._observe(operation, "ok", attempts)
        return result

    @staticmethod
    def _observe(operation: str, outcome: str, attempts: int) -> None:
        """Count the call and its retries for `/metrics` (a no-op when the bot's metrics are not loaded)."""
        if CALL_OBSERVER is not None:
            CALL_OBSERVER(operation, outcome, attempts)

    def pages(
        self,
        operation: str,
        fn: Callable[..., Mapping[str, Any]],
        kwargs: Mapping[str, Any],
        *,
        retried: bool = True,
    ) -> Iterator[Mapping[str, Any]]:
        """Follow `NextToken`, retrying each page on its own so a throttled page 3 does not refetch 1 and 2.

        With `retried=False` the raw botocore errors propagate (for use inside an outer retry loop).
        """
        return self.parsed_pages(operation, fn, kwargs, _as_is, retried=retried)

    def parsed_pages(
        self,
        operation: str,
        fn: Callable[..., Mapping[str, Any]],
        kwargs: Mapping[str, Any],
        parse: Callable[[Mapping[str, Any]], T],
        *,
        retried: bool = True,
    ) -> Iterator[T]:
        """Like `pages`, but each answer is handed to `parse` and only its result is kept.

        The raw answer is dropped before the next request is sent, so a listing holds one parsed page at a
        time, never two (a 1,000-instance DescribeInstances answer parses to ~10 MB of dicts).
        """
        token: str | None = None
        while True:
            page_kwargs = dict(kwargs)
            if token:
                page_kwargs["NextToken"] = token
            if retried:
                page = self.call(operation, functools.partial(fn, **page_kwargs))
            else:
                page = fn(**page_kwargs)
            next_token = page.get("NextToken")
            parsed = parse(page)
            del page
            yield parsed
            del parsed
            if not next_token:
                return
            token = str(next_token)


def _as_is(page: Mapping[str, Any]) -> Mapping[str, Any]:
    return page
