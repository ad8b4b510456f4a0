"""The Rossum port and its adapter, built on the official ``rossum-api`` SDK.

The SDK brings the login (form body), the bearer header, the re-login on 401 and the retries of
5xx and transport errors. On top of it the adapter waits out 429 for as long as ``Retry-After``
says (the SDK's own backoff ignores the header), and it uses the SDK's low-level client for the
export calls: the high-level ``Annotation`` model cannot read the documented export JSON.

The port it implements is in :mod:`erphub.clients.rossum_port`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from rossum_api.clients.internal_sync_client import InternalSyncClient
from rossum_api.domain_logic.resources import Resource
from rossum_api.dtos import UserCredentials
from rossum_api.exceptions import APIClientError

from erphub.clients.http import RETRYABLE_STATUS, RetryAfterTransport
from erphub.clients.rossum_port import MAX_IDS_PER_EXPORT, AnnotationState, RossumError
from erphub.errors import ConfigurationError, TransientError
from erphub.models import annotation_id_from_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from pydantic import SecretStr


class SdkRossumClient:
    """Rossum over HTTP, through the official SDK."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = InternalSyncClient(
            base_url.rstrip("/") + "/v1",
            UserCredentials(username=username, password=password.get_secret_value()),
            timeout=timeout,
            n_retries=max_attempts,
            retry_backoff_factor=backoff,
            retry_max_jitter=backoff,
        )
        self._api.client = httpx.Client(
            timeout=timeout,
            transport=RetryAfterTransport(transport, max_wait=max_retry_after, sleep=sleep),
        )

    def confirmed_annotations(self, queue_id: int) -> Iterator[dict[str, Any]]:
        """``GET /v1/queues/{id}/export?status=confirmed&format=json``, every page of 100."""
        with _translated("export confirmed", queue_id):
            for result in self._api.export(Resource.Queue, queue_id, "json", status="confirmed"):
                assert isinstance(result, dict)  # JSON exports yield results, not bytes
                yield result

    def mark_exported(self, queue_id: int, annotation_ids: Sequence[int]) -> dict[int, str]:
        """``POST /v1/queues/{id}/export?to_status=exported&id=...`` for these ids only.

        Never without ids: a status-only filter would also move documents confirmed after the
        poll, which never reached the ERP. One page of up to 100 ids per call, because paging
        through a result set that the call itself changes skips documents.
        """
        ids = list(dict.fromkeys(annotation_ids))
        if not ids:
            return {}
        if len(ids) > MAX_IDS_PER_EXPORT:
            msg = f"at most {MAX_IDS_PER_EXPORT} ids per export call, got {len(ids)}"
            raise ValueError(msg)
        params = {
            "to_status": "exported",
            "format": "json",
            "id": ",".join(str(i) for i in ids),
            "page_size": MAX_IDS_PER_EXPORT,
        }
        with _translated("export to_status=exported", queue_id):
            body = self._api.request_json("POST", f"queues/{queue_id}/export", params=params)
        statuses: dict[int, str] = {}
        for result in body.get("results", []):
            annotation_id = annotation_id_from_url(str(result.get("url", "")))
            if annotation_id is not None:
                statuses[annotation_id] = str(result.get("status"))
        return statuses

    def mark_failed_export(self, annotation_id: int, message: str) -> None:
        """``PATCH /v1/annotations/{id}`` to ``failed_export`` with an error message."""
        body = {
            "status": "failed_export",
            "messages": [{"type": "error", "content": message, "id": None}],
        }
        with _translated("switch to failed_export", annotation_id):
            self._api.request_json("PATCH", f"annotations/{annotation_id}", json=body)

    def annotation_states(self, annotation_ids: Sequence[int]) -> dict[int, AnnotationState]:
        """``GET /v1/annotations?id=...``, 100 ids per request."""
        ids = list(dict.fromkeys(annotation_ids))
        states: dict[int, AnnotationState] = {}
        for start in range(0, len(ids), MAX_IDS_PER_EXPORT):
            batch = ids[start : start + MAX_IDS_PER_EXPORT]
            params = {
                "id": ",".join(str(i) for i in batch),
                "page_size": MAX_IDS_PER_EXPORT,
                "fields": "id,url,status,messages",
            }
            with _translated("list annotations", batch[0]):
                body = self._api.request_json("GET", "annotations", params=params)
            for result in body.get("results", []):
                annotation_id = annotation_id_from_url(str(result.get("url", "")))
                if annotation_id is None:
                    continue
                errors = tuple(
                    str(m.get("content"))
                    for m in result.get("messages") or []
                    if isinstance(m, dict) and m.get("type") == "error" and m.get("content")
                )
                states[annotation_id] = AnnotationState(str(result.get("status")), errors)
        return states

    def close(self) -> None:
        """Close the connection pool."""
        self._api.client.close()


@contextmanager
def _translated(action: str, subject: int) -> Iterator[None]:
    """Turn SDK and transport errors into erphub's error types."""
    what = f"Rossum {action} ({subject})"
    try:
        yield
    except APIClientError as error:
        if error.status_code in RETRYABLE_STATUS:
            msg = f"{what}: HTTP {error.status_code}"
            raise TransientError(msg) from error
        if error.status_code in (401, 403):
            msg = f"{what}: HTTP {error.status_code}, check the Rossum credentials"
            raise ConfigurationError(msg) from error
        msg = f"{what}: HTTP {error.status_code} {str(error.error)[:300]}"
        raise RossumError(msg) from error
    except httpx.TransportError as error:
        msg = f"{what}: {type(error).__name__}"
        raise TransientError(msg) from error
