"""A Procuros API v2 simulator: outgoing transactions, error reports and the transaction list.

It follows ``contracts/procuros.md``: ``/v2`` paths, a static bearer token (401
``{"message": "Unauthenticated."}``), request bodies validated against the official Procuros
OpenAPI file (a body it rejects gets 422 with ``errors`` and a portal ``errorUrl``), trade
relationships (an unknown receiver is a 422, an inactive one a 202), 400 "Payload already
received" for a byte-identical resend of an accepted payload, ``POST /v2/errors``, and
``GET /v2/all-transactions`` with its filters and cursor pagination. That listing holds both
directions, as Procuros' does: the transactions sent to the simulator and the incoming ones a
test or the demo seeds as the connection's history (:meth:`ProcurosSimulator.receive`). 429 and
5xx come from the base class's fault injection.

The official spec is read from ``<repo>/../shared/contracts/procuros-openapi.yml`` when it is
there; otherwise the project's own minimal schemas (``contracts/procuros-*.schema.json``) are
used, and a log line says so.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import yaml
from flask import Response, jsonify, request
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from openapi_schema_validator import OAS30WriteValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012
from werkzeug.exceptions import HTTPException

from erphub_local.simulators.base import JsonApiError, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

__all__ = [
    "ALREADY_RECEIVED",
    "OFFICIAL_SPEC",
    "TRANSACTION_TYPES",
    "ProcurosApiError",
    "ProcurosSchemas",
    "ProcurosSimulator",
    "TradePartner",
    "load_schemas",
]

JsonDict = dict[str, Any]
log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
OFFICIAL_SPEC = REPO.parent / "shared" / "contracts" / "procuros-openapi.yml"
FALLBACK_TRANSACTIONS = REPO / "contracts" / "procuros-transactions.schema.json"
FALLBACK_ERRORS = REPO / "contracts" / "procuros-errors.schema.json"
BERLIN = ZoneInfo("Europe/Berlin")
PORTAL = "https://portal.procuros.test"

ALREADY_RECEIVED = "Payload already received"
NOT_ACTIVE = "Trade relationship not yet active."
NOT_ACCEPTED = "Trade partner does not accept this transaction type."
INVALID = "The given data was invalid."
UNRESOLVED = "Could not resolve party using provided identifiers"
TRANSACTION_TYPES = (
    "ORDER",
    "ORDER_RESPONSE",
    "SHIPPING_NOTICE",
    "INVOICE",
    "CREDIT_NOTE",
    "DISPATCH_INSTRUCTION",
    "DISPATCH_INSTRUCTION_RESPONSE",
    "RECEIVAL_NOTICE",
    "REMITTANCE_ADVICE",
    "PRODUCT_CATALOG",
    "INVENTORY_REPORT",
    "SALES_REPORT",
)
STATUSES = ("PENDING", "SUCCESS", "FAILED", "DROPPED", "UNKNOWN")
FLOWS = ("LIVE", "TEST")
#: Where each sent type carries its document number, and which party receives it.
IDENTIFIER_FIELDS = {
    "ORDER": "orderIdentifier",
    "ORDER_RESPONSE": "orderResponseIdentifier",
    "SHIPPING_NOTICE": "shippingNoticeIdentifier",
    "INVOICE": "invoiceIdentifier",
    "CREDIT_NOTE": "creditNoteIdentifier",
}
RECEIVER = {"ORDER": "supplier"}  # every other type here goes from supplier to buyer
MAX_PER_PAGE = 100
_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_BETWEEN = re.compile(r"^(\d{4}-\d{2}-\d{2}),(\d{4}-\d{2}-\d{2})$")


class ProcurosApiError(JsonApiError):
    """Raised inside a view to answer with ``status`` and a JSON ``body``."""


# --- request body schemas -------------------------------------------------------------------


def _error_key(error: ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        match = _REQUIRED.match(error.message)
        if match:
            return f"{path}.{match.group(1)}" if path else match.group(1)
    return path or "body"


def _error_text(key: str, error: ValidationError) -> str:
    if error.validator == "required":
        return f"The {key} field is required."
    return str(error.message)


def _collect(validator: Validator, body: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
        key = _error_key(error)
        text = _error_text(key, error)
        if text not in errors.setdefault(key, []):
            errors[key].append(text)
    return errors


@dataclass(frozen=True)
class ProcurosSchemas:
    """Validators of the request bodies, from the official spec or the project's fallback."""

    source: Literal["openapi", "fallback"]
    path: Path
    transactions: dict[str, Validator]
    error_report: Validator

    def transaction_errors(self, body: Any) -> dict[str, list[str]]:
        """Field -> messages for a ``POST /v2/transactions`` body; empty if it is valid."""
        if not isinstance(body, dict):
            return {"body": ["The body must be a JSON object."]}
        kind = body.get("type")
        if not isinstance(kind, str) or kind not in TRANSACTION_TYPES:
            return {"type": [f'Transaction type "{kind}" is not valid']}
        validator = self.transactions.get(kind)
        if validator is None:
            return {"type": [f'Transaction type "{kind}" is not covered by {self.path.name}']}
        return _collect(validator, body)

    def error_report_errors(self, body: Any) -> dict[str, list[str]]:
        """Field -> messages for a ``POST /v2/errors`` body; empty if it is valid."""
        if not isinstance(body, dict):
            return {"body": ["The body must be a JSON object."]}
        return _collect(self.error_report, body)


