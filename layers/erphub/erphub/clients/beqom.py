"""The beqom Pay Suite port and its adapter: OAuth2 client credentials, one multipart import
per worker document (``contracts/beqom.md``).

The access token is requested with the client-credentials grant, form-encoded, and kept for
the life of the container until shortly before ``expires_in`` runs out; a 401 on an import
renews it once. The import POST is safe to send again: beqom keys a worker's documents by file
name and overwrites a document with the same name (answering ``overridden: true``), so a retry
after a timeout replaces the document instead of adding a second one.
"""

from __future__ import annotations

import mimetypes
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from erphub.clients.http import RETRYABLE_STATUS, Retryable, build_client, retrying
from erphub.errors import ConfigurationError, TransientError
from erphub.models import CamelModel
from erphub.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_SCOPE = "import_inbox"
#: Renew this long before the token expires (at most half its lifetime).
REFRESH_MARGIN_S = 60.0
_REJECTION_STATUS = frozenset({400, 409, 413, 415, 422})
_MAX_REASON_CHARS = 500


# --- beqom worker documents ------------------------------------------------------------------

_NO_SEPARATORS = re.compile(r"^[^/\\\x00-\x1f]+$")


class WorkerDocument(CamelModel):
    """A document for one worker in one beqom communication round (one import call each).

    The business key is round/worker/file name: beqom overwrites a document with the same file
    name, so importing the same key again replaces it instead of adding a second one.
    """

    communication_round_code: str = Field(min_length=1, max_length=100, pattern=_NO_SEPARATORS)
    worker_external_id: str = Field(min_length=1, max_length=100, pattern=_NO_SEPARATORS)
    file_name: str = Field(min_length=1, max_length=255, pattern=_NO_SEPARATORS)
    generation_time: datetime
    is_summary: bool = False

    @field_validator("generation_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            msg = "generationTime needs a time zone (e.g. 2026-01-31T00:00:00Z)"
            raise ValueError(msg)
        return value

    @property
    def business_key(self) -> str:
        """``<round>/<worker>/<file name>``: what identifies the document in beqom."""
        return f"{self.communication_round_code}/{self.worker_external_id}/{self.file_name}"


class ImportedDocument(BaseModel):
    """beqom holds the document: its id, whether it replaced one with the same name, and when."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    document_id: str = Field(alias="documentId", min_length=1)
    overridden: bool
    import_time: str = Field(alias="importTime", min_length=1)


class ImportRejected(BaseModel):
    """beqom refused the document (unknown worker, closed round, bad file...), with its reasons."""

    model_config = ConfigDict(frozen=True)

    status: int
    reasons: list[str]


class BeqomPort(Protocol):
    """What the import flow needs from beqom."""

    def import_document(
        self, document: WorkerDocument, content: bytes
    ) -> ImportedDocument | ImportRejected:
        """Import one worker document; importing the same file name again overwrites it."""
        ...


class _Token(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: SecretStr
    expires_in: int = Field(gt=0)
    token_type: str = Field(default="Bearer", min_length=1)


class TokenCache:
    """One access token per container, renewed shortly before it expires or when refused."""

    def __init__(
        self,
        fetch: Callable[[], tuple[SecretStr, int]],
        *,
        clock: Callable[[], float] = time.monotonic,
        margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._renew_at = 0.0

    def get(self) -> SecretStr:
        """The current token, fetching a new one if there is none or it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, expires_in = self._fetch()
                margin = min(self._margin_s, expires_in / 2)
                self._token, self._renew_at = token, self._clock() + expires_in - margin
            return self._token

    def invalidate(self, token: SecretStr) -> None:
        """Forget ``token`` (refused by the server), unless it was already replaced."""
        with self._lock:
            if self._token is not None and (
                self._token.get_secret_value() == token.get_secret_value()
            ):
                self._token = None


def problem_reasons(body: Any, status: int) -> list[str]:
    """Readable reasons from an ASP.NET ProblemDetails body (``errors`` by field, or title)."""
    reasons: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, dict):
            for field, messages in errors.items():
                items = messages if isinstance(messages, list) else [messages]
                reasons.extend(f"{field}: {message}" for message in items)
        if not reasons:
            text = body.get("detail") or body.get("title") or body.get("error")
            if text:
                reasons.append(str(text))
    if not reasons:
        reasons.append(f"HTTP {status}")
    return [reason[:_MAX_REASON_CHARS] for reason in reasons]


