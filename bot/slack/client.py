"""The bot's WebClient: one place that sets the base URL, timeout and slack_sdk's retry handlers.

slack_sdk retries what is provably safe (429 with Retry-After, 5xx, connection errors); nothing else
wraps these calls in a second retry layer.
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    HttpRequest,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryState,
)

from bot.config import Settings


class GatewayErrorRetryHandler(RetryHandler):
    """Retries 500, 502, 503 and 504: slack_sdk's own server-error handler stops at 500 and 503, but
    load balancers in front of Slack answer 502/504 too, and none of these applied the request."""

    RETRYABLE = frozenset({500, 502, 503, 504})

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in self.RETRYABLE


def retry_handlers(*, rate_limit: int = 5, server_error: int = 3, connection: int = 3) -> list[RetryHandler]:
    return [
        RateLimitErrorRetryHandler(max_retry_count=rate_limit),
        GatewayErrorRetryHandler(max_retry_count=server_error),
        ConnectionErrorRetryHandler(max_retry_count=connection),
    ]


def make_web_client(settings: Settings, *, handlers: list[RetryHandler] | None = None) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=handlers if handlers is not None else retry_handlers(),
    )