def _official(path: Path) -> ProcurosSchemas:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    uri = "urn:procuros-openapi"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(spec, default_specification=DRAFT4)
    )

    def validator(pointer: str) -> Validator:
        return OAS30WriteValidator(
            {"$ref": f"{uri}#{pointer}"}, registry=registry, format_checker=oas30_format_checker
        )

    sent = spec["components"]["schemas"]["SentTransaction"]["discriminator"]["mapping"]
    return ProcurosSchemas(
        source="openapi",
        path=path,
        transactions={kind: validator(ref.lstrip("#")) for kind, ref in sent.items()},
        error_report=validator(
            "/paths/~1v2~1errors/post/requestBody/content/application~1json/schema"
        ),
    )


def _fallback(transactions: Path, errors: Path) -> ProcurosSchemas:
    schema = json.loads(transactions.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012)
    )
    checker = FormatChecker()
    whole = Draft202012Validator(schema, registry=registry, format_checker=checker)
    kinds = schema["properties"]["type"]["enum"]
    return ProcurosSchemas(
        source="fallback",
        path=transactions,
        transactions=dict.fromkeys(kinds, whole),
        error_report=Draft202012Validator(
            json.loads(errors.read_text(encoding="utf-8")), format_checker=checker
        ),
    )


@cache
def load_schemas(
    spec_path: Path = OFFICIAL_SPEC,
    fallback_transactions: Path = FALLBACK_TRANSACTIONS,
    fallback_errors: Path = FALLBACK_ERRORS,
) -> ProcurosSchemas:
    """The official spec's validators if the file exists, else the fallback (logged)."""
    if spec_path.is_file():
        log.info("Procuros simulator: validating against the official OpenAPI file %s", spec_path)
        return _official(spec_path)
    log.warning(
        "Procuros simulator: official OpenAPI file %s not found; validating against the"
        " project's fallback schemas %s and %s",
        spec_path,
        fallback_transactions,
        fallback_errors,
    )
    return _fallback(fallback_transactions, fallback_errors)


# --- state --------------------------------------------------------------------------------------


@dataclass
class TradePartner:
    """A party the connection trades with; inactive or not accepting a type means 202."""

    identifier: str
    active: bool = True
    accepts: frozenset[str] | None = None


@dataclass
class _Transaction:
    id: str
    sequence: int
    type: str
    status: str
    flow: str
    created_at: datetime
    content: JsonDict
    digest: str
    hidden_for: int = 0
    #: "outgoing": sent with POST /v2/transactions; "incoming": from a trade partner (seeded)
    direction: Literal["outgoing", "incoming"] = "outgoing"

    def as_json(self) -> JsonDict:
        return {
            "procurosTransactionId": self.id,
            "type": self.type,
            "status": self.status,
            "flow": self.flow,
            "createdAt": self.created_at.isoformat(timespec="microseconds"),
            "replacesProcurosTransactionId": None,
            "replacedByProcurosTransactionId": None,
            "isLatestVersion": True,
            "content": copy.deepcopy(self.content),
        }


@dataclass
class _ListQuery:
    type: str | None
    flow: str | None
    status: str | None
    between: tuple[date, date] | None
    per_page: int
    after: int
    raw: dict[str, str] = field(default_factory=dict)

    def matches(self, transaction: _Transaction) -> bool:
        if self.type is not None and transaction.type != self.type:
            return False
        if self.flow is not None and transaction.flow != self.flow:
            return False
        if self.status is not None and transaction.status != self.status:
            return False
        if self.between is not None:
            day = transaction.created_at.astimezone(BERLIN).date()
            if not self.between[0] <= day <= self.between[1]:
                return False
        return transaction.sequence > self.after