def parse_import_response(body: Any) -> ImportedDocument:
    """The import result, at the top level or in the first element of the page's list.

    The paginated envelope is undocumented, so any list-valued key is accepted.
    """
    candidates: list[Any] = [body]
    if isinstance(body, dict):
        candidates += [value[0] for value in body.values() if isinstance(value, list) and value]
    elif isinstance(body, list) and body:
        candidates = [body[0]]
    for candidate in candidates:
        if isinstance(candidate, dict) and "documentId" in candidate:
            return ImportedDocument.model_validate(candidate)
    msg = "no documentId in the response"
    raise ValueError(msg)


def generation_time_text(document: WorkerDocument) -> str:
    """``generationTime`` as ISO 8601 in UTC (``2026-01-31T08:00:00Z``)."""
    return document.generation_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpBeqomClient:
    """beqom over HTTP: token endpoint and document import, both URLs configured."""

    def __init__(
        self,
        token_url: str,
        import_url: str,
        client_id: str,
        client_secret: SecretStr,
        *,
        scope: str = DEFAULT_SCOPE,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._import_url = import_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._client = build_client(
            timeout=timeout, transport=transport, max_retry_after=max_retry_after, sleep=sleep
        )
        self._retrying = retrying(max_attempts, backoff, sleep)
        self.tokens = TokenCache(self._request_token, clock=clock)

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying connection failures and 408/429/5xx a bounded number of times."""
        try:
            for attempt in self._retrying:
                with attempt:
                    try:
                        response = self._client.request(method, url, **kwargs)
                    except httpx.TransportError as error:
                        msg = f"beqom {what}: {type(error).__name__}"
                        raise Retryable(msg) from error
                    if response.status_code in RETRYABLE_STATUS:
                        msg = f"beqom {what}: HTTP {response.status_code}"
                        raise Retryable(msg)
                    return response
        except Retryable as error:
            raise TransientError(error.message) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _request_token(self) -> tuple[SecretStr, int]:
        """``POST /connect/token``, form-encoded client credentials."""
        response = self._send(
            "token",
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "scope": self._scope,
            },
        )
        body = _json(response)
        if response.status_code in (400, 401):
            error = (
                body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else ""
            )
            msg = (
                f"beqom refused the token request ({error or response.status_code}): check the "
                f"client id, the client secret and the scope {self._scope!r}"
            )
            raise ConfigurationError(msg)
        if response.status_code != 200:
            msg = f"beqom token: unexpected HTTP {response.status_code}"
            raise TransientError(msg)
        try:
            token = _Token.model_validate(body)
        except ValidationError as error:
            fields = ", ".join(str(e["loc"][0]) for e in error.errors() if e["loc"])
            msg = f"beqom token response lacks or has invalid: {fields}"
            raise TransientError(msg) from None
        logger.info("beqom token issued", extra={"expires_in": token.expires_in})
        return token.access_token, token.expires_in

    def import_document(
        self, document: WorkerDocument, content: bytes
    ) -> ImportedDocument | ImportRejected:
        """One multipart import; a 401 renews the token once and sends it again."""
        content_type = mimetypes.guess_type(document.file_name)[0] or "application/octet-stream"
        form = {
            "workerexternalId": document.worker_external_id,
            "communicationRoundCode": document.communication_round_code,
            "isSummary": "true" if document.is_summary else "false",
            "generationTime": generation_time_text(document),
        }
        for renewed in (False, True):
            token = self.tokens.get()
            response = self._send(
                "import",
                "POST",
                self._import_url,
                data=form,
                files={"file": (document.file_name, content, content_type)},
                headers={"Authorization": f"Bearer {token.get_secret_value()}"},
            )
            if response.status_code != 401:
                break
            self.tokens.invalidate(token)
            logger.info("beqom refused the token, renewing it", extra={"renewed": renewed})
        return self._import_result(response)

    def _import_result(self, response: httpx.Response) -> ImportedDocument | ImportRejected:
        status = response.status_code
        body = _json(response)
        if status in (200, 201):
            try:
                return parse_import_response(body)
            except (ValueError, ValidationError) as error:
                # The document may well be stored: importing it again is safe and tells.
                msg = f"beqom import: unreadable HTTP {status} answer ({error})"
                raise TransientError(msg) from None
        if status == 401:
            msg = "beqom import: HTTP 401 with a fresh token; check the client's access"
            raise ConfigurationError(msg)
        if status == 403:
            msg = f"beqom import: HTTP 403, the client lacks the {self._scope!r} scope"
            raise ConfigurationError(msg)
        if status == 404 and not (isinstance(body, dict) and body.get("errors")):
            msg = f"beqom import: HTTP 404 at {self._import_url}; check BEQOM_IMPORT_URL"
            raise ConfigurationError(msg)
        if status in _REJECTION_STATUS or 400 <= status < 500:
            return ImportRejected(status=status, reasons=problem_reasons(body, status))
        msg = f"beqom import: unexpected HTTP {status}"
        raise TransientError(msg)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
