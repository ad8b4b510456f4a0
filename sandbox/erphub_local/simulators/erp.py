"""An ERP simulator implementing erphub's own ERP contract (``contracts/erp-openapi.yaml``).

Invoices are validated the way a strict ERP would (known supplier, unique invoice number per
supplier, totals that add up, booked currencies) and are unique per ``externalReference``;
``POST /invoices/validate`` runs the same checks and books nothing.
Outgoing documents are listed with cursor pagination and updated with the Procuros status.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from erphub_local.simulators.base import JsonApiError, Simulator

__all__ = [
    "DEFAULT_CURRENCIES",
    "OUTGOING_TYPES",
    "PROCUROS_STATUSES",
    "ErpApiError",
    "ErpSimulator",
    "Problem",
]

JsonDict = dict[str, Any]

DEFAULT_CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "CZK"})
PROCUROS_STATUSES = frozenset({"TRANSMITTED", "NO_ACTION"})
OUTGOING_TYPES = frozenset({"INVOICE", "ORDER_RESPONSE", "SHIPPING_NOTICE", "CREDIT_NOTE"})
MAX_LIMIT = 100
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REQUIRED_TEXT = ("externalReference", "invoiceNumber", "issueDate", "currency")
_REQUIRED_AMOUNTS = ("netAmount", "taxAmount", "totalAmount")
_LINE_DECIMALS = ("quantity", "unitPrice", "taxRate", "amount")
_PATCHABLE = frozenset({"procurosStatus", "errorUrl", "procurosTransactionId"})


@dataclass(frozen=True)
class Problem:
    """One entry of an error's ``details``; ``code`` is a stable machine-readable reason."""

    field: str
    message: str
    code: str

    def as_json(self) -> JsonDict:
        """Wire form."""
        return {"field": self.field, "message": self.message, "code": self.code}


