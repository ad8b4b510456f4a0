"""Mapping an ERP outgoing document to the Procuros transaction of its type.

The ERP's ``document`` holds its own fields (parties with GLN/VAT ids, dates, lines with GTIN,
quantities, prices, tax rates). A mapping file (``mappings/erp-outgoing.yaml`` by default, see
:mod:`erphub.mapfile`) says where each of erphub's trade document fields is in it; this module
turns the trade document into the Procuros v2 ``content`` of an INVOICE, ORDER_RESPONSE,
SHIPPING_NOTICE or CREDIT_NOTE. It is pure: no I/O, no clock.

Only an ERP document that cannot be read at all (a date that is not a date, a quantity that is
not a number) is a :class:`MappingError`. A readable document that lacks something Procuros
requires is mapped as it is: Procuros then refuses it with its own reasons and a link to the
error in its portal, which is where users fix documents.

The same document always maps to the same bytes (:meth:`ProcurosTransaction.body`): Procuros
recognises a resent payload by its bytes ("Payload already received"), which is how the hub
learns that a POST whose answer it lost did arrive.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erphub.errors import BadInputError
from erphub.mapengine import SourceError, apply
from erphub.mapfile import MappingSpec, Target, load, packaged
from erphub.models import CamelModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from erphub.clients.erp_port import OutgoingDocument

__all__ = [
    "IDENTIFIER_FIELDS",
    "SUPPORTED_TYPES",
    "TARGET",
    "ErpLine",
    "ErpParty",
    "ErpTradeDocument",
    "MappingError",
    "ProcurosTransaction",
    "default_mapping",
    "identifier_of",
    "load_mapping",
    "procuros_datetime",
    "to_transaction",
]

CENT = Decimal("0.01")

#: Quantities and prices as the ERP sends them (decimal strings or numbers, finite).
Quantity = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=18, decimal_places=6)]

#: Where each transaction type carries the sender's document number.
IDENTIFIER_FIELDS: dict[str, str] = {
    "INVOICE": "invoiceIdentifier",
    "ORDER_RESPONSE": "orderResponseIdentifier",
    "SHIPPING_NOTICE": "shippingNoticeIdentifier",
    "CREDIT_NOTE": "creditNoteIdentifier",
}
SUPPORTED_TYPES = frozenset(IDENTIFIER_FIELDS)


class MappingError(BadInputError):
    """The ERP document cannot be read; ``problems`` name each field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- the ERP's own fields ---------------------------------------------------------------------


class ErpAddress(CamelModel):
    """A postal address as the ERP keeps it."""

    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country_code: str | None = None


class ErpParty(CamelModel):
    """A trading party: ``seller`` is the company running the hub, ``buyer`` its partner."""

    name: str | None = None
    gln: str | None = None
    duns: str | None = None
    vat_id: str | None = None
    address: ErpAddress | None = None


class ErpLine(CamelModel):
    """One line of an outgoing document."""

    line_number: int = Field(ge=1)
    gtin: str | None = None
    buyer_item_number: str | None = None
    supplier_item_number: str | None = None
    description: str | None = None
    quantity: Quantity
    ordered_quantity: Quantity | None = None
    unit_price: Quantity | None = None
    tax_rate: Quantity | None = None
    unit_of_measure: str | None = None
    order_line_number: int | None = None
    open_quantity_action: str | None = None


class ErpTransportUnit(CamelModel):
    """A pallet or parcel of a shipment and the lines it carries."""

    sscc: str | None = None
    unit_type: str | None = None
    line_numbers: list[int] = Field(default_factory=list)


class ErpTradeDocument(CamelModel):
    """The ``document`` of an outgoing document. Unknown ERP fields are ignored."""

    document_date: date
    due_date: date | None = None
    currency: str | None = None
    seller: ErpParty = Field(default_factory=ErpParty)
    buyer: ErpParty = Field(default_factory=ErpParty)
    ship_to: ErpParty | None = None
    order_number: str | None = None
    order_date: date | None = None
    shipping_notice_number: str | None = None
    shipping_notice_date: date | None = None
    invoice_number: str | None = None
    invoice_date: date | None = None
    delivery_date: date | None = None
    despatch_date: date | None = None
    response_type: Literal["ACCEPT", "REJECT", "CHANGE"] | None = None
    credit_note_type: Literal["CORRECTION", "VALUE_CREDIT"] | None = None
    reason: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    sscc: str | None = None
    transport_units: list[ErpTransportUnit] = Field(default_factory=list)
    lines: list[ErpLine] = Field(default_factory=list)


# --- the Procuros side ------------------------------------------------------------------------


