"""Custom mappings at work: conversions, defaults, computed fields, problems named by their source,
in both directions (Rossum annotation -> invoice, ERP outgoing document -> Procuros)."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings

from erphub import mapping, procuros_mapping
from erphub.clients.erp_port import OutgoingDocument
from erphub.invoices import ExportedAnnotation
from erphub.mapfile import MappingSpec, parse
from erphub.mapping import MappingError, to_invoice
from tests.unit.test_procuros_mapping import complete_documents

EUROPEAN = """\
kind: rossum-invoice
decimal: {separator: ",", group: [".", " "]}
date: {formats: ["%d.%m.%Y", "%d/%m/%Y"]}
fields:
  invoiceNumber: [rechnung_nr, document_id]
  issueDate: datum
  dueDate: {from: faellig, formats: ["%Y%m%d"]}
  currency: {from: waehrung, type: currency, values: {"€": EUR, "-": null}, default: EUR}
  supplier.name: lieferant
  supplier.vatId: ust_id
  totalAmount: {from: brutto, round: 2}
  taxAmount: {from: mwst, compute: "totalAmount - netAmount", round: 2}
  netAmount: {from: netto, compute: "coalesce(sum(lines.amount), totalAmount - taxAmount)"}
  purchaseOrder: {from: bestellung, required: true}
lists:
  lines:
    from: positionen
    fields:
      description: {from: text, default: ""}
      quantity: {from: menge, default: 1}
      unitPrice: preis
      taxRate: {from: satz, default: 19}
      amount: {from: betrag, compute: "quantity * unitPrice", round: 2}