class ErpApiError(JsonApiError):
    """Raised inside a view to answer with the contract's error body."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: list[Problem] | None = None,
        extra: JsonDict | None = None,
    ) -> None:
        body: JsonDict = {"error": error, "message": message}
        if details:
            body["details"] = [problem.as_json() for problem in details]
        super().__init__(status, body | (extra or {}))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _normalise_vat(vat_id: str) -> str:
    return re.sub(r"[\s.\-]", "", vat_id).upper()


class ErpSimulator(Simulator):
    """In-memory ERP behind the erphub ERP contract, served over real HTTP.

    ``dedupe_external_reference=False`` turns the 409 guard off, modelling an ERP that would
    book the same document twice; :meth:`create_count` then shows whether a client relied on it.
    """

    name = "erp"

    def __init__(
        self,
        *,
        token: str = "erp-local-token",  # noqa: S107 - local demo token
        currencies: frozenset[str] | set[str] = DEFAULT_CURRENCIES,
        dedupe_external_reference: bool = True,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.token = token
        self.currencies = frozenset(currencies)
        self.dedupe_external_reference = dedupe_external_reference
        self._state_lock = threading.RLock()
        self._suppliers: dict[str, str] = {}
        self._invoices: dict[str, JsonDict] = {}
        self._booked_numbers: set[tuple[str, str]] = set()
        self._creations: dict[str, int] = {}
        self._posts: dict[str, int] = {}
        self._outgoing: dict[str, JsonDict] = {}
        self._sequence = 0
        self._register_routes()

    def hub_env(self) -> dict[str, str]:
        """The variables that point erphub at this simulator (URL and credentials)."""
        return {"ERP_BASE_URL": self.url, "ERP_API_TOKEN": self.token}

    def fault_body(self, status: int) -> JsonDict:
        """Contract error bodies for injected faults."""
        codes = {429: "rate_limited", 500: "internal_error", 503: "unavailable"}
        code = codes.get(status, f"http_{status}")
        return {"error": code, "message": f"Simulated {status} response."}

    # ================================================================= seed / test API

    def add_supplier(self, vat_id: str, name: str) -> None:
        """Register a supplier the ERP books invoices for."""
        with self._state_lock:
            self._suppliers[_normalise_vat(vat_id)] = name

    @property
    def suppliers(self) -> dict[str, str]:
        """Registered suppliers, normalised VAT id -> name."""
        with self._state_lock:
            return dict(self._suppliers)

    @property
    def invoices(self) -> dict[str, JsonDict]:
        """A copy of the booked invoices by ERP id."""
        with self._state_lock:
            return copy.deepcopy(self._invoices)

    def invoices_by_reference(self, reference: str) -> list[JsonDict]:
        """Booked invoices carrying an ``externalReference`` (at most one unless dedupe is off)."""
        with self._state_lock:
            return [
                copy.deepcopy(inv)
                for inv in self._invoices.values()
                if inv["externalReference"] == reference
            ]

    def create_count(self, reference: str) -> int:
        """How many invoices were created (201) for an ``externalReference``."""
        with self._state_lock:
            return self._creations.get(reference, 0)

    def post_count(self, reference: str) -> int:
        """How many ``POST /invoices`` requests carried an ``externalReference`` (any outcome)."""
        with self._state_lock:
            return self._posts.get(reference, 0)

    def add_outgoing(self, doc: JsonDict) -> str:
        """Add an outgoing document (``id`` required; other fields get contract defaults)."""
        if not isinstance(doc.get("id"), str) or not doc["id"]:
            raise ValueError("an outgoing document needs a non-empty string 'id'")
        stored: JsonDict = {
            "type": "INVOICE",
            "number": doc["id"],
            "updatedAt": _now_iso(),
            "procurosStatus": None,
            "errorUrl": None,
            "procurosTransactionId": None,
            "document": {},
        }
        stored.update(copy.deepcopy(doc))
        with self._state_lock:
            self._outgoing[stored["id"]] = stored
        return str(stored["id"])

    def outgoing(self, doc_id: str) -> JsonDict:
        """A copy of one outgoing document."""
        with self._state_lock:
            return copy.deepcopy(self._outgoing[doc_id])

    @property
    def outgoing_documents(self) -> dict[str, JsonDict]:
        """A copy of all outgoing documents by id."""
        with self._state_lock:
            return copy.deepcopy(self._outgoing)

    # ================================================================= HTTP plumbing

    def _register_routes(self) -> None:
        app = self.app
        app.before_request(self._authenticate)
        app.register_error_handler(HTTPException, self._on_http_error)
        app.add_url_rule("/invoices", view_func=self._create_invoice, methods=["POST"])
        app.add_url_rule("/invoices", view_func=self._find_invoices, methods=["GET"])
        app.add_url_rule("/invoices/validate", view_func=self._validate_invoice, methods=["POST"])
        app.add_url_rule("/outgoing-documents", view_func=self._list_outgoing)
        app.add_url_rule(
            "/outgoing-documents/<doc_id>",
            view_func=self._outgoing_detail,
            methods=["GET", "PATCH"],
        )

    @staticmethod
    def _on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        response = jsonify(
            {"error": codes.get(status, f"http_{status}"), "message": error.description or ""}
        )
        response.status_code = status
        return response

    def _authenticate(self) -> None:
        scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or credential.strip() != self.token:
            raise ErpApiError(401, "unauthorized", "A valid bearer token is required.")

    @staticmethod
    def _json_object() -> JsonDict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ErpApiError(400, "bad_request", "The body must be a JSON object.")
        return data

    # ================================================================= invoices

    def _check_invoice(self, data: JsonDict) -> None:
        """What ``POST /invoices`` refuses (409, 422), raised; called with the state lock held."""
        reference = data.get("externalReference")
        if isinstance(reference, str) and reference:
            existing = self._find_by_reference(reference)
            if existing is not None and self.dedupe_external_reference:
                raise ErpApiError(
                    409,
                    "duplicate_external_reference",
                    f"An invoice with externalReference {reference!r} already exists.",
                    extra={"id": existing["id"]},
                )
        problems = _shape_problems(data) or self._business_problems(data)
        if problems:
            raise ErpApiError(
                422, "validation_failed", "The invoice was rejected.", details=problems
            )

    def _validate_invoice(self) -> tuple[Response, int]:
        """``POST /invoices/validate``: the checks of a create, and nothing else."""
        data = self._json_object()
        with self._state_lock:
            self._check_invoice(data)
        return jsonify({"valid": True}), 200

    def _create_invoice(self) -> tuple[Response, int]:
        data = self._json_object()
        reference = data.get("externalReference")
        with self._state_lock:
            if isinstance(reference, str) and reference:
                self._posts[reference] = self._posts.get(reference, 0) + 1
            self._check_invoice(data)
            self._sequence += 1
            invoice_id = f"INV-{self._sequence:06d}"
            invoice = copy.deepcopy(data)
            invoice["id"] = invoice_id
            invoice["createdAt"] = _now_iso()
            self._invoices[invoice_id] = invoice
            vat = _normalise_vat(data["supplier"]["vatId"])
            self._booked_numbers.add((vat, data["invoiceNumber"].strip()))
            self._creations[data["externalReference"]] = (
                self._creations.get(data["externalReference"], 0) + 1
            )
        return jsonify({"id": invoice_id, "externalReference": data["externalReference"]}), 201

    def _find_by_reference(self, reference: str) -> JsonDict | None:
        for invoice in self._invoices.values():
            if invoice["externalReference"] == reference:
                return invoice
        return None

    def _business_problems(self, data: JsonDict) -> list[Problem]:
        problems: list[Problem] = []
        vat = _normalise_vat(data["supplier"]["vatId"])
        if vat not in self._suppliers:
            problems.append(
                Problem("supplier.vatId", f"Unknown supplier VAT id {vat}.", "unknown_supplier")
            )
        elif (vat, data["invoiceNumber"].strip()) in self._booked_numbers:
            problems.append(
                Problem(
                    "invoiceNumber",
                    f"Invoice number {data['invoiceNumber']} is already booked for {vat}.",
                    "duplicate_invoice_number",
                )
            )
        if data["currency"] not in self.currencies:
            problems.append(
                Problem(
                    "currency",
                    f"Currency {data['currency']} is not booked by this ERP.",
                    "unsupported_currency",
                )
            )
        net, tax, total = (Decimal(data[key]) for key in _REQUIRED_AMOUNTS)
        if net + tax != total:
            problems.append(
                Problem(
                    "totalAmount",
                    f"netAmount + taxAmount = {net + tax}, but totalAmount is {total}.",
                    "totals_mismatch",
                )
            )
        lines = data.get("lines")
        if lines:
            line_sum = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
            if line_sum != net:
                problems.append(
                    Problem(
                        "lines",
                        f"The line amounts add up to {line_sum}, but netAmount is {net}.",
                        "lines_mismatch",
                    )
                )
        return problems

    def _find_invoices(self) -> Response:
        reference = request.args.get("externalReference")
        if not reference:
            raise ErpApiError(
                400,
                "bad_request",
                "The externalReference query parameter is required.",
                details=[Problem("externalReference", "Required.", "missing_field")],
            )
        with self._state_lock:
            items = [
                copy.deepcopy(inv)
                for inv in self._invoices.values()
                if inv["externalReference"] == reference
            ]
        return jsonify({"items": items})

    # ================================================================= outgoing documents

    def _list_outgoing(self) -> Response:
        args = request.args
        status_filter = args.get("procurosStatus")
        if status_filter is not None and status_filter not in PROCUROS_STATUSES | {"empty"}:
            raise ErpApiError(
                400,
                "bad_request",
                "procurosStatus must be empty, TRANSMITTED or NO_ACTION.",
                details=[Problem("procurosStatus", "Unknown value.", "invalid_value")],
            )
        limit = _parse_limit(args.get("limit"))
        after = _decode_cursor(args.get("cursor"))
        with self._state_lock:
            matching = [
                doc
                for doc_id, doc in sorted(self._outgoing.items())
                if (after is None or doc_id > after)
                and (
                    status_filter is None
                    or doc["procurosStatus"]
                    == (None if status_filter == "empty" else status_filter)
                )
            ]
            page = [copy.deepcopy(doc) for doc in matching[:limit]]
        # Keyset cursor: documents updated meanwhile drop out without shifting later pages.
        next_cursor = _encode_cursor(page[-1]["id"]) if len(matching) > limit else None
        return jsonify({"items": page, "nextCursor": next_cursor})

    def _outgoing_detail(self, doc_id: str) -> Response:
        with self._state_lock:
            doc = self._outgoing.get(doc_id)
            if doc is None:
                raise ErpApiError(404, "not_found", f"No outgoing document {doc_id!r}.")
            if request.method == "PATCH":
                changes = self._json_object()
                problems = _outgoing_patch_problems(changes)
                if problems:
                    raise ErpApiError(
                        422, "validation_failed", "The update was rejected.", details=problems
                    )
                doc.update(changes)
                doc["updatedAt"] = _now_iso()
            return jsonify(copy.deepcopy(doc))


# ===================================================================== validation helpers


def _shape_problems(data: JsonDict) -> list[Problem]:
    """Missing or malformed fields (checked before any business rule)."""
    problems: list[Problem] = []
    for key in _REQUIRED_TEXT:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(key, "This field is required.", "missing_field"))
    supplier = data.get("supplier")
    if not isinstance(supplier, dict):
        problems.append(Problem("supplier", "This field is required.", "missing_field"))
    else:
        for key in ("vatId", "name"):
            value = supplier.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    Problem(f"supplier.{key}", "This field is required.", "missing_field")
                )
    for key in _REQUIRED_AMOUNTS:
        problems.extend(_decimal_problem(key, data.get(key), required=True))
    for key in ("issueDate", "dueDate"):
        value = data.get(key)
        if isinstance(value, str) and value.strip() and not _is_date(value):
            problems.append(Problem(key, "Expected a date as YYYY-MM-DD.", "invalid_date"))
    currency = data.get("currency")
    if isinstance(currency, str) and currency and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(
            Problem("currency", "Expected an ISO 4217 code such as EUR.", "invalid_currency")
        )
    problems.extend(_line_problems(data.get("lines")))
    return problems


def _line_problems(lines: Any) -> list[Problem]:
    if lines is None:
        return []
    if not isinstance(lines, list):
        return [Problem("lines", "Expected a list.", "invalid_type")]
    problems: list[Problem] = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            problems.append(Problem(f"lines[{index}]", "Expected an object.", "invalid_type"))
            continue
        for key in _LINE_DECIMALS:
            problems.extend(
                _decimal_problem(f"lines[{index}].{key}", line.get(key), required=key == "amount")
            )
    return problems


def _decimal_problem(name: str, value: Any, *, required: bool) -> list[Problem]:
    if value is None or value == "":
        return [Problem(name, "This field is required.", "missing_field")] if required else []
    if not isinstance(value, str) or not _DECIMAL.match(value):
        return [Problem(name, "Expected a decimal string such as 1234.50.", "invalid_decimal")]
    return []


def _is_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _outgoing_patch_problems(changes: JsonDict) -> list[Problem]:
    problems = [
        Problem(key, "This field cannot be updated.", "unknown_field")
        for key in changes
        if key not in _PATCHABLE
    ]
    if "procurosStatus" in changes and changes["procurosStatus"] not in (
        *PROCUROS_STATUSES,
        None,
    ):
        problems.append(
            Problem("procurosStatus", "Expected TRANSMITTED, NO_ACTION or null.", "invalid_value")
        )
    error_url = changes.get("errorUrl")
    if error_url is not None and not (
        isinstance(error_url, str) and re.match(r"^https?://\S+$", error_url)
    ):
        problems.append(Problem("errorUrl", "Expected an http(s) URL or null.", "invalid_value"))
    transaction_id = changes.get("procurosTransactionId")
    if transaction_id is not None and not (isinstance(transaction_id, str) and transaction_id):
        problems.append(
            Problem(
                "procurosTransactionId", "Expected a non-empty string or null.", "invalid_value"
            )
        )
    return problems


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ErpApiError(
            400,
            "bad_request",
            f"limit must be an integer between 1 and {MAX_LIMIT}.",
            details=[Problem("limit", "Out of range.", "invalid_value")],
        )
    return int(raw)


def _encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        doc_id = decoded.decode()
        if not doc_id:
            raise ValueError(raw)
    except (binascii.Error, ValueError):
        raise ErpApiError(
            400,
            "bad_request",
            "Invalid cursor.",
            details=[Problem("cursor", "Not a cursor from this API.", "invalid_value")],
        ) from None
    return doc_id