class ProcurosTransaction(BaseModel):
    """The body of ``POST /v2/transactions``: ``{"type": ..., "content": {...}}``."""

    model_config = ConfigDict(frozen=True)

    type: str
    content: dict[str, Any]

    @property
    def identifier(self) -> str | None:
        """The sender's document number inside ``content`` (invoice number, ...)."""
        return identifier_of(self.type, self.content)

    def body(self) -> bytes:
        """The exact bytes sent: compact JSON with sorted keys, the same on every run."""
        payload = {"type": self.type, "content": self.content}
        return json.dumps(
            payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        ).encode()


def identifier_of(transaction_type: str, content: Any) -> str | None:
    """The document number a transaction of this type carries, if it carries one."""
    field = IDENTIFIER_FIELDS.get(transaction_type)
    header = content.get("header") if isinstance(content, dict) else None
    value = header.get(field) if field and isinstance(header, dict) else None
    return value if isinstance(value, str) else None


def procuros_datetime(day: date | None) -> str | None:
    """A date in the spec's DateTime form (``2021-10-23T00:00:00.000000Z``).

    Midnight UTC falls on the same calendar day in Berlin (UTC+1/+2), where Procuros reads it.
    """
    return None if day is None else f"{day.isoformat()}T00:00:00.000000Z"


def _number(value: Decimal) -> int | float:
    """A JSON number: integral values stay integers, others become floats."""
    return int(value) if value == value.to_integral_value() else float(value)