"""


def spec(text: str, target: Any = mapping.TARGET) -> MappingSpec:
    return parse(textwrap.dedent(text), "custom.yaml", target)


def annotation(header: dict[str, str], rows: list[dict[str, str]] | None = None) -> Any:
    def dp(key: str, value: str) -> dict[str, Any]:
        return {"category": "datapoint", "schema_id": key, "value": value}

    tuples = [
        {"category": "tuple", "schema_id": "pos", "children": [dp(k, v) for k, v in r.items()]}
        for r in rows or []
    ]
    return ExportedAnnotation.model_validate(
        {
            "url": "https://x/api/v1/annotations/42",
            "status": "confirmed",
            "content": [
                {"category": "section", "schema_id": "a", "children": []},
                {
                    "category": "section",
                    "schema_id": "b",
                    "children": [dp(k, v) for k, v in header.items()],
                },
                {
                    "category": "section",
                    "schema_id": "c",
                    "children": [
                        {"category": "multivalue", "schema_id": "positionen", "children": tuples}
                    ],
                },
            ],
        }
    )


HEADER = {
    "rechnung_nr": " ",
    "document_id": "RE-1",
    "datum": "02/11/2026",
    "faellig": "20261202",
    "waehrung": "€",
    "lieferant": "Acme GmbH",
    "ust_id": "DE123",
    "brutto": "1.190,00",
    "mwst": "190,00",
    "bestellung": "PO-1",
}
ROWS = [{"text": "Beratung", "menge": "2", "preis": "250,00"}, {"preis": "500"}]


def test_a_european_schema_maps_with_conversions_defaults_and_computed_fields() -> None:
    invoice = to_invoice(annotation(HEADER, ROWS), spec(EUROPEAN))
    assert invoice.external_reference == "rossum:42"
    assert invoice.invoice_number == "RE-1"  # the first source is blank: the next one counts
    assert (invoice.issue_date.isoformat(), str(invoice.due_date)) == ("2026-11-02", "2026-12-02")
    assert invoice.currency == "EUR"
    assert (invoice.net_amount, invoice.tax_amount, invoice.total_amount) == (
        Decimal("1000.00"),
        Decimal("190.00"),
        Decimal("1190.00"),
    )
    assert [(line.quantity, line.amount, line.tax_rate) for line in invoice.lines] == [
        (Decimal(2), Decimal("500.00"), Decimal(19)),
        (Decimal(1), Decimal("500.00"), Decimal(19)),
    ]


def test_computed_fields_feed_each_other() -> None:
    # No net, no tax on the invoice: the net is the lines' sum, the tax the difference.
    header = {k: v for k, v in HEADER.items() if k != "mwst"}
    invoice = to_invoice(annotation(header, ROWS), spec(EUROPEAN))
    assert (invoice.net_amount, invoice.tax_amount) == (Decimal("1000.00"), Decimal("190.00"))
    # No lines either: the net comes from total - tax.
    invoice = to_invoice(annotation(HEADER), spec(EUROPEAN))
    assert invoice.net_amount == Decimal("1000.00")


def test_a_value_table_may_empty_a_field_which_then_takes_its_default() -> None:
    invoice = to_invoice(annotation(HEADER | {"waehrung": "-"}), spec(EUROPEAN))
    assert invoice.currency == "EUR"


def test_every_problem_names_the_source_field_it_came_from() -> None:
    header = HEADER | {
        "datum": "2026-11-02",
        "waehrung": "Euro",
        "brutto": "1.190,0x",
        "bestellung": "",
    }
    rows = [{"menge": "zwei", "preis": "1"}, {"text": "no price"}]
    with pytest.raises(MappingError) as raised:
        to_invoice(annotation(header, rows), spec(EUROPEAN))
    assert raised.value.problems == [
        "datum: '2026-11-02' is not a date (DD.MM.YYYY or DD/MM/YYYY)",
        "waehrung: 'Euro' is not a currency code (ISO 4217, such as EUR)",
        "brutto: '1.190,0x' is not a number",
        "bestellung: missing",
        "line 1 menge: 'zwei' is not a number",
        "line 2 preis: missing",
    ]


def test_a_field_that_cannot_be_computed_says_what_it_lacks() -> None:
    header = {k: v for k, v in HEADER.items() if k not in ("mwst", "netto")}
    with pytest.raises(MappingError) as raised:
        to_invoice(annotation(header), spec(EUROPEAN))
    assert raised.value.problems == [
        "mwst: missing, and totalAmount - netAmount cannot be computed without netto",
    ]


def test_the_target_models_objections_are_named_by_source_field_too() -> None:
    unrounded = spec(
        EUROPEAN.replace("  totalAmount: {from: brutto, round: 2}", "  totalAmount: brutto")
    )
    with pytest.raises(MappingError) as raised:
        to_invoice(annotation(HEADER | {"brutto": "1.190,123"}), unrounded)
    assert raised.value.problems == [
        "netAmount = coalesce(sum(lines.amount), totalAmount - taxAmount): Decimal input should"
        " have no more than 2 decimal places",
        "brutto: Decimal input should have no more than 2 decimal places",
    ]


def test_the_default_mapping_reads_rossums_standard_schema_as_before() -> None:
    header = {
        "document_id": "INV-1",
        "date_issue": "2026-11-02",
        "currency": "eur",
        "amount_total": "1 190.00",
        "amount_total_tax": "190.00",
        "sender_name": "Acme",
        "sender_vat_id": "DE1",
    }
    rows = [{"item_amount_base": "1000", "item_quantity": "0"}]
    invoice = to_invoice(
        ExportedAnnotation.model_validate(
            {
                "url": "https://x/api/v1/annotations/7",
                "status": "confirmed",
                "content": [
                    {
                        "category": "section",
                        "schema_id": "s",
                        "children": [
                            {"category": "datapoint", "schema_id": k, "value": v}
                            for k, v in header.items()
                        ]
                        + [
                            {
                                "category": "multivalue",
                                "schema_id": "line_items",
                                "children": [
                                    {
                                        "category": "tuple",
                                        "schema_id": "line_item",
                                        "children": [
                                            {"category": "datapoint", "schema_id": k, "value": v}
                                            for k, v in row.items()
                                        ],
                                    }
                                    for row in rows
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    assert (invoice.net_amount, invoice.tax_amount) == (Decimal("1000.00"), Decimal("190.00"))
    # A quantity read as 0 stays 0 (it used to become 1); the amount is computed from it.
    assert [(line.quantity, line.amount) for line in invoice.lines] == [
        (Decimal(0), Decimal("0.00"))
    ]
    assert invoice.dump()["taxAmount"] == "190.00"


# --- ERP outgoing documents -----------------------------------------------------------------------

#: An ERP that names its fields its own way (German header, "positions" with "qty").
RENAMED = {
    "documentDate": "docDate",
    "dueDate": "payment.due",
    "currency": "payment.currency",
    "orderNumber": "order.no",
    "orderDate": "order.date",
    "seller.name": "us.name",
    "seller.gln": "us.iln",
    "seller.vatId": "us.ust",
    "buyer.name": "partner.name",
    "buyer.gln": "partner.iln",
    "buyer.vatId": "partner.ust",
    "shippingNoticeNumber": "asn.no",
    "shippingNoticeDate": "asn.date",
    "invoiceNumber": "ref.invoice",
    "invoiceDate": "ref.invoiceDate",
    "deliveryDate": "deliveryDate",
    "responseType": "answer",
}
LINES = {
    "lineNumber": "pos",
    "gtin": "ean",
    "description": "text",
    "quantity": "qty",
    "unitPrice": "price",
    "taxRate": "vat",
    "unitOfMeasure": "unit",
    "orderedQuantity": "ordered",
    "orderLineNumber": "orderPos",
}


def renamed_mapping() -> MappingSpec:
    fields = "\n".join(f"  {target}: {source}" for target, source in RENAMED.items())
    lines = "\n".join(f"      {target}: {source}" for target, source in LINES.items())
    return spec(
        f"kind: erp-outgoing\ntrim: false\nfields:\n{fields}\nlists:\n  lines:\n"
        f"    from: positions\n    fields:\n{lines}\n",
        procuros_mapping.TARGET,
    )


def put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def rename(document: OutgoingDocument) -> OutgoingDocument:
    """The same document as the other ERP would list it."""
    fields: dict[str, Any] = {}
    for target, source in RENAMED.items():
        value: Any = document.document
        for part in target.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            put(fields, source, value)
    fields["positions"] = [
        {LINES[k]: v for k, v in line.items() if k in LINES}
        for line in document.document.get("lines", [])
    ]
    return document.model_copy(update={"document": fields})


@settings(max_examples=60, deadline=None)
@given(complete_documents())
def test_a_renamed_erp_document_maps_to_the_same_bytes(document: OutgoingDocument) -> None:
    kept = {"documentDate", "currency", "seller", "buyer", "orderNumber", "orderDate", "lines"}
    kept |= {"shippingNoticeNumber", "shippingNoticeDate", "invoiceNumber", "invoiceDate"}
    kept |= {"deliveryDate", "responseType"}
    same = document.model_copy(
        update={"document": {k: v for k, v in document.document.items() if k in kept}}
    )
    expected = procuros_mapping.to_transaction(same).body()
    assert procuros_mapping.to_transaction(rename(same), renamed_mapping()).body() == expected


def test_an_erp_document_of_another_shape_is_named_where_it_breaks() -> None:
    document = OutgoingDocument(
        id="OUT-1",
        type="INVOICE",
        number="N-1",
        document={"documentDate": "2026-03-02", "seller": "Acme", "lines": {"quantity": 1}},
    )
    with pytest.raises(procuros_mapping.MappingError) as raised:
        procuros_mapping.to_transaction(document)
    assert raised.value.problems == [
        "OUT-1: document.seller: 'Acme' is not an object",
        "OUT-1: document.lines: {'quantity': 1} is not a list",
    ]


def test_whole_numbers_pass_as_text_other_values_do_not() -> None:
    document = OutgoingDocument(
        id="OUT-2",
        type="ORDER_RESPONSE",
        number="N-2",
        document={
            "documentDate": "2026-03-02",
            "orderNumber": 4711,
            "buyer": {"gln": 4012345000016},
            "lines": [{"lineNumber": 1, "quantity": 2, "gtin": 1.5}],
        },
    )
    with pytest.raises(procuros_mapping.MappingError) as raised:
        procuros_mapping.to_transaction(document)
    assert raised.value.problems == ["OUT-2: document.lines.0.gtin: 1.5 is not text"]
    del document.document["lines"][0]["gtin"]
    content = json.loads(procuros_mapping.to_transaction(document).body())["content"]
    assert content["header"]["orderIdentifier"] == "4711"
    assert content["header"]["buyer"]["identifiers"][0]["identifier"] == "4012345000016"


def test_a_value_out_of_any_range_is_not_a_number() -> None:
    header = HEADER | {"brutto": "1e999999999", "mwst": "1e-40"}
    with pytest.raises(MappingError) as raised:
        to_invoice(annotation(header), spec(EUROPEAN))
    assert raised.value.problems == [
        "brutto: '1e999999999' is not a number",
        "mwst: '1e-40' is not a number",
    ]
