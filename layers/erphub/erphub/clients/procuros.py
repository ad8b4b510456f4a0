"""The Procuros port and its adapter for the Procuros API v2 (``contracts/procuros.md``).

``POST /v2/transactions`` has no idempotency key; Procuros recognises a byte-identical resend and
answers 400 "Payload already received". So the adapter never re-sends a transaction by itself
once the request may have reached Procuros:

- 429 (and 503 with ``Retry-After``) means Procuros did not take the request: it is sent again
  after the wait, below the adapter (:class:`~erphub.clients.http.RetryAfterTransport`);
- a connection that could not be opened never carried the request: it is retried with backoff;
- a timeout, a dropped connection or a 5xx after the request went out leaves the outcome
  unknown: :class:`OutcomeUnknown` is raised, and the flow looks the transaction up
  (:meth:`ProcurosPort.sent_transactions`) before it sends anything again.

Reads (``GET /v2/all-transactions``) are retried on every transient failure. The same listing
tells which parties Procuros knows (:meth:`HttpProcurosClient.known_parties`): Procuros has no
read-only check of a trade partner, but a party some transaction of the connection names is one
it resolved before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from erphub.clients.http import (
    RETRYABLE_STATUS,
    Retryable,
    build_client,
    retry_after_seconds,
    retrying,
)
from erphub.errors import BadInputError, ConfigurationError, TransientError
from erphub.models import CamelModel
from erphub.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import date

    from erphub.procuros_mapping import ProcurosTransaction

__all__ = [
    "PAGE_SIZE",
    "AlreadyReceived",
    "ErrorReport",
    "HttpProcurosClient",
    "NotForwarded",
    "OutcomeUnknown",
    "PartyIdentifier",
    "ProcurosHistory",
    "ProcurosPort",
    "Refused",
    "SendOutcome",
    "Sent",
    "SentRecord",
    "party_identifiers",
    "receiver_of",
]

PAGE_SIZE = 100
ALREADY_RECEIVED = "payload already received"
_REFUSAL_STATUS = frozenset({400, 409, 413, 415, 422})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_REASON_CHARS = 2000
#: The party that receives a transaction of each type; every other type goes to the buyer.
RECEIVER = {"ORDER": "supplier"}
_DOMAIN_LABELS = {"GS1": "GLN"}


class OutcomeUnknown(TransientError):
    """A POST may or may not have reached Procuros: look it up before sending it again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Sent(BaseModel):
    """201: Procuros accepted the transaction and forwards it to the trade partner."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str | None


class NotForwarded(BaseModel):
    """202: Procuros accepted the transaction but does not forward it (relationship inactive,
    or the partner does not take this type)."""

    model_config = ConfigDict(frozen=True)

    message: str
    transaction_id: str | None = None


class AlreadyReceived(BaseModel):
    """400 "Payload already received": the same bytes were accepted before."""

    model_config = ConfigDict(frozen=True)

    message: str


class Refused(BaseModel):
    """400/422: Procuros did not accept the transaction; ``error_url`` links to its portal."""

    model_config = ConfigDict(frozen=True)

    status: int
    message: str
    errors: dict[str, list[str]] = Field(default_factory=dict)
    error_url: str | None = None

    @property
    def reasons(self) -> list[str]:
        """One line per field error, or the message alone."""
        found = [f"{field}: {text}" for field, texts in self.errors.items() for text in texts]
        return found or [self.message]


SendOutcome = Sent | NotForwarded | AlreadyReceived | Refused


class SentRecord(BaseModel):
    """A transaction as ``GET /v2/all-transactions`` lists it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    transaction_id: str = Field(alias="procurosTransactionId", min_length=1)
    type: str
    status: str | None = None
    created_at: str | None = Field(default=None, alias="createdAt")
    content: dict[str, Any] = Field(default_factory=dict)


class PartyIdentifier(BaseModel):
    """One identifier of a party in a transaction header (``{"identifier", "domain"}``)."""

    model_config = ConfigDict(frozen=True)

    domain: str
    identifier: str

    def __str__(self) -> str:
        return f"{_DOMAIN_LABELS.get(self.domain, self.domain)} {self.identifier}"


