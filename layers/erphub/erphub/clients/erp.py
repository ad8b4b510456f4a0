"""The ERP adapter for erphub's ERP contract (``contracts/erp-openapi.yaml``).

The port it implements, and the answers it gives, are in :mod:`erphub.clients.erp_port`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from erphub.clients.erp_port import (
    Accepted,
    OutgoingDocument,
    OutgoingPage,
    Rejected,
    Unreadable,
    Valid,
)
from erphub.clients.http import RETRYABLE_STATUS, Retryable, build_client, retrying
from erphub.errors import BadInputError, ConfigurationError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable

    from erphub.clients.erp_port import OutgoingUpdate
    from erphub.invoices import Invoice


def _reasons(body: Any, status: int) -> list[str]:
    if not isinstance(body, dict):
        return [f"HTTP {status}"]
    details = body.get("details")
    if isinstance(details, list) and details:
        return [
            f"{d.get('field', '?')}: {d.get('message', '')}".strip()
            for d in details
            if isinstance(d, dict)
        ]
    message = body.get("message") or body.get("error") or f"HTTP {status}"
    return [str(message)]


class HttpErpGateway:
    """The ERP contract over HTTP.

    ``POST /invoices`` is safe to send again: the contract answers 409 with the existing id for a
    known external reference, so a retry after a timeout can never create a second invoice.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = build_client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )
        self._retrying = retrying(max_attempts, backoff, sleep)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            for attempt in self._retrying:
                with attempt:
                    try:
                        response = self._client.request(method, path, **kwargs)
                    except httpx.TransportError as error:
                        msg = f"ERP {method} {path}: {type(error).__name__}"
                        raise Retryable(msg) from error
                    if response.status_code in RETRYABLE_STATUS:
                        msg = f"ERP {method} {path}: HTTP {response.status_code}"
                        raise Retryable(msg)
                    if response.status_code in (401, 403):
                        msg = (
                            f"ERP {method} {path}: HTTP {response.status_code}, check the ERP token"
                        )
                        raise ConfigurationError(msg)
                    return response
        except Retryable as error:
            raise TransientError(error.message) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def push_invoice(self, invoice: Invoice) -> Accepted | Rejected:
        """``POST /invoices``: 201 and 409 mean the ERP holds it; 400/422 is a rejection."""
        response = self._send("POST", "/invoices", json=invoice.dump())
        body = _json(response)
        if response.status_code == 201:
            return Accepted(erp_id=str(body["id"]))
        if response.status_code == 409 and body.get("error") == "duplicate_external_reference":
            return Accepted(erp_id=str(body["id"]), already_existed=True)
        if response.status_code in (400, 409, 422):
            return Rejected(reasons=_reasons(body, response.status_code))
        msg = f"ERP POST /invoices: unexpected HTTP {response.status_code}"
        raise TransientError(msg)

    def validate_invoice(self, invoice: Invoice) -> Valid | Accepted | Rejected:
        """``POST /invoices/validate``: 200 valid, 409 already held, 400/422 rejected.

        It books nothing, so it is retried like a read.
        """
        response = self._send("POST", "/invoices/validate", json=invoice.dump())
        body = _json(response)
        if response.status_code == 200 and body.get("valid") is True:
            return Valid()
        if response.status_code == 409 and body.get("error") == "duplicate_external_reference":
            return Accepted(erp_id=str(body["id"]), already_existed=True)
        if response.status_code in (400, 409, 422):
            return Rejected(reasons=_reasons(body, response.status_code))
        if response.status_code in (404, 405):
            msg = (
                f"ERP POST /invoices/validate: HTTP {response.status_code}; dry runs need the"
                " ERP contract's validation endpoint"
            )
            raise ConfigurationError(msg)
        msg = f"ERP POST /invoices/validate: unexpected HTTP {response.status_code}"
        raise TransientError(msg)

    def find_invoice(self, external_reference: str) -> str | None:
        """``GET /invoices?externalReference=``: the id of the invoice, or None."""
        response = self._send("GET", "/invoices", params={"externalReference": external_reference})
        if response.status_code != 200:
            msg = f"ERP GET /invoices: unexpected HTTP {response.status_code}"
            raise TransientError(msg)
        items = _json(response).get("items") or []
        return str(items[0]["id"]) if items else None

    def pending_outgoing(self, cursor: str | None = None, limit: int = 100) -> OutgoingPage:
        """``GET /outgoing-documents?procurosStatus=empty``: one page, each item checked alone."""
        params: dict[str, str | int] = {"procurosStatus": "empty", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = self._send("GET", "/outgoing-documents", params=params)
        if response.status_code != 200:
            msg = f"ERP GET /outgoing-documents: unexpected HTTP {response.status_code}"
            raise TransientError(msg)
        body = _json(response)
        documents: list[OutgoingDocument] = []
        unreadable: list[Unreadable] = []
        for item in body.get("items") or []:
            try:
                documents.append(OutgoingDocument.model_validate(item))
            except ValidationError as error:
                raw_id = item.get("id") if isinstance(item, dict) else None
                unreadable.append(
                    Unreadable(
                        document_id=str(raw_id) if raw_id else None,
                        problems=[
                            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                            for e in error.errors()
                        ],
                    )
                )
        next_cursor = body.get("nextCursor")
        return OutgoingPage(
            documents=documents,
            unreadable=unreadable,
            next_cursor=str(next_cursor) if next_cursor else None,
        )

    def update_outgoing(self, document_id: str, update: OutgoingUpdate) -> OutgoingDocument:
        """``PATCH /outgoing-documents/{id}`` (safe to repeat: it sets, never adds)."""
        path = f"/outgoing-documents/{quote(document_id, safe='')}"
        response = self._send("PATCH", path, json=update.dump())
        body = _json(response)
        if response.status_code == 200:
            return OutgoingDocument.model_validate(body)
        if response.status_code in (400, 404, 409, 422):
            reasons = "; ".join(_reasons(body, response.status_code))
            msg = f"ERP refused the update of outgoing document {document_id}: {reasons}"
            raise BadInputError(msg)
        msg = f"ERP PATCH {path}: unexpected HTTP {response.status_code}"
        raise TransientError(msg)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