def _berlin_now() -> datetime:
    return datetime.now(BERLIN)


def identifier_of(kind: Any, content: Any) -> str | None:
    """The document number in a transaction's content, if its type carries one."""
    header = content.get("header") if isinstance(content, dict) else None
    field_name = IDENTIFIER_FIELDS.get(kind) if isinstance(kind, str) else None
    value = header.get(field_name) if isinstance(header, dict) and field_name else None
    return value if isinstance(value, str) else None


def _receiver_identifiers(kind: str, content: JsonDict) -> list[str]:
    return _party_identifiers(content, RECEIVER.get(kind, "buyer"))


def _party_identifiers(content: Any, role: str) -> list[str]:
    header = content.get("header") if isinstance(content, dict) else None
    party = header.get(role) if isinstance(header, dict) else None
    identifiers = party.get("identifiers") if isinstance(party, dict) else None
    return [
        str(item.get("identifier"))
        for item in identifiers or []
        if isinstance(item, dict) and item.get("identifier")
    ]


class ProcurosSimulator(Simulator):
    """In-memory Procuros behind the v2 API, served over real HTTP.

    With no trade partner registered every receiver resolves and is active; once partners are
    added (:meth:`add_trade_partner`), an unknown receiver is refused with 422. ``listing_lag``
    keeps a new transaction out of ``GET /v2/all-transactions`` for that many list requests,
    as when Procuros has not processed it yet.
    """

    name = "procuros"

    def __init__(
        self,
        *,
        token: str = "procuros-local-token",  # noqa: S107 - local demo token
        spec_path: Path = OFFICIAL_SPEC,
        listing_lag: int = 0,
        clock: Callable[[], datetime] = _berlin_now,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.token = token
        self.schemas = load_schemas(spec_path)
        self.listing_lag = listing_lag
        self.clock = clock
        self._state_lock = threading.RLock()
        self._partners: dict[str, TradePartner] = {}
        self._transactions: list[_Transaction] = []
        self._digests: dict[str, _Transaction] = {}
        self._error_reports: list[JsonDict] = []
        self._refusals: list[JsonDict] = []
        self._sequence = 0
        self._register_routes()

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT/v2``: what PROCUROS_BASE_URL is set to."""
        return f"{self.url}/v2"

    def hub_env(self) -> dict[str, str]:
        """The variables that point erphub at this simulator (URL and credentials)."""
        return {"PROCUROS_BASE_URL": self.api_url, "PROCUROS_API_TOKEN": self.token}

    def fault_body(self, status: int) -> JsonDict:
        """Procuros error bodies for injected faults."""
        if status == 429:
            return {"message": "Too Many Attempts.", "errorUrl": self._portal_url("throttled")}
        return {"message": f"Simulated {status} response."}

    # ================================================================= seed / test API

    def add_trade_partner(
        self, identifier: str, *, active: bool = True, accepts: Iterable[str] | None = None
    ) -> None:
        """Register a receiver by one of its identifiers (a GLN, say)."""
        with self._state_lock:
            self._partners[identifier] = TradePartner(
                identifier, active, None if accepts is None else frozenset(accepts)
            )

    def receive(
        self,
        kind: str,
        content: JsonDict,
        *,
        flow: str = "LIVE",
        created_at: datetime | None = None,
    ) -> str:
        """Store an incoming transaction, as if a trade partner had sent it: the connection's
        history, listed by ``GET /v2/all-transactions`` (created now unless ``created_at``).

        Its content must be valid for its type where the schemas cover the type, and name its
        buyer and supplier by identifiers. Returns its ``procurosTransactionId``.
        """
        if kind not in TRANSACTION_TYPES or flow not in FLOWS:
            raise ValueError(f"unknown transaction type {kind!r} or flow {flow!r}")
        errors = {
            f"content.header.{role}": ["The party needs identifiers."]
            for role in ("buyer", "supplier")
            if not _party_identifiers(content, role)
        }
        if kind in self.schemas.transactions:
            errors |= self.schemas.transaction_errors({"type": kind, "content": content})
        if errors:
            raise ValueError(f"not a valid {kind}: {errors}")
        with self._state_lock:
            self._sequence += 1
            stored = _Transaction(
                id=str(uuid.uuid4()),
                sequence=self._sequence,
                type=kind,
                status="SUCCESS",
                flow=flow,
                created_at=created_at or self.clock(),
                content=copy.deepcopy(content),
                digest="",
                direction="incoming",
            )
            self._transactions.append(stored)
        return stored.id

    @property
    def transactions(self) -> list[JsonDict]:
        """Every transaction sent to the simulator, oldest first, as the API lists them."""
        with self._state_lock:
            return [t.as_json() for t in self._transactions if t.direction == "outgoing"]

    @property
    def received(self) -> list[JsonDict]:
        """The incoming transactions seeded with :meth:`receive`, oldest first."""
        with self._state_lock:
            return [t.as_json() for t in self._transactions if t.direction == "incoming"]

    def transactions_for(self, identifier: str, kind: str | None = None) -> list[JsonDict]:
        """The transactions sent with this document number (of one type, if given)."""
        with self._state_lock:
            return [
                t.as_json()
                for t in self._transactions
                if t.direction == "outgoing"
                and identifier_of(t.type, t.content) == identifier
                and kind in (None, t.type)
            ]

    def posts_for(self, identifier: str) -> int:
        """How many ``POST /v2/transactions`` carried this document number (any answer)."""
        return sum(
            1
            for call in self.calls
            if call.method == "POST"
            and call.path == "/v2/transactions"
            and isinstance(call.body, dict)
            and identifier_of(call.body.get("type"), call.body.get("content")) == identifier
        )

    @property
    def error_reports(self) -> list[JsonDict]:
        """The bodies of the accepted ``POST /v2/errors``, with their ``errorUrl``."""
        with self._state_lock:
            return copy.deepcopy(self._error_reports)

    def error_reports_for(self, identifier: str) -> list[JsonDict]:
        """The error reports naming this transaction identifier."""
        return [r for r in self.error_reports if r.get("transactionIdentifier") == identifier]

    @property
    def refusals(self) -> list[JsonDict]:
        """Every 422 on ``POST /v2/transactions``: identifier, errors and errorUrl."""
        with self._state_lock:
            return copy.deepcopy(self._refusals)

    # ================================================================= HTTP plumbing

    def _register_routes(self) -> None:
        app = self.app
        app.before_request(self._authenticate)
        app.register_error_handler(HTTPException, self._on_http_error)
        app.add_url_rule("/v2/ping", view_func=self._ping)
        app.add_url_rule("/v2/transactions", view_func=self._send, methods=["POST"])
        app.add_url_rule("/v2/errors", view_func=self._report_error, methods=["POST"])
        app.add_url_rule("/v2/all-transactions", view_func=self._list)
        app.add_url_rule("/v2/all-transactions/<transaction_id>", view_func=self._show)

    @staticmethod
    def _on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        texts = {404: "Not found.", 405: "Method not allowed."}
        response = jsonify({"message": texts.get(status, error.description or f"HTTP {status}")})
        response.status_code = status
        return response

    def _authenticate(self) -> None:
        scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or credential.strip() != self.token:
            raise ProcurosApiError(401, {"message": "Unauthenticated."})

    @staticmethod
    def _portal_url(kind: str) -> str:
        return f"{PORTAL}/{kind}/{uuid.uuid4()}"

    @staticmethod
    def _body() -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            return None

    # ================================================================= endpoints

    @staticmethod
    def _ping() -> Response:
        return Response(status=204)

    def _send(self) -> tuple[Response, int]:
        raw = request.get_data()
        digest = hashlib.sha256(raw).hexdigest()
        body = self._body()
        with self._state_lock:
            if digest in self._digests:
                error_url = self._portal_url("errors")
                raise ProcurosApiError(400, {"message": ALREADY_RECEIVED, "errorUrl": error_url})
            errors = self.schemas.transaction_errors(body)
            kind = body.get("type") if isinstance(body, dict) else None
            content: JsonDict = body.get("content", {}) if isinstance(body, dict) else {}
            partner: TradePartner | None = None
            if not errors and self._partners:
                partner = self._resolve(str(kind), content)
                if partner is None:
                    errors = {RECEIVER.get(str(kind), "buyer"): [UNRESOLVED]}
            if errors:
                error_url = self._portal_url("errors")
                self._refusals.append(
                    {
                        "identifier": identifier_of(kind, content),
                        "errors": errors,
                        "errorUrl": error_url,
                    }
                )
                raise ProcurosApiError(
                    422, {"message": INVALID, "errors": errors, "errorUrl": error_url}
                )
            assert isinstance(kind, str)  # checked by the schema
            forwarded = partner is None or (
                partner.active and (partner.accepts is None or kind in partner.accepts)
            )
            stored = self._store(kind, content, digest, "SUCCESS" if forwarded else "DROPPED")
        if forwarded:
            return jsonify({"procurosTransactionId": stored.id}), 201
        message = NOT_ACTIVE if partner is not None and not partner.active else NOT_ACCEPTED
        return jsonify({"message": message, "procurosTransactionId": stored.id}), 202

    def _resolve(self, kind: str, content: JsonDict) -> TradePartner | None:
        for identifier in _receiver_identifiers(kind, content):
            if identifier in self._partners:
                return self._partners[identifier]
        return None

    def _store(self, kind: str, content: JsonDict, digest: str, status: str) -> _Transaction:
        self._sequence += 1
        stored = _Transaction(
            id=str(uuid.uuid4()),
            sequence=self._sequence,
            type=kind,
            status=status,
            flow="LIVE",
            created_at=self.clock(),
            content=copy.deepcopy(content),
            digest=digest,
            hidden_for=self.listing_lag,
        )
        self._transactions.append(stored)
        self._digests[digest] = stored
        return stored

    def _report_error(self) -> tuple[Response, int]:
        body = self._body()
        errors = self.schemas.error_report_errors(body)
        if errors:
            raise ProcurosApiError(422, {"message": INVALID, "errors": errors})
        error_url = self._portal_url("errors")
        with self._state_lock:
            self._error_reports.append({**body, "errorUrl": error_url})
        return jsonify({"message": "OK.", "errorUrl": error_url}), 201

    def _list(self) -> Response:
        query = self._list_query()
        with self._state_lock:
            matching: list[_Transaction] = []
            for transaction in self._transactions:
                if transaction.hidden_for > 0:
                    transaction.hidden_for -= 1
                    continue
                if query.matches(transaction):
                    matching.append(transaction)
            page = matching[: query.per_page]
            items = [t.as_json() for t in page]
        has_more = len(matching) > query.per_page
        cursor = _encode_cursor(page[-1].sequence) if has_more and page else None
        next_url = None
        if cursor is not None:
            next_url = f"{self.api_url}/all-transactions?" + urlencode(
                {**query.raw, "cursor": cursor}
            )
        return jsonify(
            {
                "items": items,
                "hasMore": has_more,
                "perPage": query.per_page,
                "count": len(items),
                "nextCursor": cursor,
                "nextPageUrl": next_url,
            }
        )

    def _list_query(self) -> _ListQuery:
        args = request.args
        errors: dict[str, list[str]] = {}

        def choice(name: str, allowed: Iterable[str]) -> str | None:
            value = args.get(name)
            if value is not None and value not in allowed:
                errors[name] = [f"The selected {name} is invalid."]
            return value

        kind = choice("filter[type]", TRANSACTION_TYPES)
        flow = choice("filter[flow]", FLOWS)
        status = choice("filter[status]", STATUSES)
        between = None
        raw_between = args.get("filter[created_between]")
        if raw_between is not None:
            match = _BETWEEN.match(raw_between)
            try:
                if match is None:
                    raise ValueError(raw_between)
                between = (date.fromisoformat(match.group(1)), date.fromisoformat(match.group(2)))
            except ValueError:
                errors["filter[created_between]"] = ["Expected YYYY-MM-DD,YYYY-MM-DD."]
        raw_per_page = args.get("per_page", str(MAX_PER_PAGE))
        if not raw_per_page.isdigit() or not 1 <= int(raw_per_page) <= MAX_PER_PAGE:
            errors["per_page"] = [f"The per page must be between 1 and {MAX_PER_PAGE}."]
        after = _decode_cursor(args.get("cursor"))
        if after is None:
            errors["cursor"] = ["The cursor is invalid."]
        if errors:
            raise ProcurosApiError(422, {"message": INVALID, "errors": errors})
        assert after is not None
        raw = {k: v for k, v in args.items() if k != "cursor"}
        return _ListQuery(kind, flow, status, between, int(raw_per_page), after, raw)

    def _show(self, transaction_id: str) -> Response:
        with self._state_lock:
            for transaction in self._transactions:
                if transaction.id == transaction_id:
                    return jsonify({"data": transaction.as_json()})
        raise ProcurosApiError(404, {"message": "Transaction not found."})


def _encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> int | None:
    """The sequence number after which a page starts (0 without a cursor); None if invalid."""
    if not raw:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    prefix, _, number = decoded.partition(":")
    return int(number) if prefix == "seq" and number.isdigit() else None
