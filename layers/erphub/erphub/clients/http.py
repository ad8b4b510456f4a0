"""HTTP plumbing shared by the httpx-based adapters.

:class:`RetryAfterTransport` waits out throttling (429, and 503 with ``Retry-After``) below the
adapters: such an answer means the server did not process the request, so sending it again is
safe for every method, POST included. Other failures are the adapters' to judge, because only
they know whether their request is idempotent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx
import tenacity

from erphub.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class RetryAfterTransport(httpx.BaseTransport):
    """Re-sends a request the server refused with 429 (or 503 + Retry-After), after waiting."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        max_attempts: int = 5,
        default_wait: float = 1.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner or httpx.HTTPTransport()
        self._max_attempts = max_attempts
        self._default_wait = default_wait
        self._max_wait = max_wait
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; wait and re-send while the server says it is busy."""
        attempt = 1
        while True:
            response = self._inner.handle_request(request)
            if attempt >= self._max_attempts or not self._is_throttled(response):
                return response
            header = response.headers.get("Retry-After")
            wait = retry_after_seconds(header)
            wait = self._default_wait * 2 ** (attempt - 1) if wait is None else wait
            wait = min(wait, self._max_wait)
            response.close()
            logger.info(
                "throttled, waiting",
                extra={
                    "http_status": response.status_code,
                    "retry_after": header,
                    "wait_s": wait,
                    "url": str(request.url.copy_with(query=None)),
                },
            )
            self._sleep(wait)
            attempt += 1

    @staticmethod
    def _is_throttled(response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        return response.status_code == 503 and "Retry-After" in response.headers

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def build_client(
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    max_retry_after: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Client:
    """An httpx client with throttling handled, for one external system."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        transport=RetryAfterTransport(transport, max_wait=max_retry_after, sleep=sleep),
    )


class Retryable(Exception):
    """A failure the same request may clear on another attempt; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def retrying(
    max_attempts: int, backoff: float, sleep: Callable[[float], None] = time.sleep
) -> tenacity.Retrying:
    """At most ``max_attempts`` tries of what raises :class:`Retryable`, with exponential backoff
    and jitter (capped at 30 s); the last :class:`Retryable` is raised again."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Retryable),
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=tenacity.wait_exponential_jitter(initial=backoff, max=30, jitter=backoff),
        sleep=sleep,
        reraise=True,
    )


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