def party_identifiers(party: Any) -> list[PartyIdentifier]:
    """The identifiers of one party object; those without both fields are left out."""
    found = party.get("identifiers") if isinstance(party, dict) else None
    items: list[Any] = found if isinstance(found, list) else []
    return [
        PartyIdentifier(domain=item["domain"], identifier=item["identifier"])
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("domain"), str)
        and isinstance(item.get("identifier"), str)
        and item["identifier"]
    ]


def receiver_of(transaction_type: str, content: Any) -> tuple[str, list[PartyIdentifier]]:
    """The header party that receives a transaction, and its identifiers."""
    role = RECEIVER.get(transaction_type, "buyer")
    header = content.get("header") if isinstance(content, dict) else None
    return role, party_identifiers(header.get(role) if isinstance(header, dict) else None)


class ErrorReport(CamelModel):
    """The body of ``POST /v2/errors`` (``errorContext`` values must be strings)."""

    error_reason: str = Field(min_length=1)
    error_type: Literal["DATA", "INTERNAL"] = "DATA"
    error_context: dict[str, str] = Field(default_factory=dict)
    transaction_identifier: str | None = None
    transaction_type: str | None = None


class ProcurosPort(Protocol):
    """What the send flow needs from Procuros."""

    def send_transaction(self, transaction: ProcurosTransaction) -> SendOutcome:
        """``POST /v2/transactions`` once; :class:`OutcomeUnknown` when the answer is lost."""
        ...

    def sent_transactions(
        self, transaction_type: str, created_from: date, created_to: date
    ) -> Iterator[SentRecord]:
        """The transactions of one type created between two dates (inclusive), every page."""
        ...

    def report_error(self, report: ErrorReport) -> str | None:
        """``POST /v2/errors``; the portal URL of the reported error, if Procuros gives one."""
        ...


