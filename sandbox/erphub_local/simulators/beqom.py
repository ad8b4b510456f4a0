"""A beqom Pay Suite simulator: the OAuth2 token endpoint and the document import.

It follows ``contracts/beqom.md``: ``POST /connect/token`` takes form-encoded client credentials
and answers an IdentityServer-style token (errors as ``{"error": ...}``); the import takes one
multipart document per worker per call with the documented field names (matched
case-insensitively, as ASP.NET model binding does), checks the bearer token, its scope and its
expiry, the communication round (it must exist and be Open or In Progress), the worker, the
past ``generationTime`` and the file, and answers in a paginated envelope. A document with the
same file name for the same worker and round is overwritten, with ``overridden: true``.
Validation errors are ASP.NET ProblemDetails bodies.

The simulator has its own clock (:meth:`advance`), so tests can let tokens expire without
waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from erphub_local.simulators.base import JsonApiError, Simulator

if TYPE_CHECKING:
    from collections.abc import Iterable

    from werkzeug.datastructures import FileStorage

__all__ = [
    "DEFAULT_FILE_TYPES",
    "IMPORT_PATH",
    "ROUND_STATUSES",
    "TOKEN_PATH",
    "BeqomApiError",
    "BeqomSimulator",
    "StoredDocument",
]

JsonDict = dict[str, Any]

TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a credential
#: The import path is not public (contracts/beqom.md §4.3); this placeholder is configuration.
IMPORT_PATH = "/api/inbox/documents/import"
ROUND_STATUSES = frozenset({"Open", "In Progress", "Closed"})
_IMPORTABLE_ROUNDS = frozenset({"Open", "In Progress"})
DEFAULT_FILE_TYPES = frozenset({".pdf", ".docx", ".doc", ".xlsx", ".png", ".jpg", ".jpeg", ".txt"})
DEFAULT_TOKEN_LIFETIME_S = 3600
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
_KNOWN_SCOPES = frozenset({"import_inbox", "payinformationapi"})
_IMPORT_SCOPE = "import_inbox"
_FIELDS = ("workerexternalId", "communicationRoundCode", "isSummary", "generationTime")
_PROBLEM_TYPE = "https://tools.ietf.org/html/rfc9110#section-15.5.1"


class BeqomApiError(JsonApiError):
    """Raised inside a view to answer with ``status`` and a JSON ``body``."""


def _problem(status: int, title: str, errors: dict[str, list[str]] | None = None) -> BeqomApiError:
    body: JsonDict = {"type": _PROBLEM_TYPE, "title": title, "status": status}
    if errors:
        body["errors"] = errors
    body["traceId"] = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    return BeqomApiError(status, body)


@dataclass(frozen=True)
class StoredDocument:
    """A document beqom holds for a worker in a communication round."""

    document_id: str
    worker_external_id: str
    round_code: str
    file_name: str
    content: bytes
    generation_time: datetime
    is_summary: bool
    import_time: datetime
    imports: int  # how many import calls stored this document (1 + the times it was overridden)


@dataclass(frozen=True)
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


class BeqomSimulator(Simulator):
    """In-memory beqom Pay Suite token endpoint and document import, over real HTTP."""

    name = "beqom"

    def __init__(
        self,
        *,
        client_id: str = "acme-hub",
        client_secret: str = "beqom-local-secret",  # noqa: S107 - local demo credentials
        token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S,
        allowed_scopes: Iterable[str] = ("import_inbox",),
        file_types: Iterable[str] = DEFAULT_FILE_TYPES,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime_s = token_lifetime_s
        self.allowed_scopes = frozenset(allowed_scopes)
        self.file_types = frozenset(t.lower() for t in file_types)
        self.max_file_bytes = max_file_bytes
        self._state_lock = threading.RLock()
        self._offset_s = 0.0
        self._tokens: dict[str, _Token] = {}
        self._tokens_issued = 0
        self._workers: set[str] = set()
        self._rounds: dict[str, str] = {}
        self._documents: dict[tuple[str, str, str], StoredDocument] = {}
        self._register_routes()

    # ================================================================= URLs

    @property
    def token_url(self) -> str:
        """``BEQOM_TOKEN_URL``."""
        return f"{self.url}{TOKEN_PATH}"

    @property
    def import_url(self) -> str:
        """``BEQOM_IMPORT_URL``."""
        return f"{self.url}{IMPORT_PATH}"

    def hub_env(self) -> dict[str, str]:
        """The variables that point erphub at this simulator (URL and credentials)."""
        return {
            "BEQOM_TOKEN_URL": self.token_url,
            "BEQOM_IMPORT_URL": self.import_url,
            "BEQOM_CLIENT_ID": self.client_id,
            "BEQOM_CLIENT_SECRET": self.client_secret,
        }

    def fault_body(self, status: int) -> JsonDict:
        """ProblemDetails bodies for injected faults."""
        titles = {
            429: "Too many requests.",
            500: "An unexpected error occurred.",
            502: "Bad gateway.",
            503: "The service is unavailable.",
        }
        return _problem(status, titles.get(status, f"Simulated error {status}.")).body

    # ================================================================= clock

    def now(self) -> datetime:
        """The simulator's current time (real time plus :meth:`advance`)."""
        return datetime.fromtimestamp(self._epoch(), UTC)

    def _epoch(self) -> float:
        with self._state_lock:
            return time.time() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward (tokens expire, "past" moves on)."""
        with self._state_lock:
            self._offset_s += seconds

    # ================================================================= seed / test API

    def add_workers(self, *worker_ids: str) -> None:
        """Make workers known (their Worker ID in Workbench)."""
        with self._state_lock:
            self._workers.update(worker_ids)

    def add_round(self, code: str, status: str = "Open") -> None:
        """Create a communication round (``Open``, ``In Progress`` or ``Closed``)."""
        if status not in ROUND_STATUSES:
            raise ValueError(f"unknown round status {status!r}")
        with self._state_lock:
            self._rounds[code] = status

    def set_round_status(self, code: str, status: str) -> None:
        """Open or close a round."""
        with self._state_lock:
            if code not in self._rounds:
                raise KeyError(code)
        self.add_round(code, status)

    @property
    def documents(self) -> dict[tuple[str, str, str], StoredDocument]:
        """The stored documents by (round code, worker id, file name)."""
        with self._state_lock:
            return dict(self._documents)

    @property
    def tokens_issued(self) -> int:
        """How many tokens ``/connect/token`` has issued."""
        with self._state_lock:
            return self._tokens_issued

    def token_requests(self) -> int:
        """How many requests reached the token endpoint (issued or refused)."""
        return self.count("POST", TOKEN_PATH)

    def import_requests(self) -> int:
        """How many requests reached the import endpoint (stored or refused)."""
        return self.count("POST", IMPORT_PATH)

    def expire_tokens(self) -> None:
        """Invalidate every issued token now; the next import with one gets 401."""
        with self._state_lock:
            self._tokens.clear()

    # ================================================================= HTTP plumbing

    def _register_routes(self) -> None:
        app = self.app
        app.register_error_handler(HTTPException, self._on_http_error)
        app.add_url_rule(TOKEN_PATH, view_func=self._token, methods=["POST"])
        app.add_url_rule(IMPORT_PATH, view_func=self._import, methods=["POST"])

    @staticmethod
    def _on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        problem = _problem(status, error.name)
        response = jsonify(problem.body)
        response.status_code = status
        return response

    # ================================================================= token

    def _token(self) -> Response:
        # RFC 6749 §4.4 / IdentityServer: the token request must be form-urlencoded.
        if request.mimetype != "application/x-www-form-urlencoded":
            raise BeqomApiError(400, {"error": "invalid_request"})
        form = request.form
        if form.get("grant_type") != "client_credentials":
            error = "invalid_request" if not form.get("grant_type") else "unsupported_grant_type"
            raise BeqomApiError(400, {"error": error})
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not (
            secrets.compare_digest(client_id, self.client_id)
            and secrets.compare_digest(client_secret, self.client_secret)
        ):
            raise BeqomApiError(400, {"error": "invalid_client"})
        scopes = frozenset(form.get("scope", "").split())
        if not scopes or not scopes <= _KNOWN_SCOPES or not scopes <= self.allowed_scopes:
            raise BeqomApiError(400, {"error": "invalid_scope"})
        access_token = secrets.token_urlsafe(32)
        with self._state_lock:
            self._tokens[access_token] = _Token(
                client_id, scopes, self._epoch() + self.token_lifetime_s
            )
            self._tokens_issued += 1
        return jsonify(
            {
                "access_token": access_token,
                "expires_in": int(self.token_lifetime_s),
                "token_type": "Bearer",
                "scope": " ".join(sorted(scopes)),
            }
        )

    def _authorize(self) -> None:
        scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
        credential = credential.strip()
        token = None
        if scheme.lower() == "bearer" and credential:
            with self._state_lock:
                token = self._tokens.get(credential)
                if token is not None and token.expires_at <= self._epoch():
                    del self._tokens[credential]
                    raise BeqomApiError(
                        401,
                        {},
                        {
                            "WWW-Authenticate": 'Bearer error="invalid_token", '
                            'error_description="The token expired"'
                        },
                    )
        if token is None:
            raise BeqomApiError(401, {}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if _IMPORT_SCOPE not in token.scopes:
            raise BeqomApiError(403, {}, {"WWW-Authenticate": 'Bearer error="insufficient_scope"'})

    # ================================================================= import

    def _import(self) -> Response:
        self._authorize()
        if request.mimetype != "multipart/form-data":
            raise _problem(415, "Unsupported Media Type")
        fields = {name.lower(): name for name in request.form}
        values = {
            f: request.form.getlist(fields[f.lower()]) for f in _FIELDS if f.lower() in fields
        }
        files = [
            storage
            for name in request.files
            if name.lower() == "file"
            for storage in request.files.getlist(name)
        ]
        errors: dict[str, list[str]] = {}
        for name in _FIELDS:
            if not values.get(name) or not values[name][0].strip():
                errors[name] = [f"The {name} field is required."]
            elif len(values[name]) > 1:
                errors[name] = [f"The {name} field must be given once."]
        if not files:
            errors["file"] = ["The file field is required."]
        elif len(files) > 1:
            errors["file"] = ["Only one document per worker can be imported per request."]
        if errors:
            raise _problem(400, "One or more validation errors occurred.", errors)
        worker, round_code = values["workerexternalId"][0], values["communicationRoundCode"][0]
        is_summary = self._summary(values["isSummary"][0], errors)
        generated = self._generation_time(values["generationTime"][0], errors)
        self._check_round(round_code, errors)
        with self._state_lock:
            if worker not in self._workers:
                errors["workerexternalId"] = [f"Worker '{worker}' does not exist."]
        content = self._check_file(files[0], errors)
        if errors:
            raise _problem(400, "One or more validation errors occurred.", errors)
        assert generated is not None and content is not None and files[0].filename
        file_name = PurePosixPath(files[0].filename).name
        return jsonify(self._store(round_code, worker, file_name, content, generated, is_summary))

    @staticmethod
    def _summary(value: str, errors: dict[str, list[str]]) -> bool:
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            errors["isSummary"] = [f"The value '{value}' is not valid for isSummary."]
        return lowered == "true"

    def _generation_time(self, value: str, errors: dict[str, list[str]]) -> datetime | None:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            errors["generationTime"] = [f"The value '{value}' is not a valid date."]
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if parsed > self.now():
            errors["generationTime"] = ["The generation time must be a past date."]
        return parsed

    def _check_round(self, code: str, errors: dict[str, list[str]]) -> None:
        with self._state_lock:
            status = self._rounds.get(code)
        if status is None:
            errors["communicationRoundCode"] = [f"Communication round '{code}' does not exist."]
        elif status not in _IMPORTABLE_ROUNDS:
            errors["communicationRoundCode"] = [
                f"Communication round '{code}' is {status}: documents can only be imported "
                "into an Open or In Progress round."
            ]

    def _check_file(self, storage: FileStorage, errors: dict[str, list[str]]) -> bytes | None:
        name = PurePosixPath(storage.filename or "").name
        if not name:
            errors["file"] = ["The file must have a file name."]
            return None
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in self.file_types:
            allowed = ", ".join(sorted(self.file_types))
            errors["file"] = [f"File type '{suffix or name}' is not allowed (allowed: {allowed})."]
            return None
        content: bytes = storage.read(self.max_file_bytes + 1)
        if not content:
            errors["file"] = ["The file is empty."]
        elif len(content) > self.max_file_bytes:
            errors["file"] = [f"The file exceeds {self.max_file_bytes} bytes."]
        elif suffix == ".pdf" and not content.startswith(b"%PDF-"):
            errors["file"] = ["The file is not a valid PDF document."]
        return content

    def _store(  # noqa: PLR0917 - one private call site
        self,
        round_code: str,
        worker: str,
        file_name: str,
        content: bytes,
        generated: datetime,
        is_summary: bool,
    ) -> JsonDict:
        key = (round_code, worker, file_name)
        now = self.now()
        with self._state_lock:
            existing = self._documents.get(key)
            document = StoredDocument(
                document_id=existing.document_id if existing else str(uuid.uuid4()),
                worker_external_id=worker,
                round_code=round_code,
                file_name=file_name,
                content=content,
                generation_time=generated,
                is_summary=is_summary,
                import_time=now,
                imports=existing.imports + 1 if existing else 1,
            )
            self._documents[key] = document
        return {
            "data": [
                {
                    "documentId": document.document_id,
                    "overridden": existing is not None,
                    "importTime": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                }
            ],
            "pageNumber": 1,
            "pageSize": 1,
            "totalCount": 1,
        }