def _money(value: Decimal) -> int | float:
    return _number(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Drop absent fields: the spec's fields are not nullable."""
    return {key: value for key, value in values.items() if value is not None}


def _party(party: ErpParty | None) -> dict[str, Any] | None:
    if party is None:
        return None
    identifiers = []
    if party.gln:
        identifiers.append({"identifier": party.gln, "domain": "GS1"})
    if party.duns:
        identifiers.append({"identifier": party.duns, "domain": "DUNS"})
    if party.vat_id and party.vat_id.upper().startswith("DE"):
        identifiers.append({"identifier": party.vat_id, "domain": "VAT_DE"})
    address = None
    if party.address is not None:
        address = _compact(
            {
                "street": party.address.street,
                "city": party.address.city,
                "postalCode": party.address.postal_code,
                "countryCode": party.address.country_code,
            }
        )
    return _compact({"name": party.name, "identifiers": identifiers, "postalAddress": address})


def _item_identifiers(line: ErpLine) -> list[dict[str, str]]:
    identifiers = []
    if line.gtin:
        identifiers.append({"identifier": line.gtin, "domain": "GS1"})
    if line.buyer_item_number:
        identifiers.append({"identifier": line.buyer_item_number, "domain": "BUYER"})
    if line.supplier_item_number:
        identifiers.append({"identifier": line.supplier_item_number, "domain": "SUPPLIER"})
    return identifiers


def _ordered(line: ErpLine) -> Decimal:
    return line.quantity if line.ordered_quantity is None else line.ordered_quantity


def _net(line: ErpLine) -> Decimal | None:
    if line.unit_price is None:
        return None
    return (line.quantity * line.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


def _line_tax(line: ErpLine) -> Decimal | None:
    net = _net(line)
    if net is None or line.tax_rate is None:
        return None
    return (net * line.tax_rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def _tax(line: ErpLine) -> dict[str, Any] | None:
    amount = _line_tax(line)
    if amount is None or line.tax_rate is None:
        return None
    return {"amount": _money(amount), "percentage": _number(line.tax_rate)}


def _summary(lines: Iterable[ErpLine]) -> dict[str, Any] | None:
    """Totals with one tax item per rate; None unless every line has a price and a rate."""
    rows = list(lines)
    if not rows or any(line.unit_price is None or line.tax_rate is None for line in rows):
        return None
    taxable: dict[Decimal, Decimal] = {}
    taxes: dict[Decimal, Decimal] = {}
    for line in rows:
        rate = line.tax_rate
        net, tax = _net(line), _line_tax(line)
        assert rate is not None and net is not None and tax is not None  # checked above
        taxable[rate] = taxable.get(rate, Decimal(0)) + net
        taxes[rate] = taxes.get(rate, Decimal(0)) + tax
    net_total = sum(taxable.values(), Decimal(0))
    tax_total = sum(taxes.values(), Decimal(0))
    gross = net_total + tax_total
    return {
        "subtotalAmount": _money(net_total),
        "netAmount": _money(net_total),
        "grossAmount": _money(gross),
        "dueAmount": _money(gross),
        "totalCharges": 0,
        "totalAllowances": 0,
        "tax": {
            "total": _money(tax_total),
            "items": [
                {
                    "percentage": _number(rate),
                    "taxableAmount": _money(taxable[rate]),
                    "taxAmount": _money(taxes[rate]),
                    "category": "sales",
                }
                for rate in sorted(taxable)
            ],
        },
    }


def _invoiced_item(line: ErpLine) -> dict[str, Any]:
    return _compact(
        {
            "lineNumber": line.line_number,
            "orderLineNumber": line.order_line_number,
            "identifiers": _item_identifiers(line),
            "isDepositItem": False,
            "isInvoicedItem": True,
            "description": line.description,
            "quantity": _number(line.quantity),
            "unitPrice": None if line.unit_price is None else _number(line.unit_price),
            "tax": _tax(line),
            "unitOfMeasure": line.unit_of_measure,
        }
    )


def _invoice(number: str, doc: ErpTradeDocument) -> dict[str, Any]:
    header = _compact(
        {
            "buyer": _party(doc.buyer),
            "supplier": _party(doc.seller),
            "shipTo": _party(doc.ship_to),
            "invoiceIdentifier": number,
            "invoiceDate": procuros_datetime(doc.document_date),
            "invoiceDueDate": procuros_datetime(doc.due_date),
            "shippingNoticeIdentifier": doc.shipping_notice_number,
            "shippingNoticeDate": procuros_datetime(doc.shipping_notice_date),
            "orderIdentifier": doc.order_number,
            "orderDate": procuros_datetime(doc.order_date),
            "currency": doc.currency,
        }
    )
    return _compact(
        {
            "header": header,
            "items": [_invoiced_item(line) for line in doc.lines],
            "summary": _summary(doc.lines),
        }
    )


def _credit_note(number: str, doc: ErpTradeDocument) -> dict[str, Any]:
    header = _compact(
        {
            "buyer": _party(doc.buyer),
            "supplier": _party(doc.seller),
            "creditNoteIdentifier": number,
            "creditNoteDate": procuros_datetime(doc.document_date),
            "creditNoteDueDate": procuros_datetime(doc.due_date),
            "type": doc.credit_note_type,
            "invoiceIdentifier": doc.invoice_number,
            "invoiceDate": procuros_datetime(doc.invoice_date),
            "orderIdentifier": doc.order_number,
            "orderDate": procuros_datetime(doc.order_date),
            "currency": doc.currency,
            "reason": doc.reason,
        }
    )
    return _compact(
        {
            "header": header,
            "items": [_invoiced_item(line) for line in doc.lines],
            "summary": _summary(doc.lines),
        }
    )


def _order_response(number: str, doc: ErpTradeDocument) -> dict[str, Any]:
    response_type = doc.response_type or "ACCEPT"
    header = _compact(
        {
            "type": response_type,
            "buyer": _party(doc.buyer),
            "supplier": _party(doc.seller),
            "shipTo": _party(doc.ship_to),
            "orderResponseIdentifier": number,
            "orderResponseDate": procuros_datetime(doc.document_date),
            "orderIdentifier": doc.order_number,
            "orderDate": procuros_datetime(doc.order_date),
            "confirmedDeliveryDate": procuros_datetime(doc.delivery_date),
            "currency": doc.currency,
        }
    )
    # A rejection confirms no lines: the spec prohibits items on REJECT.
    items = None
    if response_type != "REJECT" and doc.lines:
        items = [
            _compact(
                {
                    "lineNumber": line.line_number,
                    "orderLineNumber": line.order_line_number,
                    "identifiers": _item_identifiers(line),
                    "isDepositItem": False,
                    "description": line.description,
                    "orderedQuantity": _number(_ordered(line)),
                    "confirmedQuantity": _number(line.quantity),
                    "unitPrice": None if line.unit_price is None else _number(line.unit_price),
                    "unitOfMeasure": line.unit_of_measure,
                }
            )
            for line in doc.lines
        ]
    return _compact({"header": header, "items": items})


def _shipped_item(line: ErpLine) -> dict[str, Any]:
    return _compact(
        {
            "lineNumber": line.line_number,
            "orderLineNumber": line.order_line_number,
            "identifiers": _item_identifiers(line),
            "isDepositItem": False,
            "description": line.description,
            "orderedQuantity": _number(_ordered(line)),
            "shippedQuantity": _number(line.quantity),
            "openQuantityAction": line.open_quantity_action,
            "unitOfMeasure": line.unit_of_measure,
        }
    )


def _transport_units(doc: ErpTradeDocument) -> list[dict[str, Any]]:
    if not doc.transport_units:
        # No packing list: the whole shipment is one unit.
        items = [_shipped_item(line) for line in doc.lines]
        return [_compact({"unitIdentifier": doc.sscc, "items": items})]
    by_number = {line.line_number: line for line in doc.lines}
    return [
        _compact(
            {
                "unitIdentifier": unit.sscc,
                "unitType": unit.unit_type,
                "items": [_shipped_item(by_number[n]) for n in unit.line_numbers if n in by_number],
            }
        )
        for unit in doc.transport_units
    ]


def _shipping_notice(number: str, doc: ErpTradeDocument) -> dict[str, Any]:
    header = _compact(
        {
            "buyer": _party(doc.buyer),
            "supplier": _party(doc.seller),
            "shipTo": _party(doc.ship_to),
            "shippingNoticeIdentifier": number,
            "shippingNoticeDate": procuros_datetime(doc.document_date),
            "orderIdentifier": doc.order_number,
            "orderDate": procuros_datetime(doc.order_date),
            "despatchDate": procuros_datetime(doc.despatch_date),
            "expectedDeliveryDate": procuros_datetime(doc.delivery_date),
            "carrier": doc.carrier,
            "trackingNumber": doc.tracking_number,
            "currency": doc.currency,
        }
    )
    return {"header": header, "transportUnits": _transport_units(doc)}


_MAPPERS: dict[str, Callable[[str, ErpTradeDocument], dict[str, Any]]] = {
    "INVOICE": _invoice,
    "ORDER_RESPONSE": _order_response,
    "SHIPPING_NOTICE": _shipping_notice,
    "CREDIT_NOTE": _credit_note,
}


#: What an ERP outgoing document mapping file produces.
TARGET = Target(
    kind="erp-outgoing",
    model=ErpTradeDocument,
    description="the trade document",
    default_file="erp-outgoing.yaml",
    types=SUPPORTED_TYPES,
)


class _ErpFields:
    """The ERP's ``document`` (or one item of a list in it), read by dotted paths."""

    def __init__(self, fields: Any, prefix: str = "document.") -> None:
        self._fields = fields
        self._prefix = prefix

    def get(self, path: str) -> Any:
        value = self._fields
        walked: list[str] = []
        for part in path.split("."):
            if value is None:
                return None
            if not isinstance(value, dict):
                raise SourceError(self.name(".".join(walked)), f"{value!r} is not an object")
            value = value.get(part)
            walked.append(part)
        return value

    def rows(self, path: str) -> Sequence[_ErpFields] | None:
        items = self.get(path)
        if items is None:
            return None
        if not isinstance(items, list):
            raise SourceError(self.name(path), f"{items!r} is not a list")
        return [
            _ErpFields(item, f"{self._prefix}{path}.{index}.") for index, item in enumerate(items)
        ]

    def name(self, path: str) -> str:
        return f"{self._prefix}{path}".rstrip(".")


def default_mapping() -> MappingSpec:
    """The packaged mapping for the ERP contract's outgoing documents."""
    return packaged(TARGET)


def load_mapping(location: str | None) -> MappingSpec:
    """The mapping at ``location``: empty for the default, ``ssm:/name`` or a file path."""
    return load(location, TARGET)


def to_trade_document(
    document: OutgoingDocument, mapping: MappingSpec | None = None
) -> ErpTradeDocument:
    """The trade document an ERP outgoing document describes, by ``mapping``.

    Raises :class:`MappingError`, naming the document and every unreadable field.
    """
    if document.type not in _MAPPERS:
        known = ", ".join(sorted(_MAPPERS))
        msg = f"{document.id}: type {document.type!r} is not one erphub sends ({known})"
        raise MappingError([msg])
    mapping = mapping or default_mapping()
    source = _ErpFields(document.document)
    mapped = apply(mapping.section(document.type), source, trim=mapping.trim)
    if mapped.problems:
        raise MappingError([f"{document.id}: {problem}" for problem in mapped.problems])
    try:
        return ErpTradeDocument.model_validate(mapped.values)
    except ValidationError as error:
        problems = mapped.explain(error, source.name)
        raise MappingError([f"{document.id}: {problem}" for problem in problems]) from None


def to_transaction(
    document: OutgoingDocument, mapping: MappingSpec | None = None
) -> ProcurosTransaction:
    """The Procuros transaction for an ERP outgoing document (its ``number`` is the identifier).

    ``mapping`` defaults to :func:`default_mapping`. Raises :class:`MappingError`, naming the
    document and every unreadable field.
    """
    erp = to_trade_document(document, mapping)
    return ProcurosTransaction(
        type=document.type, content=_MAPPERS[document.type](document.number, erp)
    )