class ProcurosHistory(Protocol):
    """What a dry run reads from Procuros: the parties its transactions name."""

    def known_parties(self, created_from: date, created_to: date) -> frozenset[PartyIdentifier]:
        """The identifiers of every party named in a transaction header of the connection
        (incoming and outgoing) created between two dates (inclusive), every page."""
        ...


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _field_errors(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    errors: dict[str, list[str]] = {}
    for field, texts in raw.items():
        items = texts if isinstance(texts, list) else [texts]
        errors[str(field)] = [str(text)[:_MAX_REASON_CHARS] for text in items]
    return errors


class HttpProcurosClient:
    """The Procuros API v2 over HTTP with a bearer token (``base_url`` ends in ``/v2``)."""

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
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )
        self._retrying = retrying(max_attempts, backoff, sleep)

    # --- plumbing --------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        """Send; retry what is safe to retry; raise OutcomeUnknown where it is not."""
        try:
            for attempt in self._retrying:
                with attempt:
                    return self._attempt(method, path, idempotent=idempotent, **kwargs)
        except Retryable as error:
            raise TransientError(error.message) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        where = f"Procuros {method} {path}"
        try:
            response = self._client.request(method, path, **kwargs)
        except _NOT_SENT as error:
            raise Retryable(f"{where}: {type(error).__name__}") from error
        except httpx.TransportError as error:
            if idempotent:
                raise Retryable(f"{where}: {type(error).__name__}") from error
            raise OutcomeUnknown(f"{where}: {type(error).__name__}, outcome unknown") from error
        status = response.status_code
        if status in (401, 403):
            msg = f"{where}: HTTP {status}, check the Procuros API token"
            raise ConfigurationError(msg)
        if status in (404, 405):
            msg = f"{where}: HTTP {status}, check PROCUROS_BASE_URL (it ends in /v2)"
            raise ConfigurationError(msg)
        if status in RETRYABLE_STATUS:
            header = response.headers.get("Retry-After")
            throttled = status == 429 or (status == 503 and header is not None)
            if idempotent:
                raise Retryable(f"{where}: HTTP {status}")
            if throttled:
                # Refused before processing (and already waited out by the transport).
                raise TransientError(f"{where}: HTTP {status}, still throttled")
            raise OutcomeUnknown(
                f"{where}: HTTP {status}, outcome unknown", retry_after_seconds(header)
            )
        return response

    # --- the port ---------------------------------------------------------------------------

    def send_transaction(self, transaction: ProcurosTransaction) -> SendOutcome:
        """``POST /v2/transactions`` with the transaction's canonical bytes."""
        response = self._request(
            "POST",
            "/transactions",
            idempotent=False,
            content=transaction.body(),
            headers={"Content-Type": "application/json"},
        )
        body = _json(response)
        status = response.status_code
        transaction_id = body.get("procurosTransactionId")
        transaction_id = str(transaction_id) if transaction_id else None
        message = str(body.get("message") or f"HTTP {status}")[:_MAX_REASON_CHARS]
        if status == 201:
            return Sent(transaction_id=transaction_id)
        if status == 202:
            return NotForwarded(message=message, transaction_id=transaction_id)
        if status == 400 and ALREADY_RECEIVED in message.lower():
            return AlreadyReceived(message=message)
        if status in _REFUSAL_STATUS:
            error_url = body.get("errorUrl")
            return Refused(
                status=status,
                message=message,
                errors=_field_errors(body.get("errors")),
                error_url=str(error_url) if error_url else None,
            )
        msg = f"Procuros POST /transactions: unexpected HTTP {status}, outcome unknown"
        raise OutcomeUnknown(msg)

    def sent_transactions(
        self, transaction_type: str, created_from: date, created_to: date
    ) -> Iterator[SentRecord]:
        """``GET /v2/all-transactions`` filtered by type and creation dates, every page."""
        for item in self._all_transactions(created_from, created_to, transaction_type):
            try:
                yield SentRecord.model_validate(item)
            except ValidationError as error:
                logger.warning(
                    "unreadable transaction in the listing",
                    extra={"problems": [e["msg"] for e in error.errors()][:5]},
                )

    def known_parties(self, created_from: date, created_to: date) -> frozenset[PartyIdentifier]:
        """``GET /v2/all-transactions`` of every type created between two dates: the identifiers
        of each party its headers name (buyer, supplier, shipTo, billTo, ...)."""
        parties: set[PartyIdentifier] = set()
        for item in self._all_transactions(created_from, created_to):
            content = item.get("content")
            header = content.get("header") if isinstance(content, dict) else None
            if not isinstance(header, dict):
                continue
            for value in header.values():
                parties.update(party_identifiers(value))
        return frozenset(parties)

    def _all_transactions(
        self, created_from: date, created_to: date, transaction_type: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The raw items of ``GET /v2/all-transactions``, following ``nextCursor``."""
        params: dict[str, str | int] = {
            "filter[created_between]": f"{created_from.isoformat()},{created_to.isoformat()}",
            "per_page": PAGE_SIZE,
        }
        if transaction_type is not None:
            params = {"filter[type]": transaction_type, **params}
        while True:
            response = self._request("GET", "/all-transactions", idempotent=True, params=params)
            if response.status_code != 200:
                msg = f"Procuros GET /all-transactions: unexpected HTTP {response.status_code}"
                raise TransientError(msg)
            page = _json(response)
            items = page.get("items")
            if isinstance(items, list):
                yield from (item for item in items if isinstance(item, dict))
            cursor = page.get("nextCursor")
            if not page.get("hasMore") or not cursor:
                return
            params["cursor"] = str(cursor)

    def report_error(self, report: ErrorReport) -> str | None:
        """``POST /v2/errors``: 201 gives the portal URL of the error."""
        response = self._request("POST", "/errors", idempotent=False, json=report.dump())
        body = _json(response)
        if response.status_code in (200, 201):
            error_url = body.get("errorUrl")
            return str(error_url) if error_url else None
        if 400 <= response.status_code < 500:
            details = _field_errors(body.get("errors"))
            msg = (
                f"Procuros refused the error report (HTTP {response.status_code}): "
                f"{body.get('message', '')} {details or ''}".strip()
            )
            raise BadInputError(msg)
        msg = f"Procuros POST /errors: unexpected HTTP {response.status_code}, outcome unknown"
        raise OutcomeUnknown(msg)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
