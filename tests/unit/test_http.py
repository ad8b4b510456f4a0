"""Throttling is waited out for as long as Retry-After says, and no longer than allowed."""

from __future__ import annotations

import httpx
import pytest

from erphub.clients.http import RetryAfterTransport, retry_after_seconds


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None


def _served(
    *statuses: tuple[int, dict[str, str]],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    queue = list(statuses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers = queue.pop(0)
        return httpx.Response(status, headers=headers, json={})

    return httpx.MockTransport(handler), seen


def test_429_is_resent_after_the_advertised_wait_with_the_same_body() -> None:
    inner, seen = _served((429, {"Retry-After": "2"}), (429, {"Retry-After": "1"}), (201, {}))
    waits: list[float] = []
    with httpx.Client(transport=RetryAfterTransport(inner, sleep=waits.append)) as client:
        response = client.post("http://erp.test/invoices", json={"a": 1})
    assert response.status_code == 201
    assert waits == [2.0, 1.0]
    assert [r.content for r in seen] == [b'{"a":1}'] * 3


def test_wait_is_capped_and_attempts_are_bounded() -> None:
    inner, seen = _served(*[(429, {"Retry-After": "3600"})] * 3)
    waits: list[float] = []
    transport = RetryAfterTransport(inner, max_attempts=3, max_wait=5, sleep=waits.append)
    with httpx.Client(transport=transport) as client:
        response = client.get("http://erp.test/x")
    assert response.status_code == 429
    assert waits == [5, 5]
    assert len(seen) == 3


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_without_retry_after_are_left_to_the_adapter(status: int) -> None:
    inner, seen = _served((status, {}))
    waits: list[float] = []
    with httpx.Client(transport=RetryAfterTransport(inner, sleep=waits.append)) as client:
        assert client.get("http://erp.test/x").status_code == status
    assert waits == []
    assert len(seen) == 1
